"""Benchmark grid: method × task × split × seed → one stored row each; skip what is stored, resume the rest.

Each run trains with a per-run checkpoint (named after its key) and `resume=True`, so a grid that was
killed continues where it stopped: finished runs are skipped (their key is in the database), the
interrupted run resumes from its last finished epoch. Names, splits, data files, config fields and
the device are all checked before anything trains.
"""

from __future__ import annotations

import re
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from osrkit.results.store import Heartbeat, ResultsStore, RunRecord, run_key

DEFAULT_DB = "osrkit-results.db"
GRID_KEYS = ("methods", "tasks", "splits", "seeds", "family", "epochs", "db", "data_root", "device",
             "checkpoint_dir", "threads", "download", "config", "share_training")


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid, with its effective training config."""

    method: str
    task: str
    family: str
    split: int
    seed: int
    config: dict[str, Any] = field(hash=False, compare=False)

    @property
    def key(self) -> str:
        return run_key(self.method, self.task, self.family, self.split, self.seed, self.config)

    @property
    def label(self) -> str:
        return f"{self.method} {self.task}/{self.family}{self.split} seed {self.seed}"

    @property
    def epochs(self) -> int:
        return int(self.config["epochs"])


@dataclass
class GridResult:
    """What a grid call did: keys trained, skipped (already stored) and left to other processes."""

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    claimed_elsewhere: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.trained) + len(self.skipped) + len(self.claimed_elsewhere)


# -- names, validation ------------------------------------------------------------------------------
def grid_tasks() -> list[str]:
    """Task names a grid accepts (tasks with published split lists; `folder` needs explicit classes)."""
    from osrkit.data.datasets import DATASETS
    from osrkit.data.tasks import PLUS_TASKS

    return sorted((set(DATASETS) - {"cifar100", "folder"}) | PLUS_TASKS)


def parse_list(value: Any, what: str, cast: Callable[[str], Any] = str) -> list | None:
    """A list from a comma-separated string, a YAML list or a scalar; None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else (value if isinstance(value, (list, tuple)) else [value])
    out = []
    for v in items:
        v = v.strip() if isinstance(v, str) else v
        if v == "":
            continue
        try:
            out.append(cast(v))
        except (TypeError, ValueError):
            raise ValueError(f"{what}: cannot read {v!r} (expected {cast.__name__} values, comma-separated)") from None
    return out


def resolve_device(device: str) -> str:
    """Check a device string before any training: `cuda` without a GPU is a clear error, not a crash later."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r} ({e}); use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but no CUDA device is available (torch "
                             f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def _check_names(methods: Sequence[str], tasks: Sequence[str]) -> None:
    from osrkit.methods import list_methods

    bad_m = [m for m in methods if m not in list_methods()]
    if bad_m:
        raise ValueError(f"unknown method(s) {', '.join(bad_m)}; available: {', '.join(list_methods())}")
    bad_t = [t for t in tasks if t not in grid_tasks()]
    if bad_t:
        raise ValueError(f"unknown or unsupported task(s) {', '.join(bad_t)}; grid tasks: {', '.join(grid_tasks())}")


def _resolve_splits(tasks: Sequence[str], family: str, splits: Sequence[int] | None) -> dict[str, list[int]]:
    """Split indices per task (all of the family's splits when None), each checked against the family."""
    from osrkit.data.splits import num_splits

    out = {}
    for t in tasks:
        n = num_splits(family, t)  # raises a clear ValueError for unknown families / tasks without splits
        chosen = list(range(n)) if splits is None else list(splits)
        bad = [s for s in chosen if not 0 <= s < n]
        if bad:
            raise ValueError(f"split index(es) {bad} out of range for {family}/{t}: valid 0..{n - 1}")
        out[t] = chosen
    return out


def _check_data(tasks: Sequence[str], data_root, download: bool) -> None:
    """Fail before training when a task's files are missing (instead of after hours of other runs)."""
    from osrkit.data.datasets import DATASETS, default_data_root
    from osrkit.data.tasks import PLUS_TASKS

    if download:
        return
    root = default_data_root(data_root)
    missing = []
    for t in tasks:
        needed = ["cifar10", "cifar100"] if t in PLUS_TASKS else [t]
        missing += [f"{t} ({n})" for n in needed if not DATASETS[n].files_present(root)]
    if missing:
        raise FileNotFoundError(f"data files missing under {root} for: {', '.join(missing)}; see `osrkit datasets`, "
                                "pass --data-root DIR, or --download where possible")


def make_config(method: str, task: str, seed: int, epochs: int | None, overrides: Mapping[str, Any] | None,
                device: str = "cpu"):
    """Method/data-set defaults, then the grid's TrainConfig overrides, then epochs and seed; "auto" precision
    and memory format resolved for `device` (what ran is the run's identity)."""
    from osrkit.methods import default_config

    from osrkit.methods import get_method

    cfg = default_config(method, task)
    if overrides:
        cfg = cfg.replace(**dict(overrides))
        cfg = cfg.replace(method_params=get_method(method).coerce_params(cfg.method_params))
    return cfg.replace(epochs=epochs, seed=seed).resolved(device)


def plan_grid(methods: Sequence[str], tasks: Sequence[str], splits: Sequence[int] | None, seeds: Sequence[int],
              family: str = "neal", epochs: int | None = None,
              config: Mapping[str, Any] | None = None, device: str = "cpu") -> list[RunSpec]:
    """Every run of the grid, validated; ordered task → split → seed → method so each task loads once."""
    methods, tasks, seeds = list(methods), list(tasks), list(seeds)
    if not methods or not tasks or not seeds:
        raise ValueError("a grid needs at least one method, one task and one seed")
    if epochs is not None and int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    _check_names(methods, tasks)
    per_task = _resolve_splits(tasks, family, splits)
    specs = []
    for t in tasks:
        for s in per_task[t]:
            for seed in seeds:
                for m in methods:
                    cfg = make_config(m, t, int(seed), epochs, config, device)
                    specs.append(RunSpec(m, t, family, int(s), int(seed), cfg.to_dict()))
    return specs


def checkpoint_name(spec: RunSpec) -> str:
    """A file name for the run's checkpoint, derived from (and unique to) its key."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", spec.task.replace("+", "plus"))
    h = spec.key.rsplit("|", 1)[1]
    return f"{spec.method}-{safe}-{spec.family}{spec.split}-seed{spec.seed}-{h}.pt"


# -- progress -----------------------------------------------------------------------------------------
def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class GridProgress:
    """Runs done/total, the current run's epoch and throughput, and an estimate of the time left.

    The estimate is (seconds per epoch measured in this session) × (epochs left in the grid).
    Disabled: one plain line per finished run instead of a live display.
    """

    def __init__(self, specs: Sequence[RunSpec], enabled: bool = True, console=None):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.total_runs = len(specs)
        self.runs_done = 0
        self.epochs_left = sum(s.epochs for s in specs)
        self.epochs_timed, self.seconds_timed = 0, 0.0
        self._epoch_t0 = 0.0
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.fields[info]}"), console=self.console, disable=not enabled)
        self.grid_id = self.bar.add_task("grid", total=max(1, self.total_runs), info="")
        self.run_id = self.bar.add_task("run", total=1, info="", visible=False)
        self._refresh()

    def __enter__(self) -> "GridProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def eta(self) -> float | None:
        if self.epochs_timed == 0:
            return None
        return self.seconds_timed / self.epochs_timed * self.epochs_left

    def _refresh(self) -> None:
        self.bar.update(self.grid_id, completed=self.runs_done,
                        info=f"{self.runs_done}/{self.total_runs} runs, time left ~{_fmt_seconds(self.eta())}")

    def skip(self, spec: RunSpec, why: str) -> None:
        self.runs_done += 1
        self.epochs_left -= spec.epochs
        self._refresh()
        if not self.enabled:
            self.console.print(f"{spec.label}: {why}", highlight=False)

    def start(self, spec: RunSpec, done_epochs: int = 0) -> None:
        self.epochs_left -= done_epochs
        self._epoch_t0 = time.perf_counter()
        self.bar.update(self.run_id, description=spec.label, total=spec.epochs, completed=done_epochs, visible=True,
                        info=f"epoch {done_epochs}/{spec.epochs}" + (" (resumed)" if done_epochs else ""))
        self._refresh()

    def epoch(self, spec: RunSpec, epoch: int, rec: Mapping[str, Any]) -> None:
        now = time.perf_counter()
        self.epochs_timed += 1
        self.seconds_timed += now - self._epoch_t0
        self._epoch_t0 = now
        self.epochs_left -= 1
        ips = rec.get("images_per_second", float("nan"))
        self.bar.update(self.run_id, completed=epoch + 1,
                        info=f"epoch {epoch + 1}/{spec.epochs}, {ips:.0f} img/s, loss {rec.get('train_loss', float('nan')):.4f}")
        self._refresh()

    def finish(self, spec: RunSpec, metrics: Mapping[str, Any], seconds: float) -> None:
        self.runs_done += 1
        self.bar.update(self.run_id, visible=False)
        self._refresh()
        msg = (f"{spec.label}: AUROC {metrics.get('auroc', float('nan')):.4f}, "
               f"accuracy {metrics.get('accuracy', float('nan')):.4f} ({seconds:.1f} s)")
        self.console.print(msg, highlight=False)


# -- running -------------------------------------------------------------------------------------------
def quarantine_corrupt(checkpoint: Path) -> Path | None:
    """Move an unreadable checkpoint aside (to `<name>.corrupt`, numbered if taken) so its run starts over;
    returns where it went, or None when the file is absent or reads fine."""
    from osrkit.engine.checkpoint import load_checkpoint

    if not checkpoint.exists():
        return None
    try:
        load_checkpoint(checkpoint)
        return None
    except (ValueError, OSError):
        target = checkpoint.with_name(checkpoint.name + ".corrupt")
        n = 1
        while target.exists():
            target = checkpoint.with_name(f"{checkpoint.name}.corrupt{n}")
            n += 1
        checkpoint.rename(target)
        return target


def _done_epochs(checkpoint: Path) -> int:
    """Epochs finished in an existing checkpoint (0 when none or unreadable)."""
    if not checkpoint.exists():
        return 0
    try:
        from osrkit.engine.checkpoint import load_checkpoint

        ts = load_checkpoint(checkpoint).get("train_state") or {}
        return int(ts.get("epoch", -1)) + 1
    except Exception:
        return 0


def _machine(device: str) -> dict[str, Any]:
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


def _share_signature(spec: RunSpec) -> tuple:
    """Runs with equal signatures train the very same network (same loss, step, backbone, config, data)."""
    from osrkit.methods import get_method

    m = get_method(spec.method)
    cfg = tuple(sorted((k, repr(v)) for k, v in spec.config.items()))
    return (spec.task, spec.family, spec.split, spec.seed, id(m.make_loss), id(m.loss_step), m.model, cfg)


class _TaskCache:
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


def run_one(spec: RunSpec, task, device: str, checkpoint: Path | None, progress: GridProgress,
            shared=None, on_epoch: Callable[[int, dict], None] | None = None,
            heartbeat: Callable[[], None] | None = None):
    """Train (or reuse `shared`'s network), evaluate; returns (Trained, metrics, RunRecord)."""
    from osrkit.engine.config import TrainConfig
    from osrkit.engine.pipeline import evaluate, fit_method, with_scorer

    t0 = time.perf_counter()
    extra: dict[str, Any] = {"checkpoint": str(checkpoint) if checkpoint else None, "task_name": task.name}
    if shared is not None:
        trained_from, base = shared
        progress.start(spec, spec.epochs)
        trained = with_scorer(base, spec.method, task, device=device)
        extra.update(shared_training_with=trained_from, checkpoint=None)
    else:
        moved = quarantine_corrupt(checkpoint) if checkpoint else None
        if moved is not None:
            progress.console.print(f"warning: {checkpoint} was unreadable: moved to {moved.name}; {spec.label} "
                                   "starts over", highlight=False, soft_wrap=True)
            extra["corrupt_checkpoint_moved_to"] = str(moved)
        done = _done_epochs(checkpoint) if checkpoint else 0
        extra["resumed_from_epoch"] = done
        progress.start(spec, done)

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
    extra["machine"] = _machine(device)
    extra["diverged"] = trained.meta.get("diverged")
    rec = RunRecord(method=spec.method, task=spec.task, family=spec.family, split=spec.split, seed=spec.seed,
                    config=spec.config, metrics=metrics, wall_seconds=seconds,
                    train_images_per_second=_throughput(trained.history), device=device,
                    history=trained.history, extra=extra)
    progress.finish(spec, metrics, seconds)
    return trained, metrics, rec


def run_grid(methods: Sequence[str], tasks: Sequence[str], splits: Sequence[int] | None = None,
             seeds: Sequence[int] = (0,), family: str = "neal", epochs: int | None = None,
             db: str | Path | ResultsStore = DEFAULT_DB, data_root=None, device: str = "cpu",
             checkpoint_dir: str | Path | None = None, progress: bool = True, config: Mapping[str, Any] | None = None,
             download: bool = False, threads: int | None = None, share_training: bool = True,
             claim: bool = True, on_epoch: Callable[[int, dict], None] | None = None, console=None) -> GridResult:
    """Run every method × task × split × seed not yet in `db`; one row per run.

    splits=None: all splits of `family` for each task. epochs=None: each method's data-set default.
    config: TrainConfig overrides for every run. checkpoint_dir: per-run checkpoints (default: beside the
    db, `<db stem>-checkpoints/`), resumed when a run was interrupted. share_training: methods that
    train the identical network (e.g. softmax and mls) train it once and each score it.
    claim: coordinate with other processes running the same grid on the same db.
    """
    t_start = time.perf_counter()
    device = resolve_device(device)
    specs = plan_grid(methods, tasks, splits, seeds, family, epochs, config, device)
    _check_data(sorted({s.task for s in specs}), data_root, download)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    store = db if isinstance(db, ResultsStore) else ResultsStore(db)
    ckdir = Path(checkpoint_dir) if checkpoint_dir else store.path.parent / f"{store.path.stem}-checkpoints"
    result = GridResult()
    tasks_cache = _TaskCache(data_root, download)
    shared: dict[tuple, tuple[str, Any]] = {}
    stored = store.keys()
    with GridProgress(specs, enabled=progress, console=console) as prog:
        for spec in specs:
            key = spec.key
            if key in stored or store.has(key):
                result.skipped.append(key)
                prog.skip(spec, "stored already, skipped")
                continue
            if claim and not store.claim(key):
                (result.skipped if store.has(key) else result.claimed_elsewhere).append(key)
                prog.skip(spec, "being run by another process, skipped")
                continue
            try:
                task = tasks_cache.get(spec)
                sig = _share_signature(spec) if share_training else None
                with Heartbeat(store, key) if claim else nullcontext():
                    trained, _, rec = run_one(spec, task, device, ckdir / checkpoint_name(spec), prog,
                                              shared=shared.get(sig) if sig else None, on_epoch=on_epoch,
                                              heartbeat=(lambda: store.heartbeat(key)) if claim else None)
                if sig is not None:
                    shared = {sig: (key, trained)}  # keep only the latest network
                store.add(rec)
                result.trained.append(key)
            finally:
                if claim:
                    store.release(key)
    result.seconds = time.perf_counter() - t_start
    return result


# -- grid files ------------------------------------------------------------------------------------------
def load_grid_file(path: str | Path) -> dict[str, Any]:
    """A YAML grid: the bench flags as keys (methods, tasks, splits, seeds, family, epochs, db, data_root,
    device, checkpoint_dir, threads, download), plus `config:` (TrainConfig overrides for every run)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"grid file {p} does not exist")
    raw = yaml.safe_load(p.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"grid file {p}: expected a mapping of {', '.join(GRID_KEYS)}")
    grid = {str(k).replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise ValueError(f"grid file {p}: unknown keys {unknown}; valid keys: {', '.join(GRID_KEYS)}")
    if "config" in grid and not isinstance(grid["config"] or {}, dict):
        raise ValueError(f"grid file {p}: `config` must be a mapping of TrainConfig fields")
    return grid


def normalize_grid(grid: Mapping[str, Any]) -> dict[str, Any]:
    """Turn flag/YAML values (comma strings or lists) into run_grid keyword arguments."""
    out = dict(grid)
    for k, cast in (("methods", str), ("tasks", str), ("splits", int), ("seeds", int)):
        if k in out:
            out[k] = parse_list(out[k], k, cast)
    if out.get("epochs") is not None:
        out["epochs"] = int(out["epochs"])
    return out


def grid_kwargs(flags: Mapping[str, Any], grid_file: str | Path | None = None) -> dict[str, Any]:
    """run_grid keyword arguments: the YAML file's values, overridden by flags that were given (not None)."""
    base = load_grid_file(grid_file) if grid_file else {}
    merged = {**base, **{k: v for k, v in flags.items() if v is not None}}
    return normalize_grid(merged)


def iter_missing(specs: Iterable[RunSpec], store: ResultsStore) -> list[RunSpec]:
    """The runs of a plan that are not stored yet."""
    have = store.keys()
    return [s for s in specs if s.key not in have]
