"""Training-data pipeline speed: osrkit's in-memory batched pipeline vs a per-image PIL DataLoader.

    .venv/bin/python benchmarks/pipeline_speed.py            (~2-3 minutes on 2 busy CPU cores)

Pipelines (same augmentation: resize to 32, random resized crop of area 0.7-1, normalize; batch 128):
  * osrkit: uint8 (N,1,32,32) tensor in memory (`make_task("mnist", 0)`) → index a batch →
    `BatchAugment` crop on the whole batch (one `grid_sample`) → `normalize`, as `engine/train.py` does;
  * PIL DataLoader, num_workers 0 and 2: `torchvision.datasets.MNIST` with per-image
    `Resize(32)`, `RandomResizedCrop(32, scale=(0.7, 1.0))`, `ToTensor()`, `Normalize`, shuffled.
Measures (a) data-only images/s, (b) full training-step images/s (vgg32, train mode, cross-entropy,
SGD step) and (c) for osrkit the fraction of a training step spent in the data path,
data time / (data + model time), timed phase by phase inside the training loop (CPU ops are
synchronous, so the split is exact). Target: under 5 % on this CPU.

All variants are measured interleaved, round by round, after an untimed warm-up. A DataLoader with
workers is started fresh in each round and its first `prefetch` batches are discarded (untimed), so
it is timed in steady state and its workers do not run (and steal CPU) while other variants are timed.
Writes benchmarks/results/pipeline_speed.json and .md.
"""

from __future__ import annotations

import os

# Shared 2-core machine: spinning OpenMP threads distort timings; yield instead (before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, write  # noqa: E402

from osrkit.data.tasks import make_task  # noqa: E402
from osrkit.data.transforms import make_augment, normalize  # noqa: E402
from osrkit.models import create_model  # noqa: E402

BATCH = 128
TARGET_DATA_FRACTION = 0.05
DEFAULT_ROOT = str(Path(__file__).resolve().parents[2] / "shared" / "data")


class OsrkitBatches:
    """The data path of osrkit's training loop (engine/train.py), batch by batch."""

    def __init__(self, task, seed: int = 0) -> None:
        self.x_all, self.y_all = task.train_x, task.train_y
        self.mean, self.std = task.mean, task.std
        self.gen = torch.Generator().manual_seed(seed)
        self.augment = make_augment("crop")
        self.perm = torch.randperm(len(self.y_all), generator=self.gen)
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos + BATCH > len(self.perm):
            self.perm, self.pos = torch.randperm(len(self.y_all), generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + BATCH]
        self.pos += BATCH
        x = normalize(self.augment(self.x_all[idx].float().div_(255.0), self.gen), self.mean, self.std)
        return x, self.y_all[idx]


def pil_loader(root: str, workers: int, mean: float, std: float) -> torch.utils.data.DataLoader:
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize(32), transforms.RandomResizedCrop(32, scale=(0.7, 1.0)),
                             transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    ds = datasets.MNIST(root=root, train=True, download=False, transform=tf)
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True)


class PilBatches:
    """A DataLoader iterator started per round; the first `skip` batches (prefetched) are untimed."""

    def __init__(self, loader, workers: int) -> None:
        self.loader, self.workers, self.it = loader, workers, None

    def start(self) -> None:
        self.it = iter(self.loader)
        for _ in range(2 * self.workers):  # let the workers fill their prefetch queue (untimed)
            next(self.it)

    def stop(self) -> None:
        del self.it
        self.it = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        return next(self.it)


def train_step(model, opt, x, y) -> None:
    out = model(x)
    loss = F.cross_entropy(out.logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=DEFAULT_ROOT)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data-batches", type=int, default=15, help="data-only batches per variant per round")
    ap.add_argument("--train-steps", type=int, default=3, help="training steps per variant per round")
    ap.add_argument("--model", default="vgg32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="pipeline_speed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    task = make_task("mnist", 0, data_root=args.data_root)
    mean, std = float(task.mean[0]), float(task.std[0])
    variants = {"osrkit (in-memory, batched)": OsrkitBatches(task)}
    for w in (0, 2):
        variants[f"PIL DataLoader, num_workers={w}"] = PilBatches(pil_loader(args.data_root, w, mean, std), w)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=task.num_classes, in_channels=1, image_size=32).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def labels_ok(y):  # the PIL loaders read all 10 MNIST classes: map onto the model's K outputs
        return y % task.num_classes

    # warm-up (untimed): every variant, data and a training step
    for v in variants.values():
        if isinstance(v, PilBatches):
            v.start()
        for _ in range(2):
            x, y = v.next()
            train_step(model, opt, x, labels_ok(y))
        if isinstance(v, PilBatches):
            v.stop()

    data_s = {k: [] for k in variants}  # per-round images/s
    step_s = {k: [] for k in variants}
    osr_data_t, osr_model_t = 0.0, 0.0
    for r in range(args.rounds):
        for name, v in variants.items():
            if isinstance(v, PilBatches):
                v.start()
            t0 = time.perf_counter()
            for _ in range(args.data_batches):
                v.next()
            data_s[name].append(args.data_batches * BATCH / (time.perf_counter() - t0))
            t_data = t_model = 0.0
            t0 = time.perf_counter()
            for _ in range(args.train_steps):
                a = time.perf_counter()
                x, y = v.next()
                b = time.perf_counter()
                train_step(model, opt, x, labels_ok(y))
                c = time.perf_counter()
                t_data += b - a
                t_model += c - b
            step_s[name].append(args.train_steps * BATCH / (time.perf_counter() - t0))
            if isinstance(v, OsrkitBatches):
                osr_data_t += t_data
                osr_model_t += t_model
            if isinstance(v, PilBatches):
                v.stop()
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k}: data {data_s[k][-1]:.0f}, step {step_s[k][-1]:.1f} img/s"
                                                          for k in variants), flush=True)

    osr = "osrkit (in-memory, batched)"
    frac = osr_data_t / (osr_data_t + osr_model_t)
    rows = []
    for name in variants:
        d, s = statistics.median(data_s[name]), statistics.median(step_s[name])
        rows.append({"pipeline": name, "data_images_per_s": d, "train_step_images_per_s": s,
                     "data_speedup_osrkit_over_this": statistics.median(data_s[osr]) / d,
                     "step_speedup_osrkit_over_this": statistics.median(step_s[osr]) / s,
                     "data_rounds": data_s[name], "step_rounds": step_s[name]})
    h = header()
    md = [f"# Training-data pipeline speed (MNIST 1x32x32, batch {BATCH}, {args.model} train step)", "",
          "| pipeline | data-only img/s | training-step img/s | osrkit data speed-up | osrkit step speed-up |",
          "|---|---|---|---|---|"]
    md += [f"| {r['pipeline']} | {r['data_images_per_s']:.0f} | {r['train_step_images_per_s']:.1f} | "
           f"{r['data_speedup_osrkit_over_this']:.1f}x | {r['step_speedup_osrkit_over_this']:.2f}x |" for r in rows]
    met = frac < TARGET_DATA_FRACTION
    md += ["", f"osrkit data path: {1e3 * osr_data_t / (args.rounds * args.train_steps):.2f} ms per batch, model step "
           f"{1e3 * osr_model_t / (args.rounds * args.train_steps):.0f} ms per batch: **{100 * frac:.2f} %** of a "
           f"training step (target < {100 * TARGET_DATA_FRACTION:.0f} %: {'met' if met else 'NOT met'}).", "",
           f"Medians over {args.rounds} interleaved rounds ({args.data_batches} data-only batches and "
           f"{args.train_steps} training steps per variant per round), after an untimed warm-up. Worker loaders are "
           "restarted each round and their prefetched batches are not timed. The PIL loaders read all MNIST "
           "training images (labels folded onto the model's 6 outputs; speed does not depend on the labels).", "",
           f"Command: `{h['command']}`; date {h['date']}; machine {h['machine']['processor']}, "
           f"{h['machine']['cpu_count']} cores, torch {h['machine']['torch']}, {args.threads} threads; commit "
           f"{h['git_commit']}. The machine was shared with another job while measuring."]
    text = "\n".join(md) + "\n"
    print(text)
    write(args.name, {**h, "model": args.model, "batch_size": BATCH, "rounds": args.rounds,
                      "data_batches": args.data_batches, "train_steps": args.train_steps, "rows": rows,
                      "osrkit_data_fraction": frac, "osrkit_data_seconds": osr_data_t,
                      "osrkit_model_seconds": osr_model_t, "target_data_fraction": TARGET_DATA_FRACTION,
                      "target_met": met}, text)


if __name__ == "__main__":
    main()
