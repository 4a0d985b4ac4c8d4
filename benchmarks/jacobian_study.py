"""Jacobian-norm study on `neal` splits (Park et al. 2024): softmax, CAC and m-OvR side by side.

    python benchmarks/jacobian_study.py --splits 0 --model vgg32-lite --epochs 2 --n 300
    python benchmarks/jacobian_study.py --grid benchmarks/grid_cifar10_jpeg_movr.yaml --methods softmax,movr \
        --name jacobian_study_cifar10_jpeg   # the networks an `osrkit bench` grid trained (its task and recipe)

For each method and split: train (resumable checkpoints under --out-dir), evaluate AUROC/OSCR/accuracy,
and compute the per-sample Frobenius norm of the embedding's input Jacobian for --n known-test and
--n unknown-test images (exact, batched). Writes benchmarks/results/<name>.{json,md} and one
PNG per method and split (known vs unknown norm distributions). The paper's two findings, checked:
(1) known norm < unknown norm; (2) the gap is larger for the method with stronger inter-class separation.
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
from _common import RESULTS, header, own_method_config, stored_run_matches, task_label, write  # noqa: E402

from osrkit.analysis.study import jacobian_study  # noqa: E402
from osrkit.data.tasks import make_task  # noqa: E402
from osrkit.engine.pipeline import evaluate, fit_method, load_trained  # noqa: E402
from osrkit.results.grid import GridConfig, checkpoint_dir, grid_kwargs, plan_grid  # noqa: E402
from osrkit.results.store import open_store  # noqa: E402
from osrkit.methods import default_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="softmax,cac,movr")
    ap.add_argument("--splits", default="0,1,2,3,4")
    ap.add_argument("--model", default="vgg32-lite")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="with --grid/--from-bench: study the grid's networks of this "
                                                          "seed (default 0)")
    ap.add_argument("--n", type=int, default=300, help="samples per side for the Jacobian norms")
    ap.add_argument("--unit", action="store_true", help="the Jacobian of f/||f|| (what a cosine head such as "
                                                       "m-OvR's sees) instead of the embedding f")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", default="runs/bench-jacobian")
    ap.add_argument("--from-bench", help="checkpoint folder of an `osrkit bench` grid with the same model, epochs and "
                                         "splits: study those networks instead of training new ones")
    ap.add_argument("--grid", help="an `osrkit bench` YAML file: study the networks its grid trained (its task, "
                                    "splits, epochs, recipe, data root and checkpoint folder; flags given win)")
    ap.add_argument("--name", default="jacobian_study", help="results/<name>.{json,md} and results/<name>/ plots")
    ap.add_argument("--render-only", action="store_true", help="rebuild the Markdown from results/<name>.json")
    ap.add_argument("--note", action="append", default=[], help="a dated paragraph to keep under the table (saved in "
                                                                  "the JSON, so a later --render-only keeps it)")
    ap.add_argument("--reuse", help="with --grid: an earlier study of this grid (results/<NAME>.json) whose rows "
                                    "stand in for networks whose checkpoint is missing here, checked against the "
                                    "grid's stored runs")
    args = ap.parse_args()
    if args.render_only:
        saved = json.loads((RESULTS / f"{args.name}.json").read_text())
        for r in saved["rows"]:  # rows written before the cosine silhouette joined them: take it from the run's summary
            summary = RESULTS / args.name / f"{r['method']}-split{r['split']}" / "jacobian_summary.json"
            if "silhouette_cosine" not in r and summary.exists():
                r["silhouette_cosine"] = json.loads(summary.read_text()).get("silhouette_cosine")
        saved["notes"] = saved.get("notes", []) + args.note
        cmd = saved["command"].split()  # runs saved before "recipe" joined the file: read their command line
        opt = lambda flag, default: saved.get("recipe", {}).get(flag) or (  # noqa: E731
            cmd[cmd.index(flag) + 1] if flag in cmd else default)
        splits = ",".join(map(str, sorted({r["split"] for r in saved["rows"]})))  # the rows, also of merged runs
        write(args.name, saved, render(saved["rows"], splits, opt("--model", args.model),
                                              int(opt("--epochs", args.epochs)), int(opt("--n", args.n)), h=saved,
                                              name=args.name, data_label=saved.get("task_label", "MNIST"),
                                              notes=saved["notes"], unit=bool(saved.get("recipe", {}).get("--unit"))))
        return
    torch.set_num_threads(args.threads)
    task_name, grid_config = "mnist", {"model": args.model}
    if args.grid:
        task_name, grid_config = _from_grid(args)
    if args.seed and not args.from_bench:
        raise SystemExit("--seed picks a grid's networks: give --grid or --from-bench with it")
    rows = []
    for split in [int(s) for s in str(args.splits).split(",")]:
        task = make_task(task_name, split, data_root=args.data_root, seed=args.seed)
        for method in args.methods.split(","):
            cfg = default_config(method, task_name).replace(model=args.model, epochs=args.epochs)
            if args.from_bench:  # the very networks an `osrkit bench` grid trained (same recipe and naming)
                spec = plan_grid([method], [task_name], [split], [args.seed], epochs=args.epochs, config=grid_config,
                                 device=getattr(args, "grid_device", "cpu"),
                                 method_config=own_method_config(getattr(args, "method_config", None), method))[0]
                ckpt = Path(args.from_bench) / spec.checkpoint_name(task)
                if not ckpt.exists() and args.reuse and args.grid:
                    rows.append(_reused_row(args, method, split, spec))
                    print(f"{method} split {split}: reused from {args.reuse}.json", flush=True)
                    continue
                if not ckpt.exists():
                    raise SystemExit(f"{ckpt} not found: run the bench grid first (or drop --from-bench)")
            else:
                ckpt = Path(args.out_dir) / f"{method}-{args.model}-e{args.epochs}-split{split}.pt"
            trained = fit_method(method, task, cfg, checkpoint=ckpt, resume=True, progress=False) \
                if not args.from_bench else load_trained(ckpt)
            res = evaluate(trained, task)
            plot_dir = RESULTS / args.name / f"{method}-split{split}"
            jac = jacobian_study(trained, task, plot_dir, n=args.n, progress=False, unit=args.unit)
            row = {"method": method, "split": split, **{k: res[k] for k in ("auroc", "oscr", "accuracy")},
                   **{k: jac[k] for k in ("known_mean", "unknown_mean", "difference", "auroc_of_norm",
                                                  "between_within", "silhouette", "silhouette_cosine")},
                   **{k: jac[k] for k in ("davies_bouldin", "davies_bouldin_unit") if k in jac}}
            row["ratio"] = row["unknown_mean"] / row["known_mean"]
            rows.append(row)
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    label = task_label(task)
    recipe = {"--splits": str(args.splits), "--model": args.model, "--epochs": args.epochs, "--n": args.n,
              "--unit": args.unit, "--seed": args.seed}
    write(args.name, {**header(), "rows": rows, "task_label": label, "recipe": recipe, "notes": args.note},
          render(rows, args.splits, args.model, args.epochs, args.n, name=args.name, data_label=label, notes=args.note,
                 unit=args.unit))


def _reused_row(args: argparse.Namespace, method: str, split: int, spec) -> dict:
    """An earlier study's row for a network whose checkpoint is gone, accepted only where the grid's stored run of
    that very network (same run key) has the AUROC the row gives (the same network, scored the same way)."""
    saved = [r for r in json.loads((RESULTS / f"{args.reuse}.json").read_text())["rows"]
             if (r["method"], r["split"]) == (method, split)]
    store = open_store(grid_kwargs({}, args.grid)["db"], create=False)
    if len(saved) != 1 or not stored_run_matches(store, spec.key, saved[0]["auroc"]):
        raise SystemExit(f"{args.reuse}.json: no {method} split {split} row matching the grid's stored run "
                         f"{spec.key}: run the bench grid for it (or drop --reuse)")
    return {**saved[0], "reused_from": f"{args.reuse}.json"}


def _from_grid(args: argparse.Namespace) -> tuple[str, dict]:
    """Fill --splits, --epochs, --model, --data-root and --from-bench from a grid file, where not given on the
    command line; returns the grid's one task and its config (which names its checkpoints)."""
    kw = grid_kwargs({}, args.grid)
    if len(kw.get("tasks", [])) != 1:
        raise SystemExit(f"{args.grid}: --grid needs a grid of one task, got {kw.get('tasks')}")
    given = set(sys.argv)
    config = dict(kw.get("config") or {})
    args.grid_device = kw.get("device", "cpu")  # its run keys resolve "auto" precision for the grid's device
    args.method_config = kw.get("method_config")
    if "--splits" not in given and "splits" in kw:
        args.splits = ",".join(map(str, kw["splits"]))
    if "--epochs" not in given and kw.get("epochs") is not None:
        args.epochs = kw["epochs"]
    if "--model" not in given and "model" in config:
        args.model = config["model"]
    if "--data-root" not in given and kw.get("data_root"):
        args.data_root = kw["data_root"]
    if not args.from_bench:
        grid = GridConfig.from_mapping(kw)
        args.from_bench = str(checkpoint_dir(grid, open_store(grid.db, create=False)))
    return kw["tasks"][0], {**config, "model": args.model}


def _split_orders_match(rows: list[dict], split: int) -> bool:
    """Whether, on one split, ranking the methods by between/within equals ranking them by the AUROC of the norm."""
    sel = [r for r in rows if r["split"] == split]
    return sorted(sel, key=lambda r: -r["between_within"]) == sorted(sel, key=lambda r: -r["auroc_of_norm"])


def _fig8_claim(rows: list[dict], mean) -> str:
    """The paper's Fig. 8: m-OvR has the larger Jacobian-norm difference and the lower Davies–Bouldin index."""
    splits = sorted({r["split"] for r in rows})
    get = lambda m, sp, k: next(r[k] for r in rows if r["method"] == m and r["split"] == sp)  # noqa: E731
    diff = sum(get("movr", sp, "difference") > get("softmax", sp, "difference") for sp in splits)
    ratio = sum(get("movr", sp, "ratio") > get("softmax", sp, "ratio") for sp in splits)
    db = sum(get("movr", sp, "davies_bouldin") < get("softmax", sp, "davies_bouldin") for sp in splits)
    dbu = sum(get("movr", sp, "davies_bouldin_unit") < get("softmax", sp, "davies_bouldin_unit") for sp in splits)
    verdict = lambda k: "holds" if k == len(splits) else ("holds in part" if k else "does not hold")  # noqa: E731
    return (f"The paper's Fig. 8 (m-OvR over softmax). Norm difference (unknown − known) larger for movr in {diff} of "
            f"{len(splits)} splits ({verdict(diff)}; mean movr {mean('movr', 'difference'):.4f}, softmax "
            f"{mean('softmax', 'difference'):.4f}; the scale-free ratio unknown/known larger in {ratio} of {len(splits)}). "
            f"Davies–Bouldin lower (better) for movr in {db} of {len(splits)} splits ({verdict(db)}; mean movr "
            f"{mean('movr', 'davies_bouldin'):.3f}, softmax {mean('softmax', 'davies_bouldin'):.3f}); on the "
            f"unit-normalised embedding in {dbu} of {len(splits)} (movr {mean('movr', 'davies_bouldin_unit'):.3f}, "
            f"softmax {mean('softmax', 'davies_bouldin_unit'):.3f}).")


def render(rows: list[dict], splits: str, model: str, epochs: int, n: int, h: dict | None = None,
           name: str = "jacobian_study", data_label: str = "MNIST", notes: list[str] | None = None,
           unit: bool = False) -> str:
    """The Markdown table and the two findings, from the per-run rows; notes (saved in the JSON) go last."""
    for r in rows:
        r.setdefault("ratio", r["unknown_mean"] / r["known_mean"])
    methods = list(dict.fromkeys(r["method"] for r in rows))
    mean = lambda m, k: float(np.mean([r[k] for r in rows if r["method"] == m]))  # noqa: E731
    keys = ["auroc", "oscr", "accuracy", "known_mean", "unknown_mean", "difference", "ratio", "auroc_of_norm"]
    heads = ["AUROC", "OSCR", "accuracy", "known norm", "unknown norm", "difference", "ratio", "AUROC of norm"]
    measured = all("between_within" in r for r in rows)
    if measured:
        keys += ["between_within", "silhouette"]
        heads += ["between/within", "silhouette"]
    cosine = all(r.get("silhouette_cosine") is not None for r in rows)
    if cosine:
        keys.append("silhouette_cosine")
        heads.append("silhouette (cosine)")
    if all("davies_bouldin" in r for r in rows):
        keys += ["davies_bouldin", "davies_bouldin_unit"]
        heads += ["Davies–Bouldin ↓", "Davies–Bouldin, unit ↓"]
    md = [f"# Jacobian-norm study, {data_label} `neal` splits {splits}: {model}, {epochs} epochs", "",
          "| method | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        md.append(f"| {m} | " + " | ".join(f"{np.mean([r[k] for r in sel]):.4f} ± {np.std([r[k] for r in sel], ddof=1 if len(sel) > 1 else 0):.4f}"
                                          for k in keys) + " |")
    order = lambda k: sorted(methods, key=lambda m: -mean(m, k))  # noqa: E731
    by = lambda k: ", ".join(f"{m} {mean(m, k):.3f}" for m in order(k))  # noqa: E731
    md += ["", "Mean ± sample standard deviation over splits. Norms: the " + ("unit-normalised embedding f/‖f‖'s"
           if unit else "embedding's") + " input Jacobian (w.r.t. the normalised "
           f"input), exact, n={n} per side; plots in `results/{name}/`. Separation: on the same " + ("unit-normalised "
           if unit else "") + "embedding of the n "
           "known-test samples; between/within = mean distance between class means / mean distance to the own class "
           "mean; silhouette = scikit-learn's (euclidean, and cosine)" + ("; Davies–Bouldin = scikit-learn's (the paper's "
           "measure, lower = better separated; 'unit' on the unit-normalised embedding)" if "davies_bouldin" in keys else "")
           + ".", "",
           f"Finding 1 (known norm < unknown norm) holds in {sum(r['known_mean'] < r['unknown_mean'] for r in rows)}"
           f" of {len(rows)} runs.", "",
           "Finding 2 (a larger gap for stronger inter-class separation). The norms of different networks' embeddings "
           f"are not on one scale, so compare the scale-free measures. Mean AUROC of the norm: {by('auroc_of_norm')}. "
           f"Mean ratio unknown/known: {by('ratio')}. Mean AUROC of the method's own score: {by('auroc')}."]
    if measured:
        same = order("between_within") == order("auroc_of_norm")
        md[-1] += (f" Measured separation (between/within): {by('between_within')}; silhouette: {by('silhouette')}. "
                   f"The methods' order by separation {'matches' if same else 'does not match'} their order by the "
                   "AUROC of the norm.")
        split_ids = sorted({r["split"] for r in rows})
        per_split = sum(_split_orders_match(rows, sp) for sp in split_ids)
        md[-1] += f" Per split, the two orders match in {per_split} of {len(split_ids)} splits."
        if {"movr", "softmax"} <= set(methods):
            stronger = mean("movr", "between_within") > mean("softmax", "between_within")
            md[-1] += (" The paper's premise that m-OvR separates classes more than softmax "
                       f"{'holds' if stronger else 'does not hold'} under this schedule (between/within movr "
                       f"{mean('movr', 'between_within'):.3f}, softmax {mean('softmax', 'between_within'):.3f}"
                       + (f"; cosine silhouette, the geometry of m-OvR's cosine head, movr {mean('movr', 'silhouette_cosine'):.3f}, "
                          f"softmax {mean('softmax', 'silhouette_cosine'):.3f}" if cosine else "") + ")"
                       + ("." if stronger else f"; so the mechanism (more separation, larger gap) is tested here across "
                          f"the {len(methods)} methods' measured separation, not as movr over softmax."))
    if {"movr", "softmax"} <= set(methods) and all("davies_bouldin" in r for r in rows):
        md += ["", _fig8_claim(rows, mean)]
    md.append("")
    h = h or header()
    md.append(f"Command: `{h['command']}`; date {h['date']}; {h['machine']['processor']}, {h['machine']['cpu_count']} cores; "
              f"commit {h['git_commit']}.")
    for note in notes or []:
        md += ["", note]
    text = "\n".join(md) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    main()
