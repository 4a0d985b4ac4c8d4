"""DDP training with torchrun on CPU (gloo): two ranks train a network that `osrkit eval` reads and that scores
within 0.005 AUROC of the single-process run; `osrkit train --nproc` launches the same; an interrupted DDP run
resumes to exactly the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from osrkit.cli import _without_option
from osrkit.engine.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "osrkit"]


def _osrkit(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "osrkit", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def _auroc(ckpt) -> float:
    r = _osrkit("eval", str(ckpt))
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)["auroc"]


def test_torchrun_trains_a_checkpoint_that_matches_one_process(tmp_path):
    train = ["train", "--task", "digits", "--epochs", "20", "--no-progress", "--threads", "1"]
    r = subprocess.run([*TORCHRUN, *train, "--out", str(tmp_path / "ddp.pt")], capture_output=True, text=True,
                       env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    one = _osrkit(*train, "--out", str(tmp_path / "one.pt"))
    assert one.returncode == 0, one.stderr[-2000:]
    meta = load_checkpoint(tmp_path / "ddp.pt")
    assert meta["distributed"] == {"world_size": 2, "sync_bn": False, "backend": "gloo"}
    assert len(meta["train_state"]["history"]) == 20 and "distributed" not in load_checkpoint(tmp_path / "one.pt")
    ddp, single = _auroc(tmp_path / "ddp.pt"), _auroc(tmp_path / "one.pt")
    assert ddp > 0.9 and abs(ddp - single) <= 0.005, (ddp, single)


def test_nproc_launches_torchrun_and_a_killed_run_resumes_exactly(tmp_path):
    args = ["train", "--task", "digits", "--epochs", "6", "--no-progress", "--threads", "1"]
    full = _osrkit(*args, "--nproc", "2", "--out", str(tmp_path / "full.pt"))
    assert full.returncode == 0, full.stderr[-3000:]
    assert load_checkpoint(tmp_path / "full.pt")["distributed"]["world_size"] == 2

    ck = tmp_path / "cut.pt"
    proc = subprocess.Popen([*TORCHRUN, *args, "--out", str(ck)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline
            try:
                if load_checkpoint(ck)["train_state"]["epoch"] >= 1:
                    break
            except (FileNotFoundError, ValueError, OSError, KeyError):
                pass
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
        proc.wait()
    done = load_checkpoint(ck)["train_state"]["epoch"] + 1
    assert 2 <= done < 6
    resumed = subprocess.run([*TORCHRUN, *args, "--out", str(ck), "--resume"], capture_output=True, text=True,
                             env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(load_checkpoint(ck)["train_state"]["history"]) == 6
    assert _auroc(ck) == pytest.approx(_auroc(tmp_path / "full.pt"), abs=1e-9)  # resume is exact


def test_without_option_and_sync_bn_on_cpu():
    assert _without_option(["train", "--nproc", "2", "--task", "digits"], "--nproc") == ["train", "--task", "digits"]
    assert _without_option(["train", "--nproc=2", "--out", "x"], "--nproc") == ["train", "--out", "x"]
    from osrkit.engine.distributed import wrap

    import torch

    with pytest.raises(ValueError, match="--sync-bn needs CUDA"):
        wrap(torch.nn.BatchNorm1d(2), "cpu", sync_bn=True)


def test_ddp_only_inside_a_joined_process_group(monkeypatch):
    """A launcher's RANK/WORLD_SIZE alone (e.g. `osrkit run` inside a job that exports them) does not make a
    run distributed: without a joined group it trains, fits and scores as one process."""
    from osrkit.data.tasks import make_task
    from osrkit.engine import distributed
    from osrkit.engine.pipeline import fit_method
    from osrkit.methods import default_config

    import torch

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.active() == (0, 1) and distributed.is_main()
    torch.set_num_threads(1)
    trained = fit_method("softmax", make_task("digits", 0), default_config("softmax", "digits").replace(epochs=1),
                         progress=False)
    assert trained.scorer is not None and "distributed" not in trained.meta


def test_shards_partition_each_batch_and_a_tiny_last_batch_still_feeds_every_rank():
    from osrkit.engine.distributed import shard

    import torch

    batch = torch.arange(10, 17)  # 7 samples on 2 ranks
    assert shard(batch, 0, 2).tolist() == [10, 12, 14, 16] and shard(batch, 1, 2).tolist() == [11, 13, 15]
    last = torch.tensor([42])  # fewer samples than ranks: each rank gets one, so no rank skips the step
    assert [shard(last, r, 3).tolist() for r in range(3)] == [[42], [42], [42]]
    two = torch.tensor([7, 8])
    assert [shard(two, r, 3).tolist() for r in range(3)] == [[7], [8], [7]]
