"""Shared helpers for benchmark scripts: machine description, result files."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def git_commit() -> str:
    """This checkout's commit; $OSRKIT_GIT_COMMIT where set (a copy whose .git is absent or stale, e.g. on a lent
    GPU machine)."""
    if os.environ.get("OSRKIT_GIT_COMMIT"):
        return os.environ["OSRKIT_GIT_COMMIT"]
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       cwd=Path(__file__).parent, stderr=subprocess.DEVNULL).strip()
    except Exception:
        return "unknown"


def header(omit: tuple[str, ...] = ("--note",)) -> dict:
    """Command line, date, machine and commit of this run; flags in `omit` (with their values) are left out of the
    command, as their text is already in the result (a note)."""
    argv, skip = [], False
    for arg in sys.argv:
        if skip:
            skip = False
        elif arg in omit:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in omit)):
            argv.append(arg)
    return {"command": " ".join([Path(sys.executable).name, *argv]), "date": _dt.date.today().isoformat(),
            "machine": machine(), "git_commit": git_commit()}


def provenance(h: dict) -> str:
    """The closing line of a Markdown report: command, date, machine and commit from `header()`."""
    return (f"Command: `{h['command']}`; date {h['date']}; {h['machine']['processor']}, {h['machine']['cpu_count']} cores, "
            f"torch {h['machine']['torch']}; commit {h['git_commit']}.")


def write(name: str, payload: dict, markdown: str | None = None) -> Path:
    """Write results/<name>.json (and .md) atomically."""
    from osrkit.engine.checkpoint import atomic_write_text

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(payload, indent=2, default=float) + "\n")
    if markdown is not None:
        atomic_write_text(RESULTS / f"{name}.md", markdown)
    return path


def task_label(task) -> str:
    """How a report names the task's data: its data label where it has one (e.g. "CIFAR-10 (JPEG copy)")."""
    name = task.spec.get("dataset", "")
    return task.spec.get("data_label") or {"mnist": "MNIST"}.get(name, name)


def stored_run_matches(store, key: str, auroc: float) -> bool:
    """Whether the results store holds exactly one run `key` with this AUROC: a reused report row then describes
    that very network (the check behind the benchmarks' --reuse)."""
    runs = store.rows(key=key)
    return len(runs) == 1 and abs(runs[0]["metrics"]["auroc"] - auroc) <= 1e-9


def own_method_config(method_config, method: str) -> dict | None:
    """A grid's `method_config` cut to one method, for planning that method's runs alone."""
    extra = (method_config or {}).get(method)
    return {method: extra} if extra else None


REPORTED_SPLITS = {("mnist", "neal"), ("cifar10", "neal")}  # where issue 11's comparisons are reported


def issue11_bar(task: str) -> tuple[int, float]:
    """Issue 11's acceptance point and m-OvR's bar over softmax MSP for a task: MNIST (point 1, +0.005), else the
    colour-image protocol's (point 4, +0.01)."""
    return (1, 0.005) if task == "mnist" else (4, 0.01)


def finished_checkpoints(pattern: str, allow_reported: bool = False, model: str | None = None) -> list[str]:
    """Paths of finished osrkit checkpoints (a fitted scorer) matching a glob, optionally of one backbone; exits on
    a reported split unless allowed, since choosing anything from a view of reported splits is tuning on the report."""
    import glob

    from osrkit.engine.checkpoint import load_checkpoint

    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"no checkpoint matches {pattern!r}")
    out = []
    for p in paths:
        state = load_checkpoint(p)
        if "scorer" not in state:
            print(f"{p}: unfinished (no fitted scorer), skipped", flush=True)
            continue
        if model and state.get("osrkit_config", {}).get("model") != model:
            continue
        spec = state.get("task", {})
        if (spec.get("dataset"), spec.get("family")) in REPORTED_SPLITS and not allow_reported:
            raise SystemExit(f"{p} is a reported split ({spec['dataset']} {spec['family']} {spec.get('index')}): "
                             "pass --allow-reported to look at it (and choose nothing from what you see)")
        out.append(p)
    return out
