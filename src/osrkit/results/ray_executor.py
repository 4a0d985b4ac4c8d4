"""`osrkit bench --executor ray`: a grid's runs as Ray tasks across a cluster.

The driver plans and validates the grid, claims each missing key in the store (and keeps the claims alive
while it runs), then submits one Ray task per trained network: the runs that share a network (softmax, mls,
energy, openmax on one split) go to one task, which trains it once and scores it for each method. Each task
writes its rows to the store itself, so a finished run is stored even if the driver dies.

A worker killed mid-run is retried by Ray (`max_retries`); the retry skips the runs already stored and resumes
the interrupted one from its checkpoint. Checkpoints and a SQLite store must therefore be on storage every
worker sees (a shared file system); across machines use a PostgreSQL store.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from osrkit.results.plan import RunSpec
from osrkit.results.store import Heartbeat

MAX_RETRIES = 3  # a task whose worker died is run again this many times (it resumes from its checkpoint)


def store_address(store) -> str:
    """What a worker passes to `open_store`: the PostgreSQL URL, or the SQLite file's absolute path."""
    return getattr(store, "url", None) or str(Path(store.path).resolve())


def run_group(spec_dicts: list[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    """One Ray task: the runs sharing one network, in order; each stored as soon as it finishes. Safe to rerun."""
    import torch
    from rich.console import Console

    from osrkit.results.progress import GridProgress
    from osrkit.results.runner import TaskCache, network_claim, run_one
    from osrkit.results.store import open_store

    torch.set_num_threads(int(settings["threads"]))
    specs = [RunSpec(**d) for d in spec_dicts]
    store = open_store(settings["db"])
    quiet = GridProgress(specs, enabled=False, console=Console(file=io.StringIO()))
    cache = TaskCache(settings["data_root"], settings["download"])
    ckdir = Path(settings["checkpoint_dir"])
    done = []
    for spec in specs:
        if not store.has(spec.key):  # a retried task skips what its first attempt stored
            task = cache.get(spec)
            ckpt = ckdir / spec.checkpoint_name(task, settings["share_training"])
            with network_claim(store, ckpt):  # another driver may be training this network right now
                _, _, rec = run_one(spec, task, settings["device"], ckpt, quiet)
            store.add(rec)
        done.append(spec.key)
    return done


def _init_ray(address: str | None):
    try:
        import ray
    except ImportError:
        raise ImportError("--executor ray needs Ray: pip install 'osrkit[cluster]' (or pip install ray)") from None
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
        except ConnectionError as e:
            raise ConnectionError(f"cannot reach the Ray cluster at {address}: {e}; start it with "
                                  "`ray start --head` or leave out --ray-address for a local one") from None
    return ray


def run_on_ray(grid, specs: Sequence[RunSpec], store, progress: bool = True, console=None):
    """Claim the grid's missing runs and run them as Ray tasks; returns the GridResult."""
    from osrkit.results.grid import GridResult, checkpoint_dir
    from osrkit.results.progress import GridProgress

    ray = _init_ray(grid.ray_address)
    result = GridResult()
    stored = store.keys()
    todo: list[RunSpec] = []
    with GridProgress(specs, enabled=progress, console=console) as prog:
        for spec in specs:
            if spec.key in stored:
                result.skipped.append(spec.key)
                prog.skip(spec, "stored already, skipped")
            elif grid.claim and not store.claim(spec.key):
                (result.skipped if store.has(spec.key) else result.claimed_elsewhere).append(spec.key)
                prog.skip(spec, "being run by another process, skipped")
            else:
                todo.append(spec)
        groups: OrderedDict[tuple, list[RunSpec]] = OrderedDict()
        for spec in todo:
            groups.setdefault(spec.network(grid.share_training), []).append(spec)
        from osrkit.data.datasets import default_data_root

        settings = {"db": store_address(store), "data_root": str(Path(default_data_root(grid.data_root)).resolve()),
                    "download": grid.download, "device": grid.device,
                    "checkpoint_dir": str(checkpoint_dir(grid, store).resolve()), "share_training": grid.share_training,
                    "threads": grid.threads or max(1, int(grid.cpus_per_run))}
        task = ray.remote(run_group).options(num_cpus=grid.cpus_per_run, num_gpus=grid.gpus_per_run,
                                             max_retries=MAX_RETRIES, retry_exceptions=False)
        claimed = [s.key for s in todo]
        failures: list[str] = []
        try:
            with Heartbeat(store, claimed) if grid.claim else nullcontext():
                pending = {task.remote([asdict(s) for s in g], settings): g for g in groups.values()}
                done = prog.runs_done
                prog.remote(done, len(pending))
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    group = pending.pop(ready[0])
                    try:
                        result.trained += ray.get(ready[0])
                    except Exception as e:  # one failed network does not stop the others
                        lines = str(e).strip().splitlines() or [type(e).__name__]
                        failures.append(f"{group[0].label}: {lines[-1]}")
                        if grid.claim:
                            for s in group:  # give the failed runs back at once
                                store.release(s.key)
                    done += len(group)
                    prog.remote(done, len(pending))
        finally:
            if grid.claim:
                for key in claimed:
                    store.release(key)
    if failures:
        raise RuntimeError(f"{len(failures)} Ray task(s) failed (an error raised by the run is not retried; a dead "
                           f"worker is, up to {MAX_RETRIES} times): " + "; ".join(failures))
    return result

