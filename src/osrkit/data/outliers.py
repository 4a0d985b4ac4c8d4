"""CROSR's outlier (unknown) test sets, as uint8 tensors shaped (N, C, H, W).

Protocol A (MNIST knowns): Omniglot, MNIST-noise, Noise. Protocol B (CIFAR-10 knowns):
ImageNet-crop, ImageNet-resize (the reconstructed TinyImageNet files of the data README),
LSUN-crop, LSUN-resize (from a user's own folder of LSUN images: not obtainable here).

Choices where the spec is unconfirmed:

* Omniglot: drawn from the *evaluation* set by default (as one re-implementation does), inverted
  with ``255 - x`` (white strokes on black, like MNIST), resized to 28x28 with antialiasing.
* MNIST-noise: each MNIST test digit keeps its pixels above ``threshold`` (default 0, so only the
  exactly-black background, about 81% of MNIST's pixels, is replaced); every background pixel
  becomes an i.i.d. uniform integer in [0, 255].
* Noise: i.i.d. uniform integers in [0, 255], one per pixel.

``OUTLIER_SETS`` maps each name to a loader called as ``loader(root, **kwargs)``; for the LSUN
sets ``root`` is the folder of LSUN images itself.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import zipfile
import zlib

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

DATA_README = "the osrkit data README (shared/data/README.md next to the project)"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
OMNIGLOT_SUBSETS = ("evaluation", "background", "all")


def _require_file(root: str | Path, name: str, how: str) -> Path:
    """Path of root/name, or a FileNotFoundError naming the file, the folder and where to get it."""
    path = Path(root).expanduser() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"Outlier-set file {name!r} not found in folder {str(Path(root).expanduser().resolve())!r}. "
            f"{how} See {DATA_README}."
        )
    return path


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) or (N, H, W) uint8 numpy -> (N, C, H, W) uint8 torch tensor (contiguous)."""
    t = torch.from_numpy(np.ascontiguousarray(images))
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.contiguous()


def _npz_arrays(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file; a truncated, damaged or foreign file is an error naming it."""
    try:
        with zipfile.ZipFile(path) as z:  # numpy reads members without checking their CRC-32: check first
            bad = z.testzip()
        if bad is not None:
            raise ValueError(f"{path}: its member {bad} fails its CRC-32 check: the file is damaged; copy it again")
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise ValueError(f"{path} has no arrays {missing} (it holds {f.files}): it is not the expected file")
            return {k: f[k] for k in keys}
    except ValueError as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"{path} is not a readable .npz file ({e}): it is truncated or damaged; copy it again") from e
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path} is not a readable .npz file ({type(e).__name__}: {e}): it is truncated or damaged; "
                         "copy it again") from e


def _omniglot_images(root: str | Path, subset: str) -> np.ndarray:
    """The raw (N, 105, 105) uint8 Omniglot images of one subset (255 = paper, 0 = stroke)."""
    if subset not in OMNIGLOT_SUBSETS:
        raise ValueError(f"subset must be one of {OMNIGLOT_SUBSETS}, got {subset!r}")
    path = _require_file(root, "omniglot.npz", "It holds x_background and x_evaluation (105x105 uint8).")
    if subset == "all":
        f = _npz_arrays(path, ["x_background", "x_evaluation"])
        return np.concatenate([f["x_background"], f["x_evaluation"]])
    return _npz_arrays(path, [f"x_{subset}"])[f"x_{subset}"]


def omniglot(
    root: str | Path, n: int = 10000, size: int = 28, subset: str = "evaluation", seed: int = 0
) -> torch.Tensor:
    """n Omniglot characters, drawn without replacement, inverted to white on black, size x size.

    Returns uint8 (n, 1, size, size). Raises ValueError if n exceeds the subset's size.
    """
    images = _omniglot_images(root, subset)
    if n > len(images):
        raise ValueError(f"asked for n={n} Omniglot images but subset {subset!r} has only {len(images)}")
    idx = np.sort(_rng(seed).choice(len(images), size=n, replace=False))
    picked = torch.from_numpy(255 - images[idx]).unsqueeze(1)
    if picked.shape[-1] != size or picked.shape[-2] != size:
        picked = TF.resize(picked, [size, size], antialias=True)
    return picked.contiguous()


def mnist_noise(mnist_test_images: torch.Tensor, seed: int = 0, threshold: int = 0) -> torch.Tensor:
    """MNIST digits whose background (pixels <= threshold) is replaced by i.i.d. uniform noise in [0, 255].

    Takes uint8 (N, 28, 28) or (N, 1, 28, 28) images (e.g. ``torchvision.datasets.MNIST(...).data``)
    and returns uint8 (N, 1, 28, 28); deterministic from the seed.
    """
    images = torch.as_tensor(mnist_test_images)
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 MNIST images, got {images.dtype}")
    if images.ndim == 3:
        images = images.unsqueeze(1)
    noise = torch.from_numpy(_rng(seed).integers(0, 256, size=tuple(images.shape), dtype=np.uint8))
    return torch.where(images <= threshold, noise, images).contiguous()


def uniform_noise(n: int = 10000, shape: tuple[int, ...] = (1, 28, 28), seed: int = 0) -> torch.Tensor:
    """n images of i.i.d. uniform uint8 pixels in [0, 255], shaped (n, *shape)."""
    return torch.from_numpy(_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8))


def _tinyimagenet(root: str | Path, name: str) -> torch.Tensor:
    path = _require_file(
        root, name, "It is the reconstructed ODIN TinyImageNet outlier set: key x, (10000, 32, 32, 3) uint8 RGB."
    )
    return _to_tensor(_npz_arrays(path, ["x"])["x"])


def imagenet_crop(root: str | Path) -> torch.Tensor:
    """ImageNet-crop (reconstructed): 10,000 random 32x32 TinyImageNet windows, uint8 (N, 3, 32, 32)."""
    return _tinyimagenet(root, "tinyimagenet_crop32.npz")


def imagenet_resize(root: str | Path) -> torch.Tensor:
    """ImageNet-resize (reconstructed): 10,000 TinyImageNet images resized to 32x32, uint8 (N, 3, 32, 32)."""
    return _tinyimagenet(root, "tinyimagenet_resize32.npz")


def _image_files(folder: Path) -> list[Path]:
    """Image files under folder (recursively), in sorted order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load_rgb(path: Path) -> torch.Tensor:
    """One image file as uint8 (3, H, W) RGB."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def lsun_folder(path: str | Path, size: int = 32, mode: str = "crop", n: int | None = None) -> torch.Tensor:
    """LSUN-style outliers from a user folder: each image center-cropped ("crop") or resized ("resize").

    Any image files under ``path`` (recursively, sorted by path) are read with PIL as RGB; "crop" takes
    the central size x size window (zero-padded if smaller), "resize" resizes the whole image to
    size x size (bilinear, antialiased). Returns uint8 (N, 3, size, size); ``n`` keeps the first n.
    """
    if mode not in ("crop", "resize"):
        raise ValueError(f"mode must be 'crop' or 'resize', got {mode!r}")
    folder = Path(path).expanduser()
    files = _image_files(folder) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"No image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found in folder "
            f"{str(folder.resolve())!r}. LSUN is not shipped with osrkit: download LSUN (or the ODIN "
            f"LSUN test images) yourself and point this at the folder; see {DATA_README}."
        )
    files = files[:n] if n is not None else files
    out = []
    for f in files:
        img = _load_rgb(f)
        if mode == "crop":
            img = TF.center_crop(img, [size, size])
        else:
            img = TF.resize(img, [size, size], antialias=True)
        out.append(img)
    return torch.stack(out).contiguous()


def load_mnist_test(root: str | Path) -> torch.Tensor:
    """The 10,000 MNIST test images, uint8 (10000, 28, 28), from root/MNIST/raw via torchvision."""
    from torchvision.datasets import MNIST

    try:
        return MNIST(root=str(root), train=False, download=False).data
    except RuntimeError as err:
        raise FileNotFoundError(
            f"MNIST test images not found under folder {str(Path(root).expanduser().resolve())!r} "
            f"(expected MNIST/raw/t10k-images-idx3-ubyte); use torchvision.datasets.MNIST(download=True) "
            f"or see {DATA_README}."
        ) from err


def _mnist_noise_from_root(root: str | Path, seed: int = 0, threshold: int = 0) -> torch.Tensor:
    return mnist_noise(load_mnist_test(root), seed=seed, threshold=threshold)


def _noise_from_root(
    root: str | Path | None = None, n: int = 10000, shape: tuple[int, ...] = (1, 28, 28), seed: int = 0
) -> torch.Tensor:
    return uniform_noise(n=n, shape=shape, seed=seed)


OUTLIER_SETS: dict[str, Callable[..., torch.Tensor]] = {
    "omniglot": omniglot,
    "mnist-noise": _mnist_noise_from_root,
    "noise": _noise_from_root,
    "imagenet-crop": imagenet_crop,
    "imagenet-resize": imagenet_resize,
    "lsun-crop": partial(lsun_folder, mode="crop"),
    "lsun-resize": partial(lsun_folder, mode="resize"),
}


def load_outliers(name: str, root: str | Path | None = None, **kwargs) -> torch.Tensor:
    """Load an outlier set by name: ``OUTLIER_SETS[name](root, **kwargs)``."""
    if name not in OUTLIER_SETS:
        raise KeyError(f"unknown outlier set {name!r}; choose from {sorted(OUTLIER_SETS)}")
    return OUTLIER_SETS[name](root, **kwargs)


__all__ = [
    "OUTLIER_SETS",
    "load_outliers",
    "omniglot",
    "mnist_noise",
    "uniform_noise",
    "imagenet_crop",
    "imagenet_resize",
    "lsun_folder",
    "load_mnist_test",
]
