"""One grid run in this process: build the task, train or resume or reuse the network, score, evaluate, record.

Both executors (local and Ray) call `run_spec`; it is also what a retried Ray task runs again, so every step
is safe to repeat: a stored key is skipped, a checkpoint is resumed, an unreadable one is moved aside.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from osrkit.results.plan import RunSpec
from osrkit.results.progress import GridProgress
from osrkit.results.store import RunRecord


def quarantine_corrupt(checkpoint: Path) -> Path | None:
    """Move an unreadable checkpoint aside (to `<name>.corrupt`, numbered if taken) so its run starts over;
    returns where it went, or None when the file is absent or reads fine."""
    from osrkit.engine.checkpoint import load_checkpoint

    if not checkpoint.exists():
        return None
    try:
        load_checkpoint(checkpoint)
        return None
    except ValueError:  # unreadable content; an I/O error (e.g. a stale NFS handle) is raised, never "fixed"
        target = checkpoint.with_name(checkpoint.name + ".corrupt")
        n = 1
        while target.exists():
            target = checkpoint.with_name(f"{checkpoint.name}.corrupt{n}")
            n += 1
        checkpoint.rename(target)
        return target


def checkpoint_state(checkpoint: Path) -> tuple[int, str | None]:
    """Epochs finished in an existing checkpoint and the method that wrote it ((0, None) when none or unreadable)."""
    if not checkpoint.exists():
        return 0, None
    try:
        from osrkit.engine.checkpoint import load_checkpoint

        state = load_checkpoint(checkpoint)
        return int((state.get("train_state") or {}).get("epoch", -1)) + 1, state.get("method")
    except Exception:
        return 0, None


def machine_info(device: str) -> dict[str, Any]:
    import os
    import platform

    import torch

    info = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _throughput(history: Sequence[Mapping[str, Any]] | None) -> float | None:
    """Training images per second over all epochs (images / train seconds)."""
    if not history:
        return None
    secs = sum(float(h["train_seconds"]) for h in history)
    imgs = sum(float(h["images_per_second"]) * float(h["train_seconds"]) for h in history)
    return imgs / secs if secs > 0 else None


class TaskCache:
    """Keeps the one task currently in use (the grid is ordered so each task is built once)."""

    def __init__(self, data_root, download: bool):
        self.data_root, self.download = data_root, download
        self.key, self.task = None, None

    def get(self, spec: RunSpec):
        from osrkit.data.tasks import make_task

        key = (spec.task, spec.family, spec.split, spec.seed)
        if key != self.key:
            self.task = None  # free the previous one first
            self.task = make_task(spec.task, split=spec.split, family=spec.family, data_root=self.data_root,
                                  download=self.download, seed=spec.seed)
            self.key = key
        return self.task


NETWORK_POLL_S = 2.0


class NetworkBusy(RuntimeError):
    """Another process holds the claim on a network this run needs (raised by `network_claim(wait=False)`)."""


@contextmanager
def network_claim(store, checkpoint: Path, poll: float = NETWORK_POLL_S, wait: bool = True) -> Iterator[None]:
    """Hold the claim on the network a checkpoint file holds while this process trains or reuses it: methods of
    one trainer share the file, so a second driver (or Ray task) running another of them waits here, then reuses
    the finished network instead of training it a second time. A dead holder's claim expires as usual.
    `wait=False` raises NetworkBusy instead of waiting, so a driver can run other work first."""
    from osrkit.results.store import Heartbeat

    key = f"network:{checkpoint.name}"
    while not store.claim(key):
        if not wait:
            raise NetworkBusy(f"{checkpoint.name} is being trained by another process")
        time.sleep(poll)
    try:
        with Heartbeat(store, [key]):
            yield
    finally:
        store.release(key)


def run_one(spec: RunSpec, task, device: str, checkpoint: Path, progress: GridProgress,
            on_epoch: Callable[[int, dict], None] | None = None,
            heartbeat: Callable[[], None] | None = None) -> tuple[Any, dict[str, Any], RunRecord]:
    """Train the run's network, or resume it, or reuse it where another method of the grid (or `osrkit run
    --out-dir`) trained it already; fit this method's scorer and evaluate. Returns (Trained, metrics, RunRecord)."""
    from osrkit.engine.config import TrainConfig
    from osrkit.engine.pipeline import evaluate, fit_method

    t0 = time.perf_counter()
    extra: dict[str, Any] = {"checkpoint": str(checkpoint), "task_name": task.name}
    moved = quarantine_corrupt(checkpoint)
    if moved is not None:
        progress.console.print(f"warning: {checkpoint} was unreadable: moved to {moved.name}; {spec.label} "
                               "starts over", highlight=False, soft_wrap=True)
        extra["corrupt_checkpoint_moved_to"] = str(moved)
    done, trained_by = checkpoint_state(checkpoint)
    extra["resumed_from_epoch"] = done
    if trained_by is not None and trained_by != spec.method and done >= spec.epochs:
        extra["shared_training_with"] = trained_by  # the network came from this method's run
    progress.start(spec, min(done, spec.epochs))

    def hook(epoch: int, rec: dict) -> None:
        progress.epoch(spec, epoch, rec)
        if heartbeat is not None:
            heartbeat()
        if on_epoch is not None:
            on_epoch(epoch, rec)

    trained = fit_method(spec.method, task, TrainConfig.from_dict(spec.config), checkpoint=checkpoint,
                         resume=True, device=device, progress=False, on_epoch=hook)
    metrics = evaluate(trained, task, device=device, curves=True)
    extra["roc"] = metrics.pop("roc")  # for `osrkit report --db`: the curves beside the table
    seconds = time.perf_counter() - t0
    extra["machine"] = machine_info(device)
    extra["diverged"] = trained.meta.get("diverged")
    rec = RunRecord(method=spec.method, task=spec.task, family=spec.family, split=spec.split, seed=spec.seed,
                    config=spec.config, metrics=metrics, wall_seconds=seconds,
                    train_images_per_second=_throughput(trained.history), device=device,
                    history=trained.history, extra=extra)
    progress.finish(spec, metrics, seconds)
    return trained, metrics, rec
