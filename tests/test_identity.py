"""One run identity: which runs share a trained network, the checkpoint file it lives in, and reuse of
that file between `osrkit run --out-dir` and `osrkit bench` in both directions without retraining."""

from __future__ import annotations

import subprocess
import sys

import pytest

from osrkit.cli import main
from osrkit.engine.checkpoint import load_checkpoint
from osrkit.engine.identity import checkpoint_name, network_key, same_network, trainer_of
from osrkit.methods import default_config
from osrkit.results.store import ResultsStore


pytestmark = pytest.mark.usefixtures("one_thread")


def test_trainers_group_the_methods_that_train_the_same_network():
    assert {m: trainer_of(m) for m in ("softmax", "mls", "energy", "openmax")} == dict.fromkeys(
        ("softmax", "mls", "energy", "openmax"), "softmax")
    assert {trainer_of(m) for m in ("crosr", "dhrnet-softmax", "dhrnet-openmax")} == {"crosr"}
    assert [trainer_of(m) for m in ("cac", "ovr", "movr")] == ["cac", "ovr", "movr"]


def _cfg(method: str, **params) -> dict:
    cfg = default_config(method, "digits")
    return cfg.replace(method_params={**cfg.method_params, **params}).to_dict()


def test_scorer_parameters_share_the_network_and_loss_parameters_do_not():
    spec = {"dataset": "digits", "known": [0, 1], "seed": 0}
    base = network_key("openmax", _cfg("openmax"), spec)
    assert network_key("openmax", _cfg("openmax", tailsize=5), spec) == base  # a scorer-only parameter
    assert network_key("softmax", _cfg("softmax"), spec) == base == network_key("energy", _cfg("energy", temperature=2.0), spec)
    assert network_key("openmax", _cfg("openmax", label_smoothing=0.1), spec) != base  # a loss parameter
    assert network_key("openmax", _cfg("openmax"), {**spec, "known": [0, 2]}) != base  # another task
    assert network_key("openmax", {**_cfg("openmax"), "lr": 0.5}, spec) != base  # another schedule
    assert network_key("cac", _cfg("cac"), spec) != base
    # without sharing, every method and parameter counts
    assert network_key("openmax", _cfg("openmax", tailsize=5), spec, share_network=False) != network_key(
        "openmax", _cfg("openmax"), spec, share_network=False)
    name = checkpoint_name("mls", "digits/neal0", _cfg("mls"), spec)
    assert name == checkpoint_name("softmax", "digits/neal0", _cfg("softmax"), spec)
    assert name.startswith("softmax-digits-neal0-seed0-") and name.endswith(".pt")


def test_same_network_reads_old_configs_at_their_defaults():
    cur = _cfg("movr")
    old = {**cur, "method_params": {k: v for k, v in cur["method_params"].items() if k != "rotation_weight"}}
    assert same_network(old, "movr", cur, "movr")  # a parameter added since, at its default
    assert not same_network(old, "movr", _cfg("movr", rotation_weight=0.1), "movr")
    assert same_network(_cfg("softmax"), "softmax", _cfg("openmax", tailsize=3), "openmax")
    assert not same_network(_cfg("cac"), "cac", _cfg("softmax"), "softmax")
    assert not same_network(None, "softmax", _cfg("softmax"), "softmax")


def _trained_state(path):
    st = load_checkpoint(path)
    return st["method"], [h["train_seconds"] for h in st["train_state"]["history"]]


COMMON = ["--task", "digits", "--splits", "0", "--epochs", "1", "--no-progress"]


def test_run_out_dir_checkpoint_is_reused_by_bench_and_the_reverse(tmp_path, capsys):
    d = tmp_path / "nets"
    assert main(["run", "--method", "softmax", *COMMON, "--out-dir", str(d)]) == 0
    (ckpt,) = d.glob("*.pt")
    before = _trained_state(ckpt)
    assert main(["bench", "--methods", "softmax,mls", "--tasks", "digits", "--splits", "0", "--epochs", "1",
                 "--db", str(tmp_path / "a.db"), "--checkpoint-dir", str(d), "--no-progress"]) == 0
    assert list(d.glob("*.pt")) == [ckpt] and _trained_state(ckpt) == before  # reused, not retrained
    rows = ResultsStore(tmp_path / "a.db").rows()
    assert {r["method"] for r in rows} == {"softmax", "mls"}
    assert all(r["extra"]["resumed_from_epoch"] == 1 and r["extra"]["checkpoint"] == str(ckpt) for r in rows)

    # the reverse: bench trains, then `run` (another method of the same trainer) reuses its file
    d2 = tmp_path / "nets2"
    assert main(["bench", "--methods", "energy", "--tasks", "digits", "--splits", "0", "--epochs", "1",
                 "--db", str(tmp_path / "b.db"), "--checkpoint-dir", str(d2), "--no-progress"]) == 0
    (ckpt2,) = d2.glob("*.pt")
    assert ckpt2.name == ckpt.name  # one name for one network, whoever trained it
    before2 = _trained_state(ckpt2)
    assert main(["run", "--method", "mls", *COMMON, "--out-dir", str(d2)]) == 0
    assert list(d2.glob("*.pt")) == [ckpt2] and _trained_state(ckpt2) == before2
    assert before2[0] == "energy"  # the file stays its trainer's (its scorer too)


def test_python_dash_m_osrkit_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "osrkit", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "bench" in out.stdout and "db" in out.stdout


def test_methods_does_not_import_the_training_loop():
    """The old cycle (engine.train ↔ methods) is gone: the recipes load without the engine's loop."""
    code = ("import sys, osrkit.methods; assert 'osrkit.engine.train' not in sys.modules, 'cycle'; "
            "import osrkit.engine.train; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-1000:]
