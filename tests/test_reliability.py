"""Bad input gives one clear line and the right exit status; faults never lose work."""

import errno
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from osrkit.cli import main
from osrkit.engine import checkpoint as C
from osrkit.engine.config import TrainConfig
from osrkit.engine.train import divergence
from conftest import SHARED

TRAIN = ["train", "--task", "digits", "--epochs", "2", "--no-progress"]


def _one_line(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith(("error:", "warning:"))]
    assert len([ln for ln in lines if ln.startswith("error:")]) == 1, err
    line = next(ln for ln in lines if ln.startswith("error:"))
    for n in needles:
        assert n in line, (n, line)
    return line


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    ck = tmp_path_factory.mktemp("rel") / "m.pt"
    assert main([*TRAIN, "--out", str(ck)]) == 0
    return ck


def test_truncated_and_foreign_checkpoints(finished, tmp_path, capsys):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(finished.read_bytes()[:4000])
    text = tmp_path / "notes.pt"
    text.write_text("hello, not a checkpoint\n")
    for path in (cut, text):
        assert main(["eval", str(path)]) == 2
        _one_line(capsys.readouterr().err, str(path), "not a readable checkpoint")


def test_pickled_code_is_refused_and_never_run(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "osrkit-checkpoint", "x": Payload()}, evil)
    assert main(["eval", str(evil)]) == 2
    _one_line(capsys.readouterr().err, str(evil), "was refused", "system")
    assert not marker.exists()


def test_yaml_numbers_are_converted_and_bad_values_named(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("lr: 1e-3\nepochs: '1'\n")
    ck = tmp_path / "y.pt"
    assert main([*TRAIN, "--config", str(good), "--out", str(ck)]) == 0
    cfg = C.load_checkpoint(ck)["osrkit_config"]
    assert cfg["lr"] == 0.001 and isinstance(cfg["lr"], float) and cfg["epochs"] == 2  # the flag wins over YAML
    bad = tmp_path / "bad.yaml"
    for text, needle in (("lr: abc\n", "config field lr='abc': expected a number"),
                         ("momentum: 2\n", "momentum=2.0 is out of range"),
                         ("epochs: 2.5\n", "epochs=2.5: expected a whole number"),
                         ("colour: red\n", "unknown config fields ['colour']")):
        bad.write_text(text)
        assert main([*TRAIN, "--config", str(bad), "--out", str(tmp_path / "z.pt")]) == 2
        _one_line(capsys.readouterr().err, needle)
    assert not (tmp_path / "z.pt").exists()


def test_typed_config_in_python():
    assert TrainConfig().replace(lr="5e-2", seed="3").lr == 0.05
    with pytest.raises(ValueError, match="config field lr=nan: expected a finite number"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(ValueError, match=r"step_epochs\[\]='x'"):
        TrainConfig(step_epochs=["x"])


def test_no_overwrite_without_resume_or_force(finished, tmp_path, capsys):
    before = finished.read_bytes()
    assert main([*TRAIN, "--out", str(finished)]) == 2
    _one_line(capsys.readouterr().err, str(finished), "already exists", "--resume", "--force")
    assert finished.read_bytes() == before
    out = tmp_path / "e.json"
    out.write_text("{}")
    assert main(["eval", str(finished), "--json", str(out)]) == 2
    _one_line(capsys.readouterr().err, str(out), "--force")
    assert main(["eval", str(finished), "--json", str(out), "--force"]) == 0
    assert "auroc" in json.loads(out.read_text())


def test_divergence_is_a_warning_and_a_flag(tmp_path, capsys):
    ck = tmp_path / "d.pt"
    assert main([*TRAIN, "--optimizer", "adam", "--lr", "1e6", "--out", str(ck)]) == 0
    err = capsys.readouterr().err
    warn = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "looks diverged" in warn[0] and "--lr" in warn[0]
    assert "above where it began" in C.load_checkpoint(ck)["diverged"]
    assert main(["eval", str(ck), "--json", str(tmp_path / "e.json")]) == 0
    assert "above where it began" in json.loads((tmp_path / "e.json").read_text())["diverged"]
    # a NaN loss stops training: one line, status 1 (the work failed; the command was fine)
    assert main([*TRAIN, "--optimizer", "sgd", "--lr", "1e6", "--out", str(tmp_path / "n.pt")]) == 1
    _one_line(capsys.readouterr().err, "training diverged", "--lr", "no checkpoint was written")


def test_divergence_rule_by_hand():
    h = [{"train_loss": 1.0, "val_accuracy": 0.9}, {"train_loss": 2.5, "val_accuracy": 0.9}]
    assert "above where it began (1.8" in divergence(h, 1.8, 6)
    assert divergence(h, 3.0, 6) is None
    at_chance = [{"train_loss": 1.0, "val_accuracy": 0.2}]
    assert "at chance (0.200, chance 0.167)" in divergence(at_chance, 1.8, 6)
    assert divergence([{"train_loss": 1.0, "val_accuracy": 0.21}], 1.8, 6) is None  # above 1.25/K
    assert divergence([], 1.0, 6) is None


def test_select_needs_validation_data(tmp_path, capsys):
    assert main([*TRAIN, "--val-fraction", "0", "--select", "best-val-loss", "--out", str(tmp_path / "s.pt")]) == 2
    _one_line(capsys.readouterr().err, "--select best-val-loss needs validation data")
    assert not (tmp_path / "s.pt").exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        bad = tmp_path / "b.pt"
        bad.write_text("x")
        main(["eval", str(bad), "--debug"])


def test_atomic_write_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    C.save_checkpoint(path, {"a": 1})
    before = path.read_bytes()

    def full_disk(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        C.atomic_write_bytes(path, full_disk)
    assert path.read_bytes() == before and C.load_checkpoint(path)["a"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_atomic_write_is_durable_and_leaves_the_umask_alone(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))

    def no_umask(*a):
        raise AssertionError("atomic_write_bytes must not call os.umask")

    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", no_umask)
        C.atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o640  # 0666 less the umask 027
    assert str(tmp_path) in synced  # the folder, after the rename
    assert any(s.endswith(".tmp") for s in synced)  # the file's data, before it


def test_heartbeat_thread_keeps_a_claim_alive_through_a_long_epoch(tmp_path):
    import time

    from osrkit.results.store import Heartbeat, ResultsStore

    a, b = ResultsStore(tmp_path / "g.db"), ResultsStore(tmp_path / "g.db")
    assert a.claim("k")
    with Heartbeat(a, "k", interval=0.05) as hb:
        time.sleep(0.5)  # an "epoch" with no per-epoch heartbeat
        assert not b.claim("k", stale_after=0.2)  # beaten within the last 0.2 s: still alive
    assert hb.beats >= 4
    time.sleep(0.3)
    assert b.claim("k", stale_after=0.2)  # silent since the thread stopped: taken over


def test_a_corrupt_checkpoint_in_the_grid_is_moved_aside_and_its_run_restarts(tmp_path, capsys):
    from osrkit.data.tasks import make_task
    from osrkit.results.grid import plan_grid
    from osrkit.results.store import ResultsStore

    db = tmp_path / "g.db"
    ckdir = tmp_path / "cks"
    specs = plan_grid(["softmax"], ["digits"], [0, 1], [0], "neal", 2, None, "cpu")
    ckdir.mkdir()
    bad = ckdir / specs[1].checkpoint_name(make_task("digits", 1))
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    assert main(["bench", "--methods", "softmax", "--tasks", "digits", "--splits", "0,1", "--epochs", "2",
                 "--db", str(db), "--checkpoint-dir", str(ckdir), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{bad} was unreadable: moved to {bad.name}.corrupt" in " ".join(err.split())
    assert (ckdir / f"{bad.name}.corrupt").read_bytes() == b"PK\x03\x04 truncated zip"
    rows = ResultsStore(db).rows()
    assert sorted(r["split"] for r in rows) == [0, 1] and len(rows) == 2
    moved = [r["extra"].get("corrupt_checkpoint_moved_to") for r in rows]
    assert moved.count(None) == 1 and any(m and m.endswith(".corrupt") for m in moved)


def test_a_flipped_bit_in_a_checkpoint_is_caught_by_its_checksum(finished, tmp_path, capsys):
    data = bytearray(finished.read_bytes())
    for frac in (0.2, 0.5, 0.8):
        flipped = tmp_path / f"flip{frac}.pt"
        b = bytearray(data)
        b[int(len(b) * frac)] ^= 0x04
        flipped.write_bytes(b)
        assert main(["eval", str(flipped)]) == 2
        err = capsys.readouterr().err
        line = _one_line(err, str(flipped))
        assert "SHA-256" in line or "not a readable checkpoint" in line


SHARED_DATA = SHARED / "data"


def corrupt(path: Path, how: str, offset: int | None = None) -> None:
    """Damage a file in place: truncated to a third, one bit flipped (at `offset`, default the middle), or
    replaced by text (another format)."""
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[:len(data) // 3]
    elif how == "bit-flipped":
        data[len(data) // 2 if offset is None else offset] ^= 0x10
    else:
        data = bytearray(b"this is a text file, not the expected format\n" * 3)
    path.write_bytes(bytes(data))


def _data_root(tmp_path: Path) -> Path:
    """A data root of links to the shared files, so one of them can be replaced by a damaged copy."""
    root = tmp_path / "data"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for f in (SHARED_DATA / "MNIST" / "raw").iterdir():
        (root / "MNIST" / "raw" / f.name).symlink_to(f)
    (root / "omniglot.npz").symlink_to(SHARED_DATA / "omniglot.npz")
    return root


def _replace_with_copy(link: Path) -> Path:
    target = link.resolve()
    link.unlink()
    link.write_bytes(target.read_bytes())
    return link


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "wrong-format"])
@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_damaged_idx_files_are_named(name, how, tmp_path, capsys):
    from osrkit.data.tasks import make_task

    root = _data_root(tmp_path)
    bad = _replace_with_copy(root / "MNIST" / "raw" / name)
    corrupt(bad, how)
    with pytest.raises(ValueError) as err:
        make_task("mnist", split=0, data_root=root)
    assert str(bad) in str(err.value)
    assert main(["eval", str(tmp_path / "none.pt")]) == 2  # unrelated commands still fine (and named)
    capsys.readouterr()


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "wrong-format"])
def test_damaged_outlier_npz_is_named(how, tmp_path):
    from osrkit.data.outliers import load_outliers

    root = _data_root(tmp_path)
    bad = _replace_with_copy(root / "omniglot.npz")
    corrupt(bad, how)  # a flip inside a member's data: zip's CRC-32 sees it
    with pytest.raises(ValueError) as err:
        load_outliers("omniglot", root)
    assert str(bad) in str(err.value) and "damaged" in str(err.value)


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "wrong-format"])
def test_damaged_splits_file_is_named(how, tmp_path, monkeypatch, capsys):
    from importlib import resources

    from osrkit.data.splits import _load_file

    bad = tmp_path / "splits.json"
    bad.write_bytes(resources.files("osrkit.data").joinpath("splits.json").read_bytes())
    corrupt(bad, how, offset=0)  # the opening brace
    monkeypatch.setenv("OSRKIT_SPLITS", str(bad))
    _load_file.cache_clear()
    assert main(["run", "--task", "digits", "--splits", "0", "--epochs", "1", "--no-progress"]) == 2
    _one_line(capsys.readouterr().err, str(bad))
    _load_file.cache_clear()


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "wrong-format"])
def test_damaged_results_database_is_named_and_other_files_kept(how, tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["bench", "--methods", "softmax", "--tasks", "digits", "--splits", "0", "--epochs", "1",
                 "--db", str(db), "--no-progress"]) == 0
    capsys.readouterr()
    keep = {p: p.read_bytes() for p in (tmp_path / "r-checkpoints").iterdir()}
    corrupt(db, how, offset=20)  # inside the SQLite header
    for argv in (["table", "--db", str(db)], ["report", "--db", str(db), "--out", str(tmp_path / "x.html")]):
        assert main(argv) == 2
        _one_line(capsys.readouterr().err, str(db))
    assert {p: p.read_bytes() for p in (tmp_path / "r-checkpoints").iterdir()} == keep


def test_nan_validation_loss_is_a_warning_not_a_silent_choice(monkeypatch):
    import warnings

    from osrkit.data.tasks import make_task
    from osrkit.engine import train as T
    from osrkit.engine.pipeline import fit_method
    from osrkit.methods import default_config

    real = T._validate
    calls = {"n": 0}

    def nan_on_second(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return {**out, "val_loss": float("nan")} if calls["n"] == 2 else out

    monkeypatch.setattr(T, "_validate", nan_on_second)
    cfg = default_config("softmax", "digits").replace(epochs=3, select="best-val-loss")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trained = fit_method("softmax", make_task("digits", split=0), cfg, progress=False)
    msgs = [str(w.message) for w in caught if issubclass(w.category, T.DivergenceWarning)]
    assert any("epoch 2: validation loss is nan" in m and "skips this epoch" in m for m in msgs), msgs
    assert trained.history[1]["val_loss"] != trained.history[1]["val_loss"]  # the NaN is kept in the history


def test_cuda_rng_state_is_saved_and_restored(tmp_path, monkeypatch):
    """On a GPU machine the CUDA generators' states go into the checkpoint and come back on resume (simulated
    here: the two CUDA calls are replaced by stand-ins that give and record a state)."""
    from osrkit.data.tasks import make_task
    from osrkit.engine import train as T
    from osrkit.engine.pipeline import fit_method
    from osrkit.methods import default_config

    state = [torch.tensor([1, 2, 3], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(T, "_cuda_rng", lambda: state)
    monkeypatch.setattr(T, "_restore_cuda_rng", lambda s: restored.append(s))
    task = make_task("digits", split=0)
    ck = tmp_path / "g.pt"
    cfg = default_config("softmax", "digits")
    fit_method("softmax", task, cfg.replace(epochs=1), checkpoint=ck, progress=False)
    saved = C.load_checkpoint(ck)["train_state"]["cuda_rng"]
    assert len(saved) == 1 and torch.equal(saved[0], state[0])
    # resuming the unfinished 2-epoch run of the same config hands the saved state back
    ck2 = tmp_path / "g2.pt"
    calls = {"n": 0}
    real_save = C.save_checkpoint

    def stop_after_first(path, st):
        real_save(path, st)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr("osrkit.engine.train.save_checkpoint", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        fit_method("softmax", task, cfg.replace(epochs=2), checkpoint=ck2, progress=False)
    monkeypatch.setattr("osrkit.engine.train.save_checkpoint", real_save)
    fit_method("softmax", task, cfg.replace(epochs=2), checkpoint=ck2, resume=True, progress=False)
    assert len(restored) == 1 and torch.equal(restored[0][0], state[0])
