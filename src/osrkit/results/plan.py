"""A grid's plan: every (method, task, split, seed) run with its effective config, validated before training.

Names, splits, data files, config fields and the device are all checked here, so a mistake costs seconds,
not the hours of the runs before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from osrkit.results.store import run_key

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

    def network(self, share_training: bool = True) -> tuple:
        """Runs with equal values train the same network (one checkpoint, see `osrkit.engine.identity`); known
        before any data loads, since a grid's runs on one task, split and seed see the same task."""
        from osrkit.engine.identity import network_key

        return (self.task, self.family, self.split, self.seed,
                network_key(self.method, self.config, share_network=share_training),
                None if share_training else self.method)

    def checkpoint_name(self, task, share_training: bool = True) -> str:
        """The run identity's checkpoint file name for this run on the built `task` (shared by every method
        training the same network, and equal to `osrkit run --out-dir`'s)."""
        from osrkit.engine.identity import checkpoint_name

        return checkpoint_name(self.method, task.name, self.config, task.spec, share_network=share_training)


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


def check_data(tasks: Sequence[str], data_root, download: bool) -> None:
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
                device: str = "cpu", method_overrides: Mapping[str, Any] | None = None):
    """Method/data-set defaults, then the grid's TrainConfig overrides, then this method's own overrides (e.g. a
    rotation head for m-OvR only), then epochs and seed; "auto" precision and memory format resolved for `device`
    (what ran is the run's identity)."""
    from osrkit.engine.config import TrainConfig
    from osrkit.methods import default_config, get_method

    cfg, m = default_config(method, task), get_method(method)
    for extra in (overrides, method_overrides):
        if extra:
            cfg = cfg.replace(**dict(extra))
            params = m.without_later_defaults(m.coerce_params(cfg.method_params))  # (replace would merge, not drop)
            cfg = TrainConfig.from_dict({**cfg.to_dict(), "method_params": params})
    return cfg.replace(epochs=epochs, seed=seed).resolved(device)


def check_method_config(methods: Sequence[str], method_config: Mapping[str, Any] | None) -> dict[str, dict]:
    """Per-method TrainConfig overrides, each naming a method of the grid and holding a mapping."""
    out = {}
    for name, extra in (method_config or {}).items():
        if name not in methods:
            raise ValueError(f"method_config names {name!r}, which is not one of the grid's methods "
                             f"({', '.join(methods)}); add it to methods or drop its overrides")
        if not isinstance(extra, Mapping):
            raise ValueError(f"method_config.{name} must be a mapping of TrainConfig fields, got {extra!r}")
        out[name] = dict(extra)
    return out


def plan_grid(methods: Sequence[str], tasks: Sequence[str], splits: Sequence[int] | None, seeds: Sequence[int],
              family: str = "neal", epochs: int | None = None,
              config: Mapping[str, Any] | None = None, device: str = "cpu",
              method_config: Mapping[str, Any] | None = None) -> list[RunSpec]:
    """Every run of the grid, validated; ordered task → split → seed → method so each task loads once.
    `config` overrides every run's TrainConfig, `method_config[method]` that method's runs only."""
    methods, tasks, seeds = list(methods), list(tasks), list(seeds)
    if not methods or not tasks or not seeds:
        raise ValueError("a grid needs at least one method, one task and one seed")
    if epochs is not None and int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    _check_names(methods, tasks)
    per_method = check_method_config(methods, method_config)
    per_task = _resolve_splits(tasks, family, splits)
    specs = []
    for t in tasks:
        for s in per_task[t]:
            for seed in seeds:
                for m in methods:
                    cfg = make_config(m, t, int(seed), epochs, config, device, per_method.get(m))
                    specs.append(RunSpec(m, t, family, int(s), int(seed), cfg.to_dict()))
    return specs
