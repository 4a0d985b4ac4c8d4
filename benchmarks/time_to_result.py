"""Time to a trained, evaluated MNIST open-set model: the CAC authors' recipe (projected) vs osrkit's fast recipe.

    .venv/bin/python benchmarks/time_to_result.py                 (b) takes 10-20 minutes on 2 CPU cores
    .venv/bin/python benchmarks/time_to_result.py --model vgg32   paper-faithful backbone, fast schedule
    .venv/bin/python benchmarks/time_to_result.py --smoke         end-to-end check in about a minute

(a) The authors' recipe cost on this machine, projected. The CAC authors' MNIST pipeline: the
    `vgg32-flatten` backbone (classifier32 with a flattened 128x4x4 -> Linear head), batch 128, SGD
    lr 0.01 (momentum 0.9), a PIL `DataLoader` over torchvision's MNIST with per-image `Resize(32)`,
    `RandomResizedCrop(32, scale=(0.7, 1))`, `ToTensor()` (restricted to the split's known classes).
    Its training images/s are measured over --authors-steps steps after a warm-up, and multiplied
    out over their schedule: --authors-epochs (70) epochs over the known training images of `neal`
    MNIST split 0 as osrkit builds it (80 % of the known classes' training images; the other 20 % are
    osrkit's validation set). Training steps only: their per-epoch validation is not counted, so the
    projection is a lower bound.
(b) osrkit's fast recipe, run for real: `fit_method("softmax", task, cfg)` on `neal` MNIST split 0
    with `default_config("softmax", "mnist").replace(model=MODEL, epochs=EPOCHS)`, then `evaluate`.
    The wall time covers training, fitting the scorer, the validation threshold and evaluation on the
    test sets (loading the task is reported separately). Targets: accuracy >= 0.99, AUROC >= 0.98, and
    (a) / (b) >= 20x.
--smoke: (a) with 3 timed steps, (b) on the 8x8 `digits` task (`default_config("softmax", "digits")`,
1 epoch); writes time_to_result_smoke.* instead (its numbers mean nothing).
Writes benchmarks/results/time_to_result.json and .md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; see jacobian_speed.py

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, write  # noqa: E402

from osrkit.data.tasks import make_task  # noqa: E402
from osrkit.engine.pipeline import evaluate, fit_method  # noqa: E402
from osrkit.methods import default_config  # noqa: E402
from osrkit.models import create_model  # noqa: E402

DEFAULT_ROOT = str(Path(__file__).resolve().parents[2] / "shared" / "data")
TARGETS = {"accuracy": 0.99, "auroc": 0.98, "speedup": 20.0}


def authors_images_per_second(root: str, known: list[int], steps: int, warmup: int, workers: int) -> dict:
    """Training images/s of the CAC authors' MNIST pipeline (PIL loader + vgg32-flatten, SGD lr 0.01)."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize(32), transforms.RandomResizedCrop(32, scale=(0.7, 1.0)),
                             transforms.ToTensor()])
    lut = {c: i for i, c in enumerate(sorted(known))}
    ds = datasets.MNIST(root=root, train=True, download=False, transform=tf, target_transform=lut.__getitem__)
    idx = torch.nonzero(torch.isin(ds.targets, torch.tensor(known))).flatten().tolist()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx), batch_size=128, shuffle=True,
                                         num_workers=workers, drop_last=True)
    torch.manual_seed(0)
    model = create_model("vgg32-flatten", num_classes=len(known), in_channels=1, image_size=32).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    it = iter(loader)
    t0 = None
    for s in range(warmup + steps):
        if s == warmup:
            t0 = time.perf_counter()
        x, y = next(it)
        loss = F.cross_entropy(model(x).logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    return {"images_per_second": steps * 128 / seconds, "timed_steps": steps, "warmup_steps": warmup,
            "seconds": seconds, "num_workers": workers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg32-lite", help="osrkit recipe backbone (vgg32 = paper-faithful)")
    ap.add_argument("--epochs", type=int, default=2, help="osrkit recipe epochs")
    ap.add_argument("--authors-epochs", type=int, default=70)
    ap.add_argument("--authors-steps", type=int, default=15, help="timed steps of the authors' pipeline")
    ap.add_argument("--authors-warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0,
                    help="authors' DataLoader workers (0 was the faster on this 2-core machine, see pipeline_speed)")
    ap.add_argument("--split", type=int, default=0)
    ap.add_argument("--data-root", default=DEFAULT_ROOT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="quick end-to-end check: digits, 1 epoch, 3 steps")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    name = args.name or ("time_to_result_smoke" if args.smoke else "time_to_result")

    # ---- (a) the authors' recipe, projected from measured throughput
    t = time.perf_counter()
    mnist = make_task("mnist", args.split, data_root=args.data_root)
    mnist_load_s = time.perf_counter() - t
    n_train = len(mnist.train_y)
    n_trainval = n_train + len(mnist.val_y)
    a = authors_images_per_second(args.data_root, mnist.known_classes, 3 if args.smoke else args.authors_steps,
                                  1 if args.smoke else args.authors_warmup, args.workers)
    projected_s = args.authors_epochs * n_train / a["images_per_second"]
    print(f"(a) authors' pipeline: {a['images_per_second']:.1f} img/s; {args.authors_epochs} epochs x {n_train} "
          f"images -> {projected_s / 3600:.2f} h projected", flush=True)

    # ---- (b) osrkit's fast recipe, for real
    if args.smoke:
        dataset, cfg = "digits", default_config("softmax", "digits").replace(epochs=1)
    else:
        dataset, cfg = "mnist", default_config("softmax", "mnist").replace(model=args.model, epochs=args.epochs)
    t = time.perf_counter()
    task = mnist if dataset == "mnist" else make_task(dataset, args.split, data_root=args.data_root)
    load_s = mnist_load_s if dataset == "mnist" else time.perf_counter() - t
    t0 = time.perf_counter()
    trained = fit_method("softmax", task, cfg, progress=False)
    fit_s = time.perf_counter() - t0
    res = evaluate(trained, task)
    ours_s = time.perf_counter() - t0
    speedup = projected_s / ours_s
    ok = {"accuracy": res["accuracy"] >= TARGETS["accuracy"], "auroc": res["auroc"] >= TARGETS["auroc"],
          "speedup": speedup >= TARGETS["speedup"]}
    print(f"(b) osrkit {cfg.model}, {cfg.epochs} epochs on {task.name}: {ours_s:.0f} s, accuracy "
          f"{res['accuracy']:.4f}, AUROC {res['auroc']:.4f}; ratio {speedup:.1f}x", flush=True)

    h = header()
    md = [f"# Time to a trained, evaluated open-set model{' (SMOKE RUN: numbers are meaningless)' if args.smoke else ''}", "",
          "| recipe | backbone | schedule | data path | img/s | wall time | accuracy | AUROC |", "|---|---|---|---|---|---|---|---|",
          f"| CAC authors (projected) | vgg32-flatten | {args.authors_epochs} epochs x {n_train:,} images, batch 128, SGD lr 0.01 "
          f"| PIL DataLoader, num_workers={args.workers} | {a['images_per_second']:.1f} | {projected_s / 3600:.2f} h | - | - |",
          f"| osrkit fast recipe (measured) | {cfg.model} | {cfg.epochs} epochs x {len(task.train_y):,} images, batch "
          f"{cfg.batch_size}, {cfg.optimizer} {cfg.schedule} lr {cfg.lr} | in-memory batched ({cfg.augment}) | "
          f"{trained.history[-1]['images_per_second']:.1f} | {ours_s:.0f} s ({ours_s / 60:.1f} min) | {res['accuracy']:.4f} | {res['auroc']:.4f} |",
          "", f"Task: {task.summary()}.", "",
          f"Speed-up (authors' projected time / osrkit's measured time): **{speedup:.1f}x** (target >= "
          f"{TARGETS['speedup']:.0f}x: {'met' if ok['speedup'] else 'NOT met'}); accuracy target >= {TARGETS['accuracy']}: "
          f"{'met' if ok['accuracy'] else 'NOT met'}; AUROC target >= {TARGETS['auroc']}: {'met' if ok['auroc'] else 'NOT met'}.", "",
          f"(a) is the authors' training throughput measured over {a['timed_steps']} steps after {a['warmup_steps']} "
          f"warm-up steps, times their schedule ({args.authors_epochs} epochs) over the {n_train:,} known training "
          f"images of `neal` MNIST split {args.split} as osrkit builds it (80 % of the {n_trainval:,} known-class "
          "training images; over all of them it would be 1.25x longer). Training steps only (their per-epoch "
          f"validation is not counted), so it is a lower bound. (b) is wall time for training "
          f"({trained.meta['train_seconds']:.0f} s), fitting the scorer and validation threshold, and evaluating "
          f"(total {ours_s:.0f} s; fit_method {fit_s:.0f} s); loading the task took another {load_s:.1f} s.", "",
          f"Command: `{h['command']}`; date {h['date']}; machine {h['machine']['processor']}, "
          f"{h['machine']['cpu_count']} cores, torch {h['machine']['torch']}, {args.threads} threads; commit "
          f"{h['git_commit']}."]
    text = "\n".join(md) + "\n"
    print(text)
    write(name, {**h, "smoke": args.smoke,
                 "authors": {**a, "model": "vgg32-flatten", "epochs": args.authors_epochs, "train_images": n_train,
                             "known_trainval_images": n_trainval, "projected_seconds": projected_s},
                 "osrkit": {"task": task.name, "config": cfg.to_dict(), "wall_seconds": ours_s, "fit_method_seconds": fit_s,
                            "train_seconds": trained.meta["train_seconds"], "task_load_seconds": load_s,
                            "history": trained.history, **{k: res[k] for k in ("accuracy", "auroc", "oscr", "fpr95")}},
                 "speedup": speedup, "targets": TARGETS, "targets_met": ok}, text)


if __name__ == "__main__":
    main()
