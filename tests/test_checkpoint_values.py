"""Files osrkit reads and writes, checked value by value: checkpoints (temporary names, device mapping, the
weights_only guarantee, the exact messages of every refusal) and the split lists ($OSRKIT_SPLITS, messages,
where the duplicate-split warning points). Fast: no training."""

import hashlib
import io
import json
import os
import re
import sys
import warnings

import pytest
import torch

from osrkit.data import splits as S
from osrkit.engine import checkpoint as C

# ---------------------------------------------------------------- atomic writes


def test_temporary_file_is_a_hidden_sibling_with_a_12_hex_digit_tag(tmp_path):
    seen = []

    def writer(f):
        seen.extend(p.name for p in tmp_path.iterdir())
        f.write(b"data")

    C.atomic_write_bytes(tmp_path / "x.bin", writer)
    assert len(seen) == 1 and re.fullmatch(r"\.x\.bin\.[0-9a-f]{12}\.tmp", seen[0]), seen
    assert (tmp_path / "x.bin").read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


# ---------------------------------------------------------------- loading


def _save_as_if_on_cuda(obj, path, monkeypatch):
    """torch.save with every storage tagged 'cuda:0', as a checkpoint written on a GPU machine is."""
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(obj, path)


def test_gpu_written_checkpoints_load_onto_the_cpu(tmp_path, monkeypatch):
    path = tmp_path / "gpu.pt"
    _save_as_if_on_cuda({"format": C.FORMAT, "version": 1, "w": torch.arange(3.0)}, path, monkeypatch)
    state = C.load_checkpoint(path)
    assert state["w"].device.type == "cpu" and torch.equal(state["w"], torch.arange(3.0))


def test_weights_only_holds_even_when_the_environment_asks_torch_for_full_pickle(tmp_path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns torch.load's *default* into full unpickling; osrkit passes
    weights_only=True explicitly, so pickled code is still refused (and never runs)."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": C.FORMAT, "x": Payload()}, evil)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ValueError, match=r"evil\.pt was refused: it holds a pickled Python object"):
        C.load_checkpoint(evil)
    assert not marker.exists()


def _fail_reading(monkeypatch, exc):
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(torch, "load", boom)


def test_reader_failure_message_gives_the_error_type_and_its_first_line(tmp_path, monkeypatch):
    path = tmp_path / "r.pt"
    path.write_bytes(b"x")
    _fail_reading(monkeypatch, RuntimeError("zip central directory not found\nsecond line of detail"))
    with pytest.raises(ValueError) as info:
        C.load_checkpoint(path)
    assert str(info.value) == (f"{path} is not a readable checkpoint (truncated, corrupt or another file type): "
                               "RuntimeError: zip central directory not found")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_reader_failure_message_is_cut_at_200_characters(tmp_path, monkeypatch):
    path = tmp_path / "r.pt"
    path.write_bytes(b"x")
    _fail_reading(monkeypatch, OSError("a" * 150 + "b" * 150))
    with pytest.raises(ValueError) as info:
        C.load_checkpoint(path)
    assert str(info.value).endswith(": OSError: " + "a" * 150 + "b" * 50)


def test_reader_failure_without_a_message_ends_after_the_type(tmp_path, monkeypatch):
    path = tmp_path / "r.pt"
    path.write_bytes(b"x")
    _fail_reading(monkeypatch, EOFError())
    with pytest.raises(ValueError) as info:
        C.load_checkpoint(path)
    assert str(info.value) == (f"{path} is not a readable checkpoint (truncated, corrupt or another file type): "
                               "EOFError: ")


def test_real_truncated_file_is_named_with_the_reader_error(tmp_path):
    path = tmp_path / "cut.pt"
    C.save_checkpoint(path, {"w": torch.zeros(50)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"cut\.pt is not a readable checkpoint \(truncated, corrupt or another "
                                         r"file type\): RuntimeError: \S"):
        C.load_checkpoint(path)


def _outer(path, payload, sha):
    torch.save({"format": C.FORMAT, "version": 2, "sha256": sha, "payload": payload}, path)


CORRUPT = (r"is corrupt: its content does not match its SHA-256 checksum \(a flipped bit or a damaged copy\); "
           r"restore it from a backup or retrain$")


def test_corrupt_message_in_full(tmp_path):
    path = tmp_path / "c.pt"
    _outer(path, torch.tensor([1, 2, 3], dtype=torch.uint8), "0" * 64)
    with pytest.raises(ValueError, match=r"^" + re.escape(str(path)) + " " + CORRUPT):
        C.load_checkpoint(path)


def test_payload_that_is_not_a_tensor_is_corrupt_not_a_crash(tmp_path):
    path = tmp_path / "p.pt"
    _outer(path, "not bytes", hashlib.sha256(b"not bytes").hexdigest())
    with pytest.raises(ValueError, match=CORRUPT):
        C.load_checkpoint(path)


def test_payload_that_is_not_a_tensor_counts_as_no_bytes(tmp_path):
    """A non-tensor payload is read as zero bytes: with the checksum of b"" it passes the check and the empty
    inner file is then reported as unreadable (not as a checksum mismatch)."""
    path = tmp_path / "e.pt"
    _outer(path, None, hashlib.sha256(b"").hexdigest())
    with pytest.raises(ValueError, match=r"e\.pt is not a readable checkpoint") as info:
        C.load_checkpoint(path)
    assert "corrupt:" not in str(info.value)


def test_unreadable_inner_state_names_the_file(tmp_path):
    data = b"garbage, not a torch file"
    path = tmp_path / "inner.pt"
    _outer(path, torch.frombuffer(bytearray(data), dtype=torch.uint8), hashlib.sha256(data).hexdigest())
    with pytest.raises(ValueError, match=r"^" + re.escape(str(path)) + r" is not a readable checkpoint"):
        C.load_checkpoint(path)


def test_foreign_checkpoint_message_points_to_import_cac(tmp_path):
    path = tmp_path / "cac.pt"
    torch.save({"net": {"w": torch.zeros(1)}}, path)
    with pytest.raises(ValueError) as info:
        C.load_checkpoint(path)
    assert str(info.value) == (f"{path} is not an osrkit checkpoint (no 'format': 'osrkit-checkpoint' entry); "
                               "to use the CAC authors' checkpoints, convert them with `osrkit import-cac`")


def test_save_then_load_keeps_every_value_and_adds_the_tags(tmp_path):
    path = tmp_path / "ok.pt"
    state = {"w": torch.tensor([[1.5, -2.0]]), "epoch": 7, "name": "run", "nested": {"a": [1, 2]}}
    C.save_checkpoint(path, state)
    got = C.load_checkpoint(path)
    assert got.keys() == {"format", "version", "w", "epoch", "name", "nested"}
    assert got["format"] == "osrkit-checkpoint" and got["version"] == 2 and got["epoch"] == 7
    assert torch.equal(got["w"], state["w"]) and got["nested"] == {"a": [1, 2]} and got["name"] == "run"
    outer = torch.load(path, weights_only=True)
    inner = outer["payload"].numpy().tobytes()
    assert outer["sha256"] == hashlib.sha256(inner).hexdigest()


# ---------------------------------------------------------------- load_model_weights


def _six_param_model():
    return torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))


def test_default_source_name_is_checkpoint():
    with pytest.raises(ValueError, match=r"^checkpoint does not fit this Linear: it was saved from another "
                                         r"architecture or number of classes\."):
        C.load_model_weights(torch.nn.Linear(2, 1), {"weight": torch.zeros(1, 3), "bias": torch.zeros(1)})


def test_only_missing_or_only_unexpected_keys_are_refused_by_name():
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match=r"missing keys: \['bias'\], unexpected keys: \[\], shape mismatches "
                                         r"\(checkpoint vs model\): \[\]$"):
        C.load_model_weights(model, {"weight": torch.zeros(1, 2)}, "ck")
    with pytest.raises(ValueError, match=r"missing keys: \[\], unexpected keys: \['extra'\]"):
        C.load_model_weights(model, {"weight": torch.zeros(1, 2), "bias": torch.zeros(1), "extra": torch.ones(1)})


def test_mismatch_lists_show_at_most_five_entries():
    model = _six_param_model()
    keys = list(model.state_dict())
    assert len(keys) == 6
    with pytest.raises(ValueError) as info:
        C.load_model_weights(model, {}, "ck")
    assert f"missing keys: {keys[:5]}, unexpected" in str(info.value)
    extra = {**model.state_dict(), **{f"x{i}": torch.zeros(1) for i in range(6)}}
    with pytest.raises(ValueError) as info:
        C.load_model_weights(model, extra, "ck")
    assert f"unexpected keys: {[f'x{i}' for i in range(5)]}, shape" in str(info.value)
    wrong = {k: torch.zeros(*v.shape, 3) for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as info:
        C.load_model_weights(model, wrong, "ck")
    listed = re.search(r"shape mismatches \(checkpoint vs model\): (\[.*\])$", str(info.value)).group(1)
    assert listed.count(" vs ") == 5 and keys[4] in listed and keys[5] not in listed


# ---------------------------------------------------------------- split lists


def _write_splits(tmp_path, doc, name="my_splits.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_osrkit_splits_environment_variable_selects_the_file(tmp_path, monkeypatch):
    doc = {"families": {"mine": {"splits": {"mnist": [{"known": [3, 1], "unknown": [0]}]}}}}
    monkeypatch.setenv("OSRKIT_SPLITS", str(_write_splits(tmp_path, doc)))
    assert S.split_families() == ["mine"]
    assert S.split_tasks("mine") == ["mnist"]
    assert S.get_split("mine", "digits", 0) == ([3, 1], [0])  # alias of mnist
    monkeypatch.setenv("OSRKIT_SPLITS", "")  # empty: the package's own lists
    assert S.split_families() == ["arpl", "neal"]


def test_unknown_family_message_lists_the_families():
    with pytest.raises(ValueError) as info:
        S.get_split("osrci", "mnist", 0)
    assert str(info.value) == "unknown split family 'osrci'; choose one of: arpl, neal"


def test_unknown_task_message_lists_the_tasks_and_aliases():
    with pytest.raises(ValueError) as info:
        S.num_splits("neal", "imagenet")
    assert str(info.value) == ("split family 'neal' has no task 'imagenet'; tasks: cifar+10, cifar+50, cifar10, "
                               "mnist, svhn, tinyimagenet (plus aliases digits, fashion-mnist)")


def test_duplicate_warning_lists_all_twins():
    with pytest.warns(UserWarning) as record:
        S.get_split("neal", "cifar+50", 0)
    msgs = [str(w.message) for w in record]
    assert ("neal/cifar+50 split 0 has the same known and unknown classes as split(s) 1, 2, 3, 4 (a known quirk "
            "of the neal family): their results are not independent") in msgs


def test_duplicate_warning_points_at_the_caller():
    """stacklevel=2: the warning names the line that called get_split, not splits.py. (When get_split is wrapped,
    as mutmut's trampoline does, the calling frame is the wrapper's, whose code is get_split.__code__.)"""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        S.get_split("arpl", "svhn", 1)
    assert len(record) == 1
    w = record[0]
    if hasattr(S.get_split, "__wrapped__"):
        assert w.filename == S.get_split.__code__.co_filename
    else:
        assert (w.filename, w.lineno) == (__file__, line)
