"""The Jacobian-norm paper's final m-OvR model, one extra at a time (its Figs. 9–11): AUROC, OSCR, norm difference.

    python benchmarks/movr_ablation.py --splits 0,1,2 --model vgg32-lite --epochs 3 --n 200

Variants, all m-OvR with osrkit's defaults otherwise: base (no augmentation, osrkit's weight decay 5e-4, no
rotation head), + augmentation (random resized crop), + weight decay 1e-3, + rotation head (λ = 0.1), and all
three. The paper claims each extra raises both AUROC and the Jacobian-norm difference (unknown − known).
Checkpoints resume from --out-dir; writes benchmarks/results/<name>.{json,md} and the norm plots.
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
from _common import RESULTS, header, write  # noqa: E402

from osrkit.analysis.study import jacobian_study  # noqa: E402
from osrkit.data.tasks import make_task  # noqa: E402
from osrkit.engine.identity import checkpoint_name  # noqa: E402
from osrkit.engine.pipeline import evaluate, fit_method  # noqa: E402
from osrkit.methods import default_config  # noqa: E402

# The base switches every extra off first (ablation_config): MNIST's default has gained extras (the rotation
# head, twelfth session), and "base" must stay the model without them whatever the default becomes.
_OFF = {"augment": "none", "weight_decay": 5e-4, "method_params": {"rotation_weight": 0.0}}


VARIANTS: dict[str, dict] = {
    "base": {},
    "+ augmentation": {"augment": "crop"},
    "+ weight decay 1e-3": {"weight_decay": 1e-3},
    "+ rotation head": {"method_params": {"rotation_weight": 0.1}},
    "final model (all three)": {"augment": "crop", "weight_decay": 1e-3, "method_params": {"rotation_weight": 0.1}},
    # the fourth extra, switched against the MNIST default (twelfth session: off by default on MNIST, so "off" is
    # the base's network: the identity-named checkpoint is shared and it trains once)
    "embedding normalisation on": {"method_params": {"embedding_norm": True}},
    "embedding normalisation off": {"method_params": {"embedding_norm": False}},
}


def ablation_config(name: str, model: str | None = None, epochs: int | None = None):
    """MNIST's m-OvR default with every extra off, then the variant's on (`replace` merges method params)."""
    base = default_config("movr", "mnist").replace(model=model, epochs=epochs).replace(**_OFF)
    return base.replace(**VARIANTS[name])


KEYS = ("auroc", "oscr", "accuracy", "known_mean", "unknown_mean", "difference", "davies_bouldin")


def render(rows: list[dict], h: dict) -> str:
    lines = [f"# m-OvR final-model ablation, MNIST `neal` splits {h['splits']}: {h['model']}, {h['epochs']} epochs", "",
             "| variant | AUROC | OSCR | accuracy | known norm | unknown norm | difference | Davies–Bouldin ↓ |",
             "|---|---|---|---|---|---|---|---|"]
    names = list(dict.fromkeys(r["variant"] for r in rows))
    mean = {}
    for n in names:
        sel = [r for r in rows if r["variant"] == n]
        mean[n] = {k: float(np.mean([r[k] for r in sel])) for k in KEYS}
        lines.append(f"| {n} | " + " | ".join(f"{mean[n][k]:.4f}" for k in KEYS) + " |")
    if "base" in mean:
        claims = [f"{n}: AUROC {'up' if mean[n]['auroc'] > mean['base']['auroc'] else 'not up'}, difference "
                  f"{'up' if mean[n]['difference'] > mean['base']['difference'] else 'not up'}"
                  for n in names if n != "base"]
        lines += ["", "The paper's claim, each extra against the base (means over splits): " + "; ".join(claims) + "."]
    lines += ["", f"Command: `{h['command']}`; date {h['date']}; {h['machine']['processor']}, {h['machine']['cpu_count']} "
              f"cores, torch {h['machine']['torch']}; commit {h['git_commit']}.", ""]
    for note in h.get("notes", []):
        lines += [note, ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", default="0,1,2")
    ap.add_argument("--model", default="vgg32-lite")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n", type=int, default=200, help="samples per side for the Jacobian norms")
    ap.add_argument("--variants", help="semicolon-separated names (default: all)")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--out-dir", default="runs/movr-ablation")
    ap.add_argument("--name", default="movr_ablation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                    help="fp32 (default): the reported MNIST grids' recipe; auto: bf16 where native")
    ap.add_argument("--merge", help="comma-separated result names to join into --name (runs split over processes; "
                                    "where two hold the same variant and split, the later one's row is kept)")
    ap.add_argument("--note", action="append", default=[], help="a paragraph to keep under the table (in the JSON)")
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads((RESULTS / f"{n}.json").read_text()) for n in args.merge.split(",")]
        latest = {(r["variant"], r["split"]): r for p in parts for r in p["rows"]}  # a later part's rerun wins
        order = list(VARIANTS)
        rows = sorted(latest.values(), key=lambda r: (order.index(r["variant"]), r["split"]))
        h = parts[0] | {"command": "; ".join([*(p["command"] for p in parts), header()["command"]]),
                        "git_commit": ", ".join(dict.fromkeys(p["git_commit"] for p in parts)),
                        "date": ", ".join(dict.fromkeys(p["date"] for p in parts))}
        h.pop("rows")
        h["notes"] = args.note
        write(args.name, h | {"rows": rows}, render(rows, h))
        return
    torch.set_num_threads(args.threads)
    names = args.variants.split(";") if args.variants else list(VARIANTS)
    h = header() | {"splits": args.splits, "model": args.model, "epochs": args.epochs, "notes": args.note}
    rows = []
    for split in [int(s) for s in args.splits.split(",")]:
        task = make_task("mnist", split, data_root=args.data_root)
        for n in names:
            cfg = ablation_config(n, args.model, args.epochs)
            cfg = cfg.replace(precision=args.precision, memory_format="auto").resolved("cpu")
            slug = n.strip("+ ").replace(" ", "-").replace("(", "").replace(")", "")
            # named by the run identity, so a changed default never resumes an older variant's network
            ckpt = Path(args.out_dir) / checkpoint_name("movr", task.name, cfg.to_dict(), task.spec,
                                                        share_network=False)
            trained = fit_method("movr", task, cfg, checkpoint=ckpt, resume=True, progress=False)
            res = evaluate(trained, task)
            jac = jacobian_study(trained, task, RESULTS / args.name / f"{slug}-split{split}", n=args.n, progress=False)
            rows.append({"variant": n, "split": split, **{k: float({**res, **jac}[k]) for k in KEYS}})
            print(rows[-1], flush=True)
            write(args.name, h | {"rows": rows}, render(rows, h))


if __name__ == "__main__":
    main()
