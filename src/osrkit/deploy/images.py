"""Reading new images for prediction: files, folders and .npy arrays, converted to a model's input.

Inputs may be image files (PNG, JPEG, BMP, TIFF, WebP, GIF; any size; grey, RGB, RGBA or palette), folders
(searched recursively) or `.npy` arrays of uint8 images ((H, W), (H, W, C), (N, H, W), (N, H, W, C) or
(N, C, H, W) with C in 1, 3, 4). Every image is converted to the model's channels (grey ↔ RGB by PIL's
rules, alpha dropped) and size: the shorter side resized to the model's size (bilinear, antialiased, as
the tasks resize their data) and the centre cropped to a square; a square image is simply resized.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
ARRAY_SUFFIXES = (".npy",)
_PIL_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "La"}
_PIL_16BIT = {"I;16", "I;16B", "I;16L", "I;16N"}


class InputError(ValueError):
    """An input that cannot be used, with the file and the problem in its message."""


def expand_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Files to read from files and folders (recursively, sorted), and one warning per unusable input."""
    files, warnings = [], []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES + ARRAY_SUFFIXES)
            if not found:
                warnings.append(f"{p}: folder holds no images (looked for {', '.join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            warnings.append(f"{p}: no such file or folder")
    return files, warnings


def _hwc(a: np.ndarray, where: str) -> np.ndarray:
    """(H, W) or (H, W, C) uint8 → (H, W, C); a clear error for other dtypes or channel counts."""
    if a.dtype != np.uint8:
        raise InputError(f"{where}: expected uint8 pixels, got {a.dtype} (scale the array to 0..255 and cast to uint8)")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"{where}: cannot map an image of shape {a.shape} to grey or RGB channels "
                         "(expected (H, W) or (H, W, C) with C = 1, 3 or 4)")
    if min(a.shape[:2]) < 1:
        raise InputError(f"{where}: empty image of shape {a.shape}")
    return a


def array_images(a: np.ndarray, where: str) -> list[tuple[str, np.ndarray]]:
    """(name, (H, W, C) image) for each image in a uint8 array of one image or a batch (see the module doc);
    images of a batch are named where[i]. A 3-D array is one (H, W, C) image when its last axis is 1, 3 or 4,
    else a batch of grey (N, H, W) images."""
    if a.ndim == 2:
        return [(where, _hwc(a, where))]
    if a.ndim == 3:
        if a.shape[2] in (1, 3, 4):
            return [(where, _hwc(a, where))]
        return [(f"{where}[{i}]", _hwc(a[i], f"{where}[{i}]")) for i in range(a.shape[0])]  # (N, H, W) grey
    if a.ndim == 4:
        if a.shape[-1] in (1, 3, 4):
            return [(f"{where}[{i}]", _hwc(a[i], f"{where}[{i}]")) for i in range(a.shape[0])]
        if a.shape[1] in (1, 3, 4):
            return [(f"{where}[{i}]", _hwc(np.moveaxis(a[i], 0, 2), f"{where}[{i}]")) for i in range(a.shape[0])]
    raise InputError(f"{where}: cannot map an array of shape {a.shape} to images "
                     "(expected (H, W), (H, W, C), (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1, 3 or 4)")


def _pil_to_channels(im, channels: int, where: str) -> np.ndarray:
    """A PIL image → (H, W, channels) uint8; 16-bit grey is scaled to 8 bits; other modes are errors."""
    if im.mode in _PIL_16BIT:
        from PIL import Image

        im = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8), mode="L")
    if im.mode not in _PIL_MODES:
        raise InputError(f"{where}: cannot map PIL mode {im.mode!r} to {'grey' if channels == 1 else 'RGB'} "
                         "channels (save it as an 8-bit grey, RGB, RGBA or palette image)")
    im = im.convert("L" if channels == 1 else "RGB")
    return np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], channels)


def _channels(hwc: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, C) uint8 with C in 1, 3, 4 → (H, W, channels), by PIL's conversion rules (alpha dropped)."""
    from PIL import Image

    c = hwc.shape[2]
    if c == channels:
        return hwc
    im = Image.fromarray(hwc[:, :, 0] if c == 1 else hwc, mode={1: "L", 3: "RGB", 4: "RGBA"}[c])
    return _pil_to_channels(im, channels, "array")


def to_model_input(hwc: np.ndarray, channels: int, size: int) -> torch.Tensor:
    """(H, W, C) uint8 → (channels, size, size) uint8: channels mapped, shorter side resized, centre cropped."""
    x = torch.tensor(_channels(hwc, channels)).permute(2, 0, 1)  # a copy: PIL's arrays are read-only
    if tuple(x.shape[1:]) != (size, size):
        x = TF.resize(x, size, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        x = TF.center_crop(x, [size, size])
    return x.contiguous()


def read_file(path: Path, channels: int, size: int) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, (channels, size, size) uint8) for each image in an image file or .npy array; InputError if unusable."""
    if path.suffix.lower() in ARRAY_SUFFIXES:
        try:
            a = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - any failure to parse means an unreadable array file
            raise InputError(f"{path}: not a readable .npy array ({type(e).__name__}: {str(e)[:120]})") from e
        for name, hwc in array_images(a, str(path)):
            yield name, to_model_input(hwc, channels, size)
        return
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            hwc = _pil_to_channels(im, channels, str(path))
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{path}: not a readable image ({type(e).__name__}: {str(e)[:120]})") from e
    yield str(path), to_model_input(hwc, channels, size)
