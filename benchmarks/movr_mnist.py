"""m-OvR against softmax and MLS on the `neal` splits of one task, one recipe for all, through `osrkit bench`.

    python benchmarks/movr_mnist.py --config benchmarks/grid_mnist_movr.yaml
    python benchmarks/movr_mnist.py --config benchmarks/grid_cifar10_jpeg_movr.yaml --name movr_cifar10_jpeg  # CPU, fp32
    python benchmarks/movr_mnist.py --config benchmarks/grid_cifar10_jpeg_movr_gpu.yaml --name movr_cifar10_jpeg_gpu  # GPU, bf16

Runs the grid in the YAML file (methods, splits, epochs, backbone: the same for every method) into its SQLite
database (resumable: stored runs are skipped), then re-scores every m-OvR network with every score reading and
the softmax networks with MSP, MLS and energy, on the known-test and unknown-test sets. Writes
benchmarks/results/<name>.{json,md}: per-split AUROC/OSCR/accuracy, means, and the issue's acceptance check.
The defaults were chosen on other data (benchmarks/results/movr_tuning_*.md); nothing here is tuned.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS, header, issue11_bar, own_method_config, stored_run_matches, task_label, write)

from osrkit.data.tasks import make_task  # noqa: E402
from osrkit.engine.checkpoint import load_checkpoint  # noqa: E402
from osrkit.engine.pipeline import evaluate_readings, load_trained  # noqa: E402
from osrkit.results.grid import GridConfig, checkpoint_dir, grid_kwargs, plan_grid, run_grid  # noqa: E402
from osrkit.results.store import open_store  # noqa: E402
from osrkit.scores.ovr import MOVR_SCORE_KINDS  # noqa: E402

READINGS = {"softmax": {"msp": ("softmax", {}), "mls": ("mls", {}), "energy": ("energy", {})},
            "movr": {k: ("movr", {"score": k}) for k in MOVR_SCORE_KINDS}}


def rescore(ckpt: Path, task, readings: dict) -> dict[str, dict]:
    """Every reading on one stored network."""
    res = evaluate_readings(load_trained(ckpt), task, readings)
    return {label: {k: float(r[k]) for k in ("auroc", "oscr", "accuracy", "fpr95")} for label, r in res.items()}


# the reading each stored run of a network was scored with in the grid: what a reused row is checked against
STORED_READINGS = {"softmax": (("softmax", "msp"), ("mls", "mls")), "movr": (("movr", None),)}


def reused_rows(path: Path, net: str, split: int, store, plan) -> dict[str, dict]:
    """An earlier report's rows for a network whose checkpoint is gone (e.g. a new machine), accepted only where
    every stored grid run of that very network (same run key) has the AUROC the report gives its reading."""
    saved = json.loads(path.read_text())["rows"][net].get(str(split))
    if saved is None:
        raise SystemExit(f"{path} has no {net} row for split {split}: retrain it (drop --reuse)")
    for method, label in STORED_READINGS[net]:
        spec = plan(method)
        label = label or spec.config["method_params"]["score"]
        if not stored_run_matches(store, spec.key, saved[label]["auroc"]):
            raise SystemExit(f"{path}: its {net} split {split} {label} AUROC does not match the stored run "
                             f"{spec.key[:12]} of this grid, so it is not the same network: retrain (drop --reuse)")
    return saved


def _ms(v: list[float]) -> str:
    return f"{np.mean(v):.4f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.4f}"


def readings_text(movr_params: dict) -> str:
    """What each m-OvR score reading is, for the network's scale (T, or each ||f|| without embedding normalisation)."""
    if movr_params.get("embedding_norm", True):
        return ("Readings: `target` = −log σ(T·cos(θ_ŷ+m)), the loss's own target term at the prediction; `max_cos`, "
                "`max_sigmoid` rank exactly as `target`; `loss_margin` = the whole training loss at the prediction; "
                "`loss` = the loss at the prediction without its margin (osrkit's first default); `max_projection` = "
                "−‖f‖·max cos θ, the largest projection of the embedding on a unit prototype (keeps the feature norm).")
    return ("Readings (trained without embedding normalisation: the logits' scale is each sample's ‖f‖, as in "
            "training): `target` = −log σ(‖f‖·cos(θ_ŷ+m)), the loss's own target term at the prediction; "
            "`loss_margin` = the whole training loss at the prediction; `loss` = the loss at the prediction without "
            "its margin; `max_projection` = −‖f‖·max cos θ, the largest logit; `max_sigmoid` ranks exactly as it; "
            "`max_cos` = −max cos θ, the angle alone.")


def render(res: dict) -> str:
    rows, splits = res["rows"], res["splits"]
    cfg = res["recipe"]
    lines = [f"# m-OvR vs softmax on {res.get('task_label', 'MNIST')} `neal` splits {', '.join(map(str, splits))}", "",
             f"One recipe for every network: {cfg['model']}, {cfg['epochs']} epochs, {cfg['optimizer']} lr {cfg['lr']} "
             f"{cfg['schedule']}, batch {cfg['batch_size']}, augment {cfg['augment']}, weight decay {cfg['weight_decay']}, "
             f"precision {cfg['precision']}, device {res.get('device', 'cpu')}. m-OvR: {res['movr_params']}, model {res['movr_model_kwargs']}, "
             f"weight decay on {res['movr_weight_decay_on']}.", "",
             "| network | score | " + " | ".join(f"split {s}" for s in splits) + " | AUROC mean ± std | OSCR mean | accuracy |",
             "|---|---|" + "---|" * len(splits) + "---|---|---|"]
    for net, readings in READINGS.items():
        for label in readings:
            a = [rows[net][str(s)][label]["auroc"] for s in splits]
            o = [rows[net][str(s)][label]["oscr"] for s in splits]
            c = [rows[net][str(s)][label]["accuracy"] for s in splits]
            default = " (default)" if (net, label) in (("movr", res["movr_default_score"]), ("softmax", "msp")) else ""
            lines.append(f"| {net} | {label}{default} | " + " | ".join(f"{v:.4f}" for v in a) +
                         f" | {_ms(a)} | {np.mean(o):.4f} | {np.mean(c):.4f} |")
    chk = res["acceptance"]
    if res.get("grid_splits", splits) != splits:
        lines += ["", f"**Partial**: splits {', '.join(map(str, splits))} of the grid's "
                  f"{', '.join(map(str, res['grid_splits']))}; the acceptance below is not yet the issue's."]
    lines += ["", f"Acceptance (issue 11, point {chk.get('point', 1)}): m-OvR mean AUROC {chk['movr']:.4f} ≥ softmax "
              f"{chk['softmax']:.4f} + {chk.get('margin', 0.005)}: "
              f"**{'yes' if chk['movr_vs_softmax'] else 'no'}**; ≥ MLS {chk['mls']:.4f}: "
              f"**{'yes' if chk['movr_vs_mls'] else 'no'}**. m-OvR wins on {chk['wins']} of {len(splits)} splits against softmax.",
              "", readings_text(res.get("movr_params", {})), "",
              f"Runs stored in `{res['db']}` (`osrkit table --db {res['db']}`).", "",
              *[f"The {net} rows of splits {', '.join(map(str, r['splits']))} are reused from `{r['from']}` (the "
                "checkpoints were not on this machine, or `--reuse-nets` named them); each matches its stored grid "
                "run's AUROC, so they are the "
                "same networks.\n" for net, r in res.get("reused", {}).items()],
              f"Command: `{res['command']}`; date {res['date']}; {res['machine']['processor']}, "
              f"{res['machine']['cpu_count']} cores, torch {res['machine']['torch']}; commit {res['git_commit']}.", "",
              *[f"{note}\n" for note in res.get("notes", [])]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(Path(__file__).with_name("grid_mnist_movr.yaml")))
    ap.add_argument("--name", default="movr_mnist")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--device", help="override the grid file's device (cpu, cuda)")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--splits", help="override the grid file's splits (comma-separated), e.g. a partial report")
    ap.add_argument("--note", action="append", default=[], help="a paragraph to keep under the table (saved in the "
                                                                    "JSON), e.g. where the networks were trained")
    ap.add_argument("--reuse", help="an earlier report of this grid (results/<NAME>.json) whose rows stand in for "
                                    "networks whose checkpoint is missing here, checked against the stored runs")
    ap.add_argument("--reuse-nets", default="", help="with --reuse: networks (softmax, movr) whose rows come from it even "
                                                    "where a checkpoint exists (e.g. one retrained since, not "
                                                    "bit-identical to the stored runs); still checked against them")
    args = ap.parse_args()
    if args.render_only:
        res = json.loads((RESULTS / f"{args.name}.json").read_text())
        if args.note:  # notes given now replace the saved ones
            res["notes"] = args.note
        write(args.name, res, render(res))
        return
    kw = grid_kwargs({"device": args.device, "threads": args.threads, "splits": args.splits}, args.config)
    kw.setdefault("data_root", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    grid = GridConfig.from_mapping(kw)
    run_grid(grid)
    store = open_store(grid.db, create=False)
    ckdir = checkpoint_dir(grid, store)
    splits, (task_name,) = kw["splits"], kw["tasks"]
    rows: dict = {net: {} for net in READINGS}
    reused: dict[str, list[int]] = {}

    def plan_one(method: str, split: int):
        """The grid's run of `method` on `split` (its config names the checkpoint and the stored run)."""
        return plan_grid([method], [task_name], [split], [0], epochs=kw.get("epochs"), config=kw.get("config"),
                         device=kw.get("device", "cpu"),
                         method_config=own_method_config(kw.get("method_config"), method))[0]

    for split in splits:
        task = make_task(task_name, split=split, family="neal", data_root=kw["data_root"])
        for net in READINGS:
            plan = partial(plan_one, split=split)
            ckpt = ckdir / plan(net).checkpoint_name(task)
            if args.reuse and (not ckpt.exists() or net in args.reuse_nets.split(",")):
                rows[net][str(split)] = reused_rows(RESULTS / f"{args.reuse}.json", net, split, store, plan)
                reused.setdefault(net, []).append(split)
            else:
                rows[net][str(split)] = rescore(ckpt, task, READINGS[net])
            print(split, net, {k: round(v["auroc"], 4) for k, v in rows[net][str(split)].items()}, flush=True)
    movr_spec = plan_one("movr", splits[-1])
    point, margin = issue11_bar(task_name)
    mp = movr_spec.config["method_params"]
    # the recipe as trained: the stored config has "auto" precision and memory format resolved for the device
    movr_ckpt = ckdir / movr_spec.checkpoint_name(task)
    recipe = load_checkpoint(movr_ckpt)["config"] if movr_ckpt.exists() else movr_spec.config
    mean = lambda net, r: float(np.mean([rows[net][str(s)][r]["auroc"] for s in splits]))  # noqa: E731
    ms, sm, ml = mean("movr", mp["score"]), mean("softmax", "msp"), mean("softmax", "mls")
    wins = sum(rows["movr"][str(s)][mp["score"]]["auroc"] > rows["softmax"][str(s)]["msp"]["auroc"] for s in splits)
    label = task_label(task)
    res = header() | {"task": task_name, "task_label": label, "splits": splits, "rows": rows, "db": str(kw["db"]),
                      "grid_splits": grid_kwargs({}, args.config)["splits"],
                      "recipe": recipe, "device": kw.get("device", "cpu"),
                      "movr_params": mp, "movr_model_kwargs": movr_spec.config["model_kwargs"],
                      "movr_weight_decay_on": movr_spec.config["weight_decay_on"], "movr_default_score": mp["score"],
                      "reused": {net: {"from": f"{args.reuse}.json", "splits": v} for net, v in reused.items()},
                      "notes": args.note,
                      "acceptance": {"movr": ms, "softmax": sm, "mls": ml, "movr_vs_softmax": ms >= sm + margin,
                                     "margin": margin, "point": point,
                                     "movr_vs_mls": ms >= ml, "wins": wins}}
    write(args.name, res, render(res))
    print(render(res))


if __name__ == "__main__":
    main()
