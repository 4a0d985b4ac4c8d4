"""Checkpoint files without training: format, safety, durability and messages (fast; mapped for mutmut)."""

import io
import os
import pickle

import pytest
import torch

from osrkit.engine import checkpoint as C


def test_format_v2_round_trip_into_new_folders(tmp_path):
    path = tmp_path / "a" / "b" / "ck.pt"  # parent folders are created
    C.save_checkpoint(path, {"w": torch.arange(4.0), "name": "x"})
    outer = torch.load(path, weights_only=True)
    assert outer["format"] == C.FORMAT and outer["version"] == 2 and len(outer["sha256"]) == 64
    inner = torch.load(io.BytesIO(outer["payload"].numpy().tobytes()), weights_only=True)
    assert inner["version"] == 2 and inner["format"] == C.FORMAT and inner["name"] == "x"
    state = C.load_checkpoint(path)
    assert torch.equal(state["w"], torch.arange(4.0)) and state["version"] == 2


def test_version_1_files_still_load(tmp_path):
    path = tmp_path / "v1.pt"
    torch.save({"format": C.FORMAT, "version": 1, "w": torch.ones(2)}, path)
    assert torch.equal(C.load_checkpoint(path)["w"], torch.ones(2))


def test_messages_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^checkpoint .*none.pt does not exist$"):
        C.load_checkpoint(tmp_path / "none.pt")
    with pytest.raises(ValueError, match=r"is a folder, not a checkpoint file$"):
        C.load_checkpoint(tmp_path)
    text = tmp_path / "t.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"t.pt is not a readable checkpoint \(truncated, corrupt or another file type\): "
                                         r"the unpickler could not parse it$"):
        C.load_checkpoint(text)
    foreign = tmp_path / "f.pt"
    torch.save({"a": 1}, foreign)
    with pytest.raises(ValueError, match=r"f.pt is not an osrkit checkpoint \(no 'format': 'osrkit-checkpoint' entry\)"):
        C.load_checkpoint(foreign)


def test_pickled_code_is_refused_by_name(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": C.FORMAT, "x": Payload()}, evil)
    with pytest.raises(ValueError, match=r"evil.pt was refused: it holds a pickled Python object \((posix|nt)\.system\), "
                                         r"which osrkit never loads \(weights_only\)"):
        C.load_checkpoint(evil)
    assert not marker.exists()
    # the same object inside a v2 payload is refused too (the inner state is loaded with weights_only as well)
    buf = io.BytesIO()
    torch.save({"format": C.FORMAT, "x": Payload()}, buf)
    data = buf.getvalue()
    import hashlib

    wrapped = tmp_path / "wrapped.pt"
    torch.save({"format": C.FORMAT, "version": 2, "sha256": hashlib.sha256(data).hexdigest(),
                "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8)}, wrapped)
    with pytest.raises(ValueError, match=r"was refused"):
        C.load_checkpoint(wrapped)
    assert not marker.exists()


def test_checksum_mismatch_is_named(tmp_path):
    path = tmp_path / "c.pt"
    C.save_checkpoint(path, {"w": torch.zeros(100)})
    outer = torch.load(path, weights_only=True)
    outer["payload"][200] ^= 1  # one bit of the state, re-saved with the old checksum
    torch.save(outer, path)
    with pytest.raises(ValueError, match=r"c.pt is corrupt: its content does not match its SHA-256 checksum"):
        C.load_checkpoint(path)


def test_atomic_text_and_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        C.atomic_write_text(tmp_path / "new" / "r.txt", "héllo")
    finally:
        os.umask(old)
    p = tmp_path / "new" / "r.txt"
    assert p.read_text(encoding="utf-8") == "héllo" and (p.stat().st_mode & 0o777) == 0o644
    assert [f.name for f in p.parent.iterdir()] == ["r.txt"]


def test_failed_writer_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.bin"
    C.atomic_write_bytes(path, lambda f: f.write(b"old"))

    def boom(f):
        f.write(b"half")
        raise pickle.PicklingError("cannot pickle")

    with pytest.raises(pickle.PicklingError):
        C.atomic_write_bytes(path, boom)
    assert path.read_bytes() == b"old" and sorted(f.name for f in tmp_path.iterdir()) == ["x.bin"]


def test_load_model_weights_names_the_mismatch():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"^ck does not fit this Linear: .*shape mismatches \(checkpoint vs model\): "
                                         r"\['weight: \(2, 4\) vs \(2, 3\)'\]"):
        C.load_model_weights(model, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, "ck")
    with pytest.raises(ValueError, match=r"missing keys: \['bias'\], unexpected keys: \['extra'\]"):
        C.load_model_weights(model, {"weight": torch.zeros(2, 3), "extra": torch.zeros(1)}, "ck")
    C.load_model_weights(model, {"weight": torch.ones(2, 3), "bias": torch.zeros(2)})
    assert torch.equal(model.weight.data, torch.ones(2, 3))
