"""MNIST class-split benchmark: softmax / MLS (one CE network per split) and CAC on the 5 `neal` splits.

    python benchmarks/mnist_baselines.py --methods softmax,mls,cac --model vgg32-lite --epochs 2

Writes benchmarks/results/<name>.json and .md: per-split AUROC, OSCR, accuracy, wall time, and
mean ± std per method. Methods sharing a loss (softmax, mls, energy) share one trained network.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, write  # noqa: E402

from osrkit.data.tasks import make_task  # noqa: E402
from osrkit.engine.pipeline import evaluate, fit_method, with_scorer  # noqa: E402
from osrkit.methods import default_config  # noqa: E402

CE_FAMILY = ("softmax", "mls", "energy")
METRICS = ("auroc", "oscr", "accuracy", "fpr95")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="softmax,mls,cac")
    ap.add_argument("--splits", default="0,1,2,3,4")
    ap.add_argument("--model", default="vgg32-lite")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="mnist_baselines")
    ap.add_argument("--out-dir", default="runs/bench-mnist", help="checkpoints (resumable)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    rows = []
    for split in [int(s) for s in args.splits.split(",")]:
        task = make_task("mnist", split, data_root=args.data_root)
        trained_ce = None
        ce_seconds = 0.0
        for method in methods:
            t0 = time.perf_counter()
            if method in CE_FAMILY and trained_ce is not None:
                trained = with_scorer(trained_ce, method, task)
                train_s = ce_seconds
            else:
                cfg = default_config(method, "mnist").replace(model=args.model, epochs=args.epochs, lr=args.lr)
                ckpt = Path(args.out_dir) / f"{'ce' if method in CE_FAMILY else method}-{args.model}-e{args.epochs}-split{split}.pt"
                trained = fit_method(method, task, cfg, checkpoint=ckpt, resume=True, progress=False)
                train_s = trained.meta["train_seconds"]
                if method in CE_FAMILY:
                    trained_ce, ce_seconds = trained, train_s
            res = evaluate(trained, task)
            row = {"method": method, "split": split, "train_seconds": train_s,
                   "wall_seconds": time.perf_counter() - t0, **{m: res[m] for m in METRICS},
                   "images_per_second": trained.history[-1]["images_per_second"] if trained.history else None}
            rows.append(row)
            print(f"split {split} {method:8s} " + " ".join(f"{m}={row[m]:.4f}" for m in METRICS)
                  + f" train={train_s:.0f}s", flush=True)
    summary = {}
    for method in methods:
        sel = [r for r in rows if r["method"] == method]
        summary[method] = {m: {"mean": float(np.mean([r[m] for r in sel])), "std": float(np.std([r[m] for r in sel], ddof=1)) if len(sel) > 1 else 0.0}
                           for m in (*METRICS, "train_seconds")}
    md = [f"# MNIST `neal` splits: {args.model}, {args.epochs} epochs (osrkit fast recipe: SGD one-cycle, lr "
          f"{args.lr or default_config('softmax', 'mnist').lr}, batch 128, RandomResizedCrop 0.7-1)", "",
          "| method | AUROC | OSCR | accuracy | FPR@95 | train time / split (s) |", "|---|---|---|---|---|---|"]
    for method, s in summary.items():
        md.append(f"| {method} | " + " | ".join(f"{s[m]['mean']:.4f} ± {s[m]['std']:.4f}" for m in METRICS)
                  + f" | {s['train_seconds']['mean']:.0f} |")
    md += ["", "Per split:", "", "| method | split | AUROC | OSCR | accuracy | train s |", "|---|---|---|---|---|---|"]
    md += [f"| {r['method']} | {r['split']} | {r['auroc']:.4f} | {r['oscr']:.4f} | {r['accuracy']:.4f} | {r['train_seconds']:.0f} |" for r in rows]
    h = header()
    md += ["", f"Command: `{h['command']}`; date {h['date']}; machine {h['machine']['processor']}, "
           f"{h['machine']['cpu_count']} cores, torch {h['machine']['torch']}, {args.threads} threads; commit {h['git_commit']}. "
           "softmax/mls share one cross-entropy network per split (same weights, different score)."]
    text = "\n".join(md) + "\n"
    print(text)
    write(args.name, {**h, "model": args.model, "epochs": args.epochs, "rows": rows, "summary": summary}, text)


if __name__ == "__main__":
    main()
