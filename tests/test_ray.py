"""`osrkit bench --executor ray` on a local Ray cluster with a PostgreSQL store: one row per run, reruns add
nothing, and a worker SIGKILLed mid-run is retried by Ray and resumes from the run's checkpoint."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from osrkit.cli import main
from osrkit.engine.checkpoint import load_checkpoint
from osrkit.results.grid import GridConfig, run_grid
from osrkit.results.store import open_store


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}})
    yield ray
    ray.shutdown()


def test_ray_grid_into_postgres_and_a_rerun_adds_nothing(ray_cluster, pg_url, tmp_path, capsys):
    args = ["bench", "--executor", "ray", "--methods", "softmax,cac", "--tasks", "digits", "--splits", "0,1",
            "--epochs", "2", "--db", pg_url, "--checkpoint-dir", str(tmp_path / "ck"), "--no-progress"]
    assert main(args) == 0
    rows = open_store(pg_url).rows()
    assert len(rows) == 4 and len({r["key"] for r in rows}) == 4
    assert {(r["method"], r["split"]) for r in rows} == {(m, s) for m in ("softmax", "cac") for s in (0, 1)}
    assert len(list((tmp_path / "ck").glob("*.pt"))) == 4
    assert "4 runs: 4 trained" in capsys.readouterr().err
    assert main(args) == 0
    assert "4 runs: 0 trained, 4 already stored" in capsys.readouterr().err
    assert open_store(pg_url).count() == 4
    assert main(["table", "--db", pg_url]) == 0
    out = capsys.readouterr().out
    assert "| softmax | digits | neal |" in out and "| cac | digits | neal |" in out


def _ray_workers() -> list[int]:
    """PIDs of Ray worker processes running a grid task (Ray titles them `ray::run_group`)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(b"ray::run_group"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(ray_cluster, pg_url, tmp_path):
    ck = tmp_path / "ck"
    grid = GridConfig(["softmax", "mls"], ["digits"], [0], [0], epochs=40, db=pg_url, checkpoint_dir=ck,
                      executor="ray")
    result, errors = {}, []

    def drive():
        try:
            result["r"] = run_grid(grid, progress=False)
        except Exception as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=drive)
    t.start()
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and t.is_alive():
        for p in ck.glob("*.pt"):
            try:
                epoch = load_checkpoint(p)["train_state"]["epoch"]
            except Exception:
                continue
            if 1 <= epoch < 30 and _ray_workers():
                killed = (_ray_workers()[0], epoch)
                os.kill(killed[0], signal.SIGKILL)
                break
        time.sleep(0.1)
    t.join(timeout=600)
    assert not errors, errors
    assert killed is not None, "the run finished before a worker could be killed"
    rows = open_store(pg_url).rows()
    assert len(rows) == 2 and len({r["key"] for r in rows}) == 2  # exactly one row per key
    softmax = next(r for r in rows if r["method"] == "softmax")
    assert softmax["extra"]["resumed_from_epoch"] >= 1  # the retry resumed, it did not start over
    assert [h["epoch"] for h in softmax["history"]] == list(range(40))
    assert len(result["r"].trained) == 2


def test_cuda_on_ray_without_gpus_per_run_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="needs --gpus-per-run"):
        GridConfig(["softmax"], ["digits"], device="cuda", executor="ray")
