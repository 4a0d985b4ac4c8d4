"""Benchmark grid: method × task × split × seed → one stored row each; skip what is stored, resume the rest.

`run_grid(GridConfig(...))` plans and validates every run (`plan`), then hands the missing ones to an
executor: `local` runs them in this process, `ray` as Ray tasks across a cluster (`ray_executor`). Each run
trains with a checkpoint named by the run identity (`osrkit.engine.identity`) and `resume=True`, so a grid
that was killed continues where it stopped, and methods that train the same network train it once.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from osrkit.results.plan import (RunSpec, check_data, grid_tasks, make_config, parse_list,  # noqa: F401 (re-exported)
                                 plan_grid, resolve_device)
from osrkit.results.store import DEFAULT_DB, Heartbeat, open_store

EXECUTORS = ("local", "ray")


@dataclass
class GridConfig:
    """Everything a grid run needs. `db`: a SQLite file, a `postgresql://` URL or an open store; `config`:
    TrainConfig overrides for every run; `method_config`: {method: overrides} for one method's runs only (e.g.
    m-OvR's rotation head, leaving the baselines' networks and run keys as they were); `checkpoint_dir`: per-run
    checkpoints (default: the store's, beside a SQLite file), on storage every worker sees when the executor is
    Ray; `share_training`: methods that train the identical network (softmax, mls, energy, openmax) train it once
    and each score it; `claim`: coordinate with other drivers on the same db."""

    methods: Sequence[str]
    tasks: Sequence[str]
    splits: Sequence[int] | None = None
    seeds: Sequence[int] = (0,)
    family: str = "neal"
    epochs: int | None = None
    db: Any = DEFAULT_DB
    data_root: str | Path | None = None
    device: str = "cpu"
    checkpoint_dir: str | Path | None = None
    config: Mapping[str, Any] | None = None
    method_config: Mapping[str, Any] | None = None
    download: bool = False
    threads: int | None = None
    share_training: bool = True
    claim: bool = True
    executor: str = "local"
    ray_address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown executor {self.executor!r}; choose {' or '.join(EXECUTORS)}")
        if self.executor == "ray" and str(self.device).startswith("cuda") and not self.gpus_per_run:
            raise ValueError(f"--device {self.device} with --executor ray needs --gpus-per-run (e.g. 1): Ray shows "
                             "a task no GPU it has not reserved")
        if self.cpus_per_run <= 0 or self.gpus_per_run < 0:
            raise ValueError(f"--cpus-per-run must be > 0 and --gpus-per-run >= 0 (got {self.cpus_per_run}, "
                             f"{self.gpus_per_run})")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "GridConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown grid settings {unknown}; valid: {', '.join(sorted(names))}")
        return cls(**{k: v for k, v in values.items() if v is not None})

    def plan(self) -> list[RunSpec]:
        return plan_grid(self.methods, self.tasks, self.splits, self.seeds, self.family, self.epochs, self.config,
                         self.device, self.method_config)


GRID_KEYS = tuple(f.name for f in fields(GridConfig))


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


def checkpoint_dir(grid: GridConfig, store) -> Path:
    return Path(grid.checkpoint_dir) if grid.checkpoint_dir else store.default_checkpoint_dir()


def run_grid(grid: GridConfig, *, progress: bool = True, on_epoch: Callable[[int, dict], None] | None = None,
             console=None) -> GridResult:
    """Run every run of `grid` that is not stored yet; one row per run. Everything is validated first."""
    t_start = time.perf_counter()
    grid.device = resolve_device(grid.device)
    specs = grid.plan()
    check_data(sorted({s.task for s in specs}), grid.data_root, grid.download)
    store = open_store(grid.db)
    if grid.executor == "ray":
        from osrkit.results.ray_executor import run_on_ray

        result = run_on_ray(grid, specs, store, progress=progress, console=console)
    else:
        result = _run_local(grid, specs, store, progress, on_epoch, console)
    result.seconds = time.perf_counter() - t_start
    return result


def _run_local(grid: GridConfig, specs: Sequence[RunSpec], store, progress: bool, on_epoch, console) -> GridResult:
    """The runs one after another in this process (tasks built once per task, split and seed). A run whose
    network another driver is training right now (mls beside that driver's softmax) is put off to the end of
    the pass, so this driver trains something else meanwhile instead of waiting."""
    from osrkit.results.progress import GridProgress
    from osrkit.results.runner import TaskCache

    if grid.threads:
        import torch

        torch.set_num_threads(int(grid.threads))
    result = GridResult()
    runner = _LocalRunner(grid, store, result, TaskCache(grid.data_root, grid.download), on_epoch)
    with GridProgress(specs, enabled=progress, console=console) as prog:
        put_off = [spec for spec in specs if not runner.run(spec, prog, wait=False)]
        for spec in put_off:
            runner.run(spec, prog, wait=True)
    return result


@dataclass
class _LocalRunner:
    """One run of a local grid: skip it if stored or claimed elsewhere, else train (or reuse), evaluate, store."""

    grid: GridConfig
    store: Any
    result: GridResult
    tasks_cache: Any
    on_epoch: Callable[[int, dict], None] | None

    def __post_init__(self) -> None:
        self.ckdir = checkpoint_dir(self.grid, self.store)
        self.stored = self.store.keys()

    def run(self, spec: RunSpec, prog, wait: bool) -> bool:
        """Handle `spec`; False where `wait` is off and another process holds its network (nothing done)."""
        from osrkit.results.runner import NetworkBusy, network_claim, run_one

        key, store, claim = spec.key, self.store, self.grid.claim
        if key in self.stored or store.has(key):
            self.result.skipped.append(key)
            prog.skip(spec, "stored already, skipped")
            return True
        if claim and not store.claim(key):
            (self.result.skipped if store.has(key) else self.result.claimed_elsewhere).append(key)
            prog.skip(spec, "being run by another process, skipped")
            return True
        try:
            task = self.tasks_cache.get(spec)
            ckpt = self.ckdir / spec.checkpoint_name(task, self.grid.share_training)
            with Heartbeat(store, [key]) if claim else nullcontext(), \
                    network_claim(store, ckpt, wait=wait) if claim else nullcontext():
                _, _, rec = run_one(spec, task, self.grid.device, ckpt, prog, on_epoch=self.on_epoch)
            store.add(rec)
            self.result.trained.append(key)
            return True
        except NetworkBusy:
            prog.defer(spec, "its network is being trained by another process: put off to the end")
            return False
        finally:
            if claim:
                store.release(key)


# -- grid files ------------------------------------------------------------------------------------------
def load_grid_file(path: str | Path) -> dict[str, Any]:
    """A YAML grid: the bench flags as keys (methods, tasks, splits, seeds, family, epochs, db, data_root,
    device, checkpoint_dir, threads, download), plus `config:` (TrainConfig overrides for every run) and
    `method_config:` ({method: TrainConfig overrides} for that method's runs only)."""
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
    if "method_config" in grid and not isinstance(grid["method_config"] or {}, dict):
        raise ValueError(f"grid file {p}: `method_config` must map method names to TrainConfig fields, e.g. "
                         "{movr: {method_params: {rotation_weight: 0.1}}}")
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
    """GridConfig fields: the YAML file's values, overridden by flags that were given (not None)."""
    base = load_grid_file(grid_file) if grid_file else {}
    merged = {**base, **{k: v for k, v in flags.items() if v is not None}}
    return normalize_grid(merged)


def iter_missing(specs: Iterable[RunSpec], store) -> list[RunSpec]:
    """The runs of a plan that are not stored yet."""
    have = store.keys()
    return [s for s in specs if s.key not in have]
