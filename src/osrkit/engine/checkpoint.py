"""Checkpoints: plain dicts of tensors and plain types, written atomically, read with weights_only=True."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import uuid
from pathlib import Path
from typing import Any

import torch

FORMAT = "osrkit-checkpoint"
VERSION = 2  # 2: the state is stored with its SHA-256 (1: the state itself, still read)


def atomic_write_bytes(path: str | os.PathLike, writer) -> None:
    """Write via `writer(file)` to a new temporary file beside `path`, fsync it, rename it over `path`, then
    fsync the folder so the rename itself survives a crash. The file is created with mode 0666 less the
    process umask (as a plain open would), without touching the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_dir(folder: Path) -> None:
    """fsync a folder (where the platform allows it), making a rename inside it durable."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict (tagged with the osrkit format and version).

    Version 2 wraps the serialised state with its SHA-256, so a bit flipped on disk is an error at load
    instead of silently wrong weights (torch's zip reader does not check tensor data)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buf)
    data = buf.getvalue()
    outer = {"format": FORMAT, "version": VERSION, "sha256": hashlib.sha256(data).hexdigest(),
             "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8)}
    atomic_write_bytes(path, lambda f: torch.save(outer, f))


def _torch_load(source, path: Path) -> Any:
    """torch.load(weights_only=True) with errors that name the file."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refuses pickled code and foreign objects
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found is None:
            raise ValueError(f"{path} is not a readable checkpoint (truncated, corrupt or another file type): "
                             "the unpickler could not parse it") from e
        raise ValueError(f"{path} was refused: it holds a pickled Python object ({found.group(1)}), which osrkit "
                         "never loads (weights_only); an osrkit checkpoint holds only tensors and plain types") from e
    except Exception as e:  # noqa: BLE001 - whatever the reader trips on, the file is not a checkpoint
        raise ValueError(f"{path} is not a readable checkpoint (truncated, corrupt or another file type): "
                         f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from e


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load an osrkit checkpoint safely (weights_only=True, checksum verified); clear errors for missing,
    corrupt and foreign files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a checkpoint file")
    state = _torch_load(path, path)
    if isinstance(state, dict) and state.get("format") == FORMAT and "payload" in state:
        data = state["payload"].numpy().tobytes() if isinstance(state["payload"], torch.Tensor) else b""
        if hashlib.sha256(data).hexdigest() != state.get("sha256"):
            raise ValueError(f"{path} is corrupt: its content does not match its SHA-256 checksum (a flipped bit or "
                             "a damaged copy); restore it from a backup or retrain")
        state = _torch_load(io.BytesIO(data), path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not an osrkit checkpoint (no 'format': '{FORMAT}' entry); "
            "to use the CAC authors' checkpoints, convert them with `osrkit import-cac`")
    return state


def load_model_weights(model: torch.nn.Module, state_dict: dict, source: str = "checkpoint") -> None:
    """load_state_dict with an error that names the mismatch (another architecture or class count)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [f"{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source} does not fit this {type(model).__name__}: it was saved from another architecture "
            f"or number of classes. missing keys: {missing[:5]}, unexpected keys: {unexpected[:5]}, "
            f"shape mismatches (checkpoint vs model): {wrong[:5]}")
    model.load_state_dict(state_dict)
