"""The paper's Fig. 8 claims on any finished checkpoints (e.g. custom known sets that no report uses).

    python benchmarks/jacobian_checkpoints.py --checkpoints "runs/movr_tuning_mnist-checkpoints/*-mnist-seed[012]-*.pt" \
        --unit --n 100 --name jacobian_custom_unit

For every finished checkpoint matching the glob: AUROC of its own score, the exact Jacobian norms of the embedding
(of f/||f|| with --unit) on `n` known-test and `n` unknown-test samples, and the class separation (Davies–Bouldin,
between/within). Networks are grouped by (known classes, seed); every m-OvR recipe is paired with the softmax
network of its group: is its norm difference larger and its Davies–Bouldin lower (the paper's Fig. 8)? Refuses
checkpoints of a reported split unless `--allow-reported`, so that what it shows can be used to choose defaults.
Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, finished_checkpoints, header, provenance, write  # noqa: E402

from osrkit.analysis.study import jacobian_study  # noqa: E402
from osrkit.engine.pipeline import evaluate, load_trained, task_from_checkpoint  # noqa: E402

KEYS = ("known_mean", "unknown_mean", "difference", "davies_bouldin", "davies_bouldin_unit", "between_within")


def recipe_label(meta: dict) -> str:
    """'softmax', or the m-OvR recipe that trained the network ('movr margin target, T 32', ...)."""
    cfg = meta["osrkit_config"]
    mp = cfg.get("method_params", {})
    if meta["method"] != "movr":
        return meta["method"]
    # without embedding normalisation the scale is each ||f||: T plays no part
    scale = "unnormalised" if mp.get("embedding_norm", True) is False else f"T {mp.get('temperature'):g}"
    return f"movr margin {mp.get('margin_on')}, {scale}" + (
        f", rotation {mp['rotation_weight']:g}" if mp.get("rotation_weight") else "")


def stored_score(meta: dict) -> str:
    """The score a checkpoint's network is evaluated with (m-OvR: its `score` parameter; softmax: MSP)."""
    return meta["osrkit_config"].get("method_params", {}).get("score") or {"softmax": "msp"}.get(meta["method"],
                                                                                                 meta["method"])


def study_one(path: str, data_root: str, n: int, unit: bool, plots: Path) -> dict:
    """One checkpoint's row: its recipe, group, AUROC and Jacobian/separation summary."""
    trained = load_trained(path)
    task = task_from_checkpoint(trained.meta, data_root=data_root, validation=True)
    res = evaluate(trained, task)
    jac = jacobian_study(trained, task, plots / Path(path).stem, n=n, progress=False, unit=unit)
    spec, cfg = trained.meta["task"], trained.meta["osrkit_config"]
    return {"checkpoint": Path(path).name, "recipe": recipe_label(trained.meta), "model": cfg.get("model"),
            "known": list(spec["known"]), "seed": cfg.get("seed"), "score": stored_score(trained.meta),
            "auroc": res["auroc"],
            **{k: jac[k] for k in KEYS if k in jac}}


def fig8(rows: list[dict]) -> list[dict]:
    """Per m-OvR recipe: how often, against the softmax network of the same (known set, seed, model), the
    norm difference is larger and the Davies–Bouldin index lower; and known < unknown per network."""
    base = {(tuple(r["known"]), r["seed"], r["model"]): r for r in rows if r["recipe"] == "softmax"}
    out = []
    for recipe in sorted({r["recipe"] for r in rows} - {"softmax"}):
        pairs = [(r, base[(tuple(r["known"]), r["seed"], r["model"])]) for r in rows
                 if r["recipe"] == recipe and (tuple(r["known"]), r["seed"], r["model"]) in base]
        if not pairs:
            continue
        out.append({"recipe": recipe, "pairs": len(pairs),
                    "difference_larger": sum(m["difference"] > s["difference"] for m, s in pairs),
                    "db_lower": sum(m["davies_bouldin"] < s["davies_bouldin"] for m, s in pairs),
                    "known_below_unknown": sum(m["known_mean"] < m["unknown_mean"] for m, _ in pairs),
                    "softmax_known_below_unknown": sum(s["known_mean"] < s["unknown_mean"] for _, s in pairs),
                    **{f"mean_{k}": float(np.mean([m[k] for m, _ in pairs])) for k in ("auroc", "difference",
                                                                                        "davies_bouldin")},
                    **{f"softmax_mean_{k}": float(np.mean([s[k] for _, s in pairs])) for k in
                       ("auroc", "difference", "davies_bouldin")}})
    return out


def render(res: dict) -> str:
    rep = "f/‖f‖" if res["unit"] else "f"
    lines = [f"# Jacobian norms ({rep}) and class separation on chosen checkpoints (not a reported protocol)", "",
             "| recipe | model | known | seed | score | AUROC | known norm | unknown norm | difference | Davies–Bouldin ↓ |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(res["rows"], key=lambda r: (r["recipe"], r["known"], r["seed"])):
        lines.append(f"| {r['recipe']} | {r['model']} | {','.join(map(str, r['known']))} | {r['seed']} | "
                     f"{r.get('score') or '—'} | {r['auroc']:.4f} | {r['known_mean']:.4f} | {r['unknown_mean']:.4f} | "
                     f"{r['difference']:.4f} | {r['davies_bouldin']:.3f} |")
    lines += ["", "The paper's Fig. 8, each m-OvR recipe against the softmax network of the same known set, seed and "
              "backbone:", "",
              "| recipe | pairs | known < unknown (m-OvR / softmax) | difference larger | Davies–Bouldin lower | "
              "mean difference m-OvR / softmax | mean Davies–Bouldin m-OvR / softmax | mean AUROC m-OvR / softmax |",
              "|---|---|---|---|---|---|---|---|"]
    for c in res["fig8"]:
        lines.append(f"| {c['recipe']} | {c['pairs']} | {c['known_below_unknown']} / {c['softmax_known_below_unknown']}"
                     f" | {c['difference_larger']} of {c['pairs']} | {c['db_lower']} of {c['pairs']} | "
                     f"{c['mean_difference']:.4f} / {c['softmax_mean_difference']:.4f} | "
                     f"{c['mean_davies_bouldin']:.3f} / {c['softmax_mean_davies_bouldin']:.3f} | "
                     f"{c['mean_auroc']:.4f} / {c['softmax_mean_auroc']:.4f} |")
    lines += ["", f"Exact Jacobians, n = {res['n']} per side; AUROC is of the score stored in each checkpoint (the "
              f"score column; the tuning reports give every reading); plots under `results/{res['name']}/`.", "",
              provenance(res), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", required=True, help="a glob of finished osrkit checkpoints")
    ap.add_argument("--name", required=True, help="results/<name>.{json,md}")
    ap.add_argument("--n", type=int, default=100, help="samples per side for the Jacobian norms")
    ap.add_argument("--unit", action="store_true", help="the Jacobian of f/||f|| instead of the embedding f")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", help="only checkpoints of this backbone (e.g. vgg32-lite)")
    ap.add_argument("--recipes", help="semicolon-separated m-OvR recipe labels to study (softmax is always kept, as "
                                      "their baseline), e.g. 'movr margin all, unnormalised'")
    ap.add_argument("--allow-reported", action="store_true", help="also study checkpoints of reported splits")
    ap.add_argument("--render-only", action="store_true", help="rebuild the Markdown from results/<name>.json")
    args = ap.parse_args()
    if args.render_only:
        res = json.loads((RESULTS / f"{args.name}.json").read_text())
        write(args.name, res, render(res))
        return
    torch.set_num_threads(args.threads)
    rows = []
    wanted = None if not args.recipes else {"softmax", *args.recipes.split(";")}
    for p in finished_checkpoints(args.checkpoints, args.allow_reported, args.model):
        if wanted is not None and recipe_label(load_trained(p).meta) not in wanted:
            continue
        rows.append(study_one(p, args.data_root, args.n, args.unit, RESULTS / args.name))
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    res = header() | {"name": args.name, "unit": args.unit, "n": args.n, "rows": rows, "fig8": fig8(rows)}
    write(args.name, res, render(res))
    print(render(res))


if __name__ == "__main__":
    main()
