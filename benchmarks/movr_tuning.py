"""Choose m-OvR's defaults on data that is not reported: training variants × every score reading.

    python benchmarks/movr_tuning.py --task digits --splits 0,1,2,3,4 --seeds 0,1
    python benchmarks/movr_tuning.py --task mnist --family arpl --splits 0 --model vgg32-lite --epochs 3
    python benchmarks/movr_tuning.py --task mnist --known-sets "0,2,3,6,8,9;1,2,4,5,6,8" --model vgg32-lite --epochs 3
    python benchmarks/movr_tuning.py --task cifar10 --family arpl --splits 0 --model vgg32-lite --epochs 30 \
        --data-root data/cifar10-jpeg-root --checkpoint-dir runs/movr_tuning-checkpoints --variants "softmax;..."

Each variant (a name and its TrainConfig overrides) is trained once per split and seed; every m-OvR score
reading is computed on that one network, and softmax is trained with the same recipe for the baseline
(MSP and MLS on one network). The MNIST and CIFAR-10 `neal` splits, where results are reported, are never tuned on.
With --checkpoint-dir every network checkpoints each epoch under its run identity's name, so a long run
(CIFAR-10 on CPU) resumes where it stopped and a finished network is only rescored.
Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, header, provenance, write  # noqa: E402
from movr_seeds import interval_text, paired  # noqa: E402

from osrkit.data.splits import get_split, num_splits  # noqa: E402
from osrkit.data.tasks import make_task  # noqa: E402
from osrkit.engine.identity import checkpoint_name  # noqa: E402
from osrkit.engine.pipeline import evaluate_readings, fit_method  # noqa: E402
from osrkit.methods import default_config  # noqa: E402
from osrkit.scores.ovr import MOVR_SCORE_KINDS  # noqa: E402

REPORTED_TASKS = ("mnist", "cifar10")  # their `neal` splits hold the reported m-OvR comparisons

# name -> (method, TrainConfig overrides); method_params merge into the method's defaults
VARIANTS: dict[str, tuple[str, dict]] = {
    "softmax": ("softmax", {}),
    "movr (paper: margin all)": ("movr", {"method_params": {"margin_on": "all"}}),
    "movr margin target": ("movr", {"method_params": {"margin_on": "target"}}),
    "movr margin two-sided": ("movr", {"method_params": {"margin_on": "two-sided"}}),
    # first round: around the paper's reading (margin on every class)
    "movr neck": ("movr", {"model_kwargs": {"neck": 128}, "method_params": {"margin_on": "all"}}),
    "movr no-decay groups": ("movr", {"weight_decay_on": "weights", "method_params": {"margin_on": "all"}}),
    "movr neck + no-decay": ("movr", {"model_kwargs": {"neck": 128}, "weight_decay_on": "weights",
                                      "method_params": {"margin_on": "all"}}),
    "movr two-sided + neck + no-decay": ("movr", {"model_kwargs": {"neck": 128}, "weight_decay_on": "weights",
                                                  "method_params": {"margin_on": "two-sided"}}),
    "movr T=16": ("movr", {"method_params": {"margin_on": "all", "temperature": 16.0}}),
    "movr T=64": ("movr", {"method_params": {"margin_on": "all", "temperature": 64.0}}),
    "movr m=0.2": ("movr", {"method_params": {"margin_on": "all", "margin": 0.2}}),
    "movr m=0.8": ("movr", {"method_params": {"margin_on": "all", "margin": 0.8}}),
    # second round, around the first round's best (margin on the target only)
    "movr target + neck": ("movr", {"method_params": {"margin_on": "target"}, "model_kwargs": {"neck": 128}}),
    "movr target + no-decay": ("movr", {"method_params": {"margin_on": "target"}, "weight_decay_on": "weights"}),
    "movr target T=16": ("movr", {"method_params": {"margin_on": "target", "temperature": 16.0}}),
    "movr target m=0.2": ("movr", {"method_params": {"margin_on": "target", "margin": 0.2}}),
    "movr target m=0.8": ("movr", {"method_params": {"margin_on": "target", "margin": 0.8}}),
    # third round (MNIST arpl splits 2, 3): the paper's rotation head on the margin-on-target recipe
    "movr target + rotation": ("movr", {"method_params": {"margin_on": "target", "rotation_weight": 0.1}}),
    # fourth round (CIFAR-10 arpl split 0): the rotation head at CIFAR-10's T = 16, spelled out
    "movr target T=16 + rotation": ("movr", {"method_params": {"margin_on": "target", "temperature": 16.0,
                                                               "rotation_weight": 0.1}}),
    # twelfth session (MNIST custom known sets): without the paper's embedding-normalisation extra (scale ||f||)
    "movr target, unnormalised": ("movr", {"method_params": {"margin_on": "target", "embedding_norm": False}}),
    "movr (paper: margin all), unnormalised": ("movr", {"method_params": {"margin_on": "all",
                                                                          "embedding_norm": False}}),
    "movr (paper: margin all), unnormalised + rotation": ("movr", {"method_params": {
        "margin_on": "all", "embedding_norm": False, "rotation_weight": 0.1}}),
    # fourteenth session: the margin m of the paper's Fig. 14 around MNIST's current default (the row above, m = 0.5)
    "movr (paper: margin all), unnormalised + rotation, m=0.3": ("movr", {"method_params": {
        "margin_on": "all", "embedding_norm": False, "rotation_weight": 0.1, "margin": 0.3}}),
    "movr (paper: margin all), unnormalised + rotation, m=0.7": ("movr", {"method_params": {
        "margin_on": "all", "embedding_norm": False, "rotation_weight": 0.1, "margin": 0.7}}),
    # the paper's schedule shape (cosine to lr x 1e-4, i.e. 0.1 -> 1e-5) instead of osrkit's one-cycle, both methods
    "softmax cosine": ("softmax", {"schedule": "cosine"}),
    "movr target T=16 cosine": ("movr", {"method_params": {"margin_on": "target", "temperature": 16.0},
                                         "schedule": "cosine"}),
}


# What an m-OvR variant that does not name them was written against: the embedding normalised, no rotation head (the
# defaults of their time), pinned so a variant trains the same network after a data set's defaults move on.
MOVR_VARIANT_BASE = {"embedding_norm": True, "rotation_weight": 0.0}


def run_variant(name: str, task, args, seed: int) -> dict[str, dict]:
    method, over = VARIANTS[name]
    if method == "movr":
        over = {**over, "method_params": {**MOVR_VARIANT_BASE, **over.get("method_params", {})}}
    cfg = default_config(method, args.task).replace(seed=seed, **({"model": args.model} if args.model else {}),
                                                    **({"epochs": args.epochs} if args.epochs else {}))
    # the reported CPU grids' precision (fp32 unless asked), resolved: the name says what trains
    cfg = cfg.replace(**over).replace(precision=args.precision, memory_format="auto").resolved("cpu")
    t0 = time.perf_counter()
    ckpt = None
    if args.checkpoint_dir:  # named by the run identity: a changed variant never resumes another's network
        ckpt = Path(args.checkpoint_dir) / checkpoint_name(method, task.name, cfg.to_dict(), task.spec,
                                                           share_network=False)
    trained = fit_method(method, task, cfg, checkpoint=ckpt, resume=ckpt is not None, progress=False)
    if method == "softmax":
        kinds = {"msp": ("softmax", {}), "mls": ("mls", {})}
    else:
        kinds = {k: ("movr", {"score": k}) for k in MOVR_SCORE_KINDS}
    out = {label: {k: float(r[k]) for k in ("auroc", "oscr", "accuracy")}
           for label, r in evaluate_readings(trained, task, kinds).items()}
    out["_seconds"] = time.perf_counter() - t0
    out["_recipe"] = {k: cfg.to_dict()[k] for k in ("model", "epochs", "schedule", "precision", "memory_format")}
    return out


def _recipe(row: dict) -> str:
    """What trained a row's network (resolved: "auto" precision shows as what ran)."""
    r = row["scores"].get("_recipe")
    return f"{r['model']}, {r['epochs']} ep, {r['schedule']}, {r['precision']}" if r else "not recorded"


def render(rows: list[dict], h: dict) -> str:
    names = list(dict.fromkeys(r["variant"] for r in rows))
    lines = [f"# m-OvR tuning on {h['protocol']} (not a reported protocol)", "",
             "| variant | recipe | score | AUROC | OSCR | accuracy | runs |", "|---|---|---|---|---|---|---|"]
    best = {}
    for n in names:
        sel = [r for r in rows if r["variant"] == n]
        for s in [k for k in sel[0]["scores"] if not k.startswith("_")]:
            a = np.array([r["scores"][s]["auroc"] for r in sel])
            o = np.array([r["scores"][s]["oscr"] for r in sel])
            c = np.array([r["scores"][s]["accuracy"] for r in sel])
            best[(n, s)] = a.mean()
            lines.append(f"| {n} | {_recipe(sel[0])} | {s} | {a.mean():.4f} ± {a.std(ddof=1) if len(a) > 1 else 0:.4f} | "
                         f"{o.mean():.4f} | {c.mean():.4f} | {len(a)} |")
    top = sorted(best.items(), key=lambda kv: -kv[1])[:5]
    lines += ["", "Top five (variant, score) by mean AUROC: " +
              "; ".join(f"{n} / {s}: {v:.4f}" for (n, s), v in top), ""]
    pairs = h.get("pairs", [])
    if pairs:
        lines += ["Paired over the (known set or split, seed) cells both hold (AUROC, first minus second, 95% t "
                  "interval):", ""]
        for a, b in pairs:
            d = paired_auroc(rows, a, b)
            lines.append(f"- {a} − {b}: {d['mean']:+.4f} ({interval_text(d)}), n = {d['n']}; "
                         f"first higher in {d['wins']} of {d['n']}")
        lines.append("")
    lines += [provenance(h), ""]
    for note in h.get("notes", []):
        lines += [note, ""]
    return "\n".join(lines)


def paired_auroc(rows: list[dict], first: str, second: str) -> dict:
    """Paired AUROC difference of two 'variant/score' readings over the (split, seed) cells that hold both."""
    def cells(reading: str) -> dict:
        variant, score = reading.rsplit("/", 1)
        return {(_cell(r), r["seed"]): r["scores"][score]["auroc"] for r in rows
                if r["variant"] == variant and score in r["scores"]}
    a, b = cells(first), cells(second)
    both = sorted(set(a) & set(b), key=str)  # known sets (tuples) and split indices may mix
    if not both:
        raise SystemExit(f"no (split, seed) cell holds both {first!r} and {second!r}")
    return paired(np.array([a[k] - b[k] for k in both]))


def _cell(row: dict):
    """What a row's network was trained on: its known classes where chosen (a split index is only a position in
    its own run's --known-sets list), else its split index."""
    return tuple(row["known"]) if row.get("known") else row["split"]


def _with_known(saved: dict) -> list[dict]:
    """A saved report's rows, each with its known classes (rows written before they carried them: read from the
    report's protocol, "known sets a,b;c,d, seeds ...")."""
    m = re.search(r"known sets ([\d,;]+), seeds", saved["protocol"])
    sets = [sorted(int(c) for c in ks.split(",")) for ks in m.group(1).split(";")] if m else None
    return [r if r.get("known") or not sets else {**r, "known": sets[r["split"]]} for r in saved["rows"]]


def merge(args) -> None:
    """One report from several saved runs of this script (their rows; each file keeps its own command)."""
    saved = [json.loads((RESULTS / f"{n}.json").read_text()) for n in args.merge.split(",")]
    protocols = list(dict.fromkeys(s["protocol"] for s in saved))
    h = header() | {"protocol": "; ".join(protocols), "merged": args.merge.split(","), "pairs": _pairs(args),
                    "notes": args.note}
    rows = _one_recipe_per_variant([r for s in saved for r in _with_known(s)])
    write(args.name, h | {"rows": rows}, render(rows, h))
    print(render(rows, h))


def _one_recipe_per_variant(rows: list[dict]) -> list[dict]:
    """The rows, unless one variant name was trained with two recipes (a table row would average both)."""
    for variant in dict.fromkeys(r["variant"] for r in rows):
        recipes = {_recipe(r) for r in rows if r["variant"] == variant}
        if len(recipes) > 1:
            raise SystemExit(f"variant {variant!r} was trained with different recipes ({'; '.join(sorted(recipes))}):"
                             " merge reports of one recipe")
    return rows


def _pairs(args) -> list[list[str]]:
    """--pair 'variant/score;variant/score' (repeatable) as [first, second] lists."""
    out = []
    for p in args.pair:
        parts = p.split(";")
        if len(parts) != 2 or not all("/" in x for x in parts):
            raise SystemExit(f"--pair wants 'variant/score;variant/score', got {p!r}")
        out.append(parts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="digits")
    ap.add_argument("--family", default="neal")
    ap.add_argument("--splits", default="0,1,2,3,4")
    ap.add_argument("--known-sets", help="';'-separated known-class sets (e.g. '0,2,3,6,8,9;1,2,4,5,6,8'), each a "
                                         "split whose unknowns are the other classes, instead of --family/--splits; "
                                         "a set equal to a reported `neal` split is refused")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--model")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--variants", help="comma-separated names (default: all); see VARIANTS")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--name", default="movr_tuning")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                    help="fp32 (default): the recipe of the reported CPU grids; auto: bf16 where native")
    ap.add_argument("--merge", help="comma-separated names of saved reports (results/<name>.json) to merge into "
                                    "--name, training nothing")
    ap.add_argument("--pair", action="append", default=[], help="'variant/score;variant/score': report their paired "
                                                                 "AUROC difference (repeatable)")
    ap.add_argument("--checkpoint-dir", help="checkpoint every network here (each epoch), so a rerun resumes")
    ap.add_argument("--note", action="append", default=[], help="a paragraph to keep under the table (saved in the "
                                                                 "JSON), e.g. the decision rule the run was for")
    args = ap.parse_args()
    if args.merge:
        return merge(args)
    if args.known_sets:
        return tune(args, [("custom", i, sorted(int(c) for c in ks.split(",")))
                           for i, ks in enumerate(args.known_sets.split(";"))])
    if args.task in REPORTED_TASKS and args.family == "neal":
        raise SystemExit(f"{args.task} neal splits are a reported protocol (m-OvR vs softmax): tune elsewhere "
                         "(digits, or --family arpl)")
    tune(args, [(args.family, int(s), None) for s in args.splits.split(",")])


def reported_known_sets(task: str) -> list[list[int]]:
    """The known-class sets of `task`'s reported (`neal`) splits; none for a task not reported."""
    if task not in REPORTED_TASKS:
        return []
    return [sorted(get_split("neal", task, i)[0]) for i in range(num_splits("neal", task))]


def tune(args, splits: list[tuple[str, int, list[int] | None]]) -> None:
    """Train and score every variant on each (family, split, known set or None) and seed; write the report."""
    reported = reported_known_sets(args.task)
    for _, _, known in splits:
        if known is not None and known in reported:
            raise SystemExit(f"known set {known} is a reported `neal` split of {args.task}: tune on other classes")
    torch.set_num_threads(args.threads)
    names = args.variants.split(";") if args.variants else list(VARIANTS)
    where = (f"known sets {args.known_sets}" if args.known_sets else f"`{args.family}` splits {args.splits}")
    h = header() | {"protocol": f"{args.task} {where}, seeds {args.seeds}", "pairs": _pairs(args), "notes": args.note}
    rows = []
    for family, split, known in splits:
        for seed in [int(s) for s in args.seeds.split(",")]:
            where = {"known": known} if known is not None else {"split": split, "family": family}
            task = make_task(args.task, data_root=args.data_root, seed=seed, **where)
            for n in names:
                res = run_variant(n, task, args, seed)
                rows.append({"variant": n, "split": split, "known": known, "seed": seed, "scores": res})
                print(f"split {split} seed {seed} {n}: " + ", ".join(
                    f"{k} {v['auroc']:.4f}" for k, v in res.items() if not k.startswith("_")), flush=True)
                write(args.name, h | {"rows": rows}, render(rows, h))


if __name__ == "__main__":
    main()
