"""Deployment at real scale: `osrkit predict` on image files, against what `osrkit eval` reports.

    python benchmarks/deploy_predict.py mnist     # MNIST neal split 0: test digits saved as PNG files
    python benchmarks/deploy_predict.py cifar     # CIFAR-10 JPEG copy: train on 6 classes, predict all 10,000

mnist: a softmax network of the fast recipe (vgg32-lite, 3 epochs, fp32; reused from the m-OvR grid's
checkpoints when present, else trained) is calibrated with `osrkit calibrate` (keeps 95% of validation
knowns), then the known classes' test digits (PNG, 28×28) and the unknown classes' test digits are predicted
with `osrkit predict`. Reports the share of known digits given their correct class, the share of unknown
digits rejected, and `osrkit eval`'s rejection at the same threshold, beside the throughput (files read and
decoded included).
cifar: `osrkit train --task folder` on the extracted JPEG tree with known classes airplane, automobile, bird,
cat, deer, dog (vgg32-lite, --epochs N), then `osrkit predict` over the whole test folder (10,000 JPEGs).
Writes benchmarks/results/deploy_predict_<which>.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "runs" / "deploy"
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


def osrkit(*args: str) -> float:
    """Run the osrkit command line; returns its wall seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "osrkit.cli", *args], check=True, env=ENV)
    return time.perf_counter() - t0


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def mnist(args) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from osrkit.data.splits import get_split
    from osrkit.data.datasets import load_dataset

    WORK.mkdir(parents=True, exist_ok=True)
    ck = WORK / "softmax-mnist-neal0.pt"
    reused = sorted((ROOT / "runs" / "movr_mnist-checkpoints").glob("softmax-mnist-neal0-seed0-*.pt"))
    if not ck.exists():
        if reused:
            shutil.copy(reused[0], ck)
        else:
            osrkit("train", "--task", "mnist", "--split", "0", "--method", "softmax", "--model", "vgg32-lite",
                   "--epochs", "3", "--precision", "fp32", "--data-root", str(DATA), "--no-progress", "--out", str(ck))
    osrkit("calibrate", str(ck), "--data-root", str(DATA))
    osrkit("eval", str(ck), "--data-root", str(DATA), "--json", str(WORK / "eval.json"), "--force")
    ev = json.loads((WORK / "eval.json").read_text())
    known, unknown = get_split("neal", "mnist", 0)
    test = load_dataset("mnist", DATA, train=False)
    pngs = WORK / "mnist_png"
    if pngs.exists():
        shutil.rmtree(pngs)
    names = {c: test.classes[c] for c in range(10)}  # the class names predict answers with
    for i, (x, y) in enumerate(zip(test.data, test.targets.tolist())):
        side = "known" if y in known else "unknown"
        d = pngs / side / names[y].replace(" ", "_")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[0].numpy()).save(d / f"{i:05d}.png")
    sec_known = osrkit("predict", str(ck), str(pngs / "known"), "--out", str(WORK / "known.csv"), "--no-progress", "--force")
    sec_unknown = osrkit("predict", str(ck), str(pngs / "unknown"), "--out", str(WORK / "unknown.csv"), "--no-progress", "--force")
    kr, ur = rows(WORK / "known.csv"), rows(WORK / "unknown.csv")
    correct = float(np.mean([r["label"].replace(" ", "_") == Path(r["input"]).parent.name for r in kr]))
    rejected = float(np.mean([r["label"] == "unknown" for r in ur]))
    res = {"checkpoint": str(ck.relative_to(ROOT)), "reused_from": str(reused[0].relative_to(ROOT)) if reused else None,
           "known_pngs": len(kr), "unknown_pngs": len(ur), "known_correct_at_threshold": correct,
           "unknown_rejected_predict": rejected, "unknown_rejected_eval": ev["unknown_rejected"],
           "known_kept_eval": ev["known_kept"], "threshold": float(kr[0]["threshold"]), "auroc_eval": ev["auroc"],
           "accuracy_eval": ev["accuracy"], "images_per_second": (len(kr) + len(ur)) / (sec_known + sec_unknown),
           "predict_seconds": sec_known + sec_unknown}
    h = header()
    md = (f"# `osrkit predict` on MNIST test digits saved as PNG files (`neal` split 0)\n\n"
          f"Network: softmax, vgg32-lite, 3 epochs, fp32 (the fast recipe of `movr_mnist.md`), calibrated by "
          f"`osrkit calibrate` to keep 95% of the validation knowns: threshold {res['threshold']:.6g}.\n\n"
          "| quantity | value |\n|---|---|\n"
          f"| known-class test digits (PNG) | {len(kr)} |\n"
          f"| predicted as their correct class | {correct:.4f} (target ≥ 0.93) |\n"
          f"| unknown-class test digits (PNG) | {len(ur)} |\n"
          f"| rejected by `osrkit predict` | {rejected:.4f} |\n"
          f"| rejected per `osrkit eval` at the same threshold | {ev['unknown_rejected']:.4f} |\n"
          f"| known test kept per `osrkit eval` | {ev['known_kept']:.4f} |\n"
          f"| AUROC / closed-set accuracy (`osrkit eval`) | {ev['auroc']:.4f} / {ev['accuracy']:.4f} |\n"
          f"| predict throughput, files read and decoded included | {res['images_per_second']:.0f} images/s "
          f"({res['predict_seconds']:.1f} s for {len(kr) + len(ur)} files, 2 processes) |\n\n"
          f"Command: `python benchmarks/deploy_predict.py mnist`; date {h['date']}; {h['machine']['platform']}, "
          f"{h['machine']['cpu_count']} cores, torch {h['machine']['torch']}; commit {h['git_commit']}.\n")
    write("deploy_predict_mnist", h | res, md)
    print(md)


def cifar(args) -> None:
    import numpy as np

    tree = WORK / "cifar10-jpeg"
    if not (tree / "test").exists():
        tree.mkdir(parents=True, exist_ok=True)
        with tarfile.open(DATA / "cifar10-jpeg.tar.gz") as tar:
            tar.extractall(tree, filter="data")
    known = ["airplane", "automobile", "bird", "cat", "deer", "dog"]
    ck = WORK / f"softmax-cifar10jpeg-6known-e{args.epochs}.pt"
    train_s = 0.0
    if not ck.exists():
        train_s = osrkit("train", "--task", "folder", "--data-root", str(tree), "--known", ",".join(known),
                         "--method", "softmax", "--model", "vgg32-lite", "--epochs", str(args.epochs),
                         "--precision", "fp32", "--no-progress", "--out", str(ck))
    sec = osrkit("predict", str(ck), str(tree / "test"), "--out", str(WORK / "cifar_test.csv"), "--no-progress", "--force")
    r = rows(WORK / "cifar_test.csv")
    cls = [Path(x["input"]).parent.name for x in r]
    per = {c: {"n": sum(1 for v in cls if v == c),
               "rejected": float(np.mean([x["label"] == "unknown" for x, v in zip(r, cls) if v == c])),
               "correct": float(np.mean([x["label"] == c for x, v in zip(r, cls) if v == c]))} for c in sorted(set(cls))}
    unseen = [c for c in per if c not in known]
    res = {"checkpoint": str(ck.relative_to(ROOT)), "known": known, "epochs": args.epochs, "files": len(r),
           "per_class": per, "train_seconds": train_s, "predict_seconds": sec, "images_per_second": len(r) / sec,
           "unseen_rejected": float(np.mean([per[c]["rejected"] for c in unseen])),
           "known_correct": float(np.mean([per[c]["correct"] for c in known])), "threshold": float(r[0]["threshold"])}
    h = header()
    lines = "".join(f"| {c} | {'known' if c in known else 'unseen'} | {p['n']} | {p['correct']:.3f} | {p['rejected']:.3f} |\n"
                    for c, p in per.items())
    md = (f"# `osrkit predict` over the CIFAR-10 (JPEG copy) test folder, 6 known classes\n\n"
          f"`osrkit train --task folder` on the extracted tree (known: {', '.join(known)}), softmax, vgg32-lite, "
          f"{args.epochs} epochs, fp32; default operating point (keeps 95% of validation knowns, threshold "
          f"{res['threshold']:.4g}). Data: CIFAR-10 (JPEG copy), lossy; not CIFAR-10.\n\n"
          "| class | side | files | predicted as this class | rejected as unknown |\n|---|---|---|---|---|\n" + lines +
          f"\nThe four unseen classes: {res['unseen_rejected']:.3f} rejected on average; known classes "
          f"{res['known_correct']:.3f} labelled correctly. Predict throughput {res['images_per_second']:.0f} images/s "
          f"({len(r)} JPEG files in {sec:.1f} s, reading and decoding included, one process, model load included)."
          + (f" Training took {train_s:.0f} s." if train_s else "") +
          f"\n\nCommand: `python benchmarks/deploy_predict.py cifar --epochs {args.epochs}`; date {h['date']}; "
          f"{h['machine']['platform']}, {h['machine']['cpu_count']} cores, torch {h['machine']['torch']}; "
          f"commit {h['git_commit']}.\n")
    write("deploy_predict_cifar", h | res, md)
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=["mnist", "cifar"])
    ap.add_argument("--epochs", type=int, default=5, help="cifar: training epochs")
    args = ap.parse_args()
    (mnist if args.which == "mnist" else cifar)(args)


if __name__ == "__main__":
    main()
