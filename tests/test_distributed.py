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
