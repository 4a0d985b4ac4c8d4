"""Data sets by name, held in memory as uint8 tensors (N, C, H, W) for the batched fast path.

Each class follows torchvision's shape (`root`, `train`, `download`, `transform`) and exposes
`data` (uint8 N,C,H,W), `targets` (int64 N) and `classes`. The torchvision-backed ones wrap
torchvision's own loaders (which check file existence but, here, not md5 sums, so that small
files in the real format load too).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision
from torch.utils.data import Dataset

DATA_README = "https://github.com/osrkit/osrkit#data (or ../shared/data/README.md)"


def default_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """--data-root, else $OSRKIT_DATA, else ~/.cache/osrkit."""
    if data_root:
        return Path(data_root).expanduser()
    env = os.environ.get("OSRKIT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "osrkit"


class MissingDataError(FileNotFoundError):
    """A data set's files are not where osrkit looked; the message says what to put where."""


class CorruptDataError(ValueError):
    """A data file is present but truncated, damaged or of another format; the message names it."""


_IDX_DTYPES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}  # type code -> bytes per value


# the canonical MNIST files' md5 (../shared/data/README.md; the labels' from the same verified copy)
MNIST_MD5 = {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
             "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
             "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
             "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"}
_VERIFIED: dict[tuple, bool] = {}


def check_md5(path: Path, expected: str) -> None:
    """A file against its known md5 (once per file version and process): catches flipped bits in the data."""
    import hashlib

    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != expected:
        raise CorruptDataError(f"{path} differs from the canonical file (md5 {h.hexdigest()}, expected {expected}): "
                               "a damaged copy; copy it again or remove it and use --download")
    _VERIFIED[key] = True


def check_idx(path: Path, ndim: int) -> None:
    """An IDX file's header (magic, type, dimensions) and its size against what the header promises."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    problem = None
    if len(head) < 4 + 4 * ndim or head[0] != 0 or head[1] != 0:
        problem = "its header is not an IDX header"
    elif head[2] not in _IDX_DTYPES or head[3] != ndim:
        problem = f"its header says type 0x{head[2]:02x} with {head[3]} dimensions, expected {ndim}"
    else:
        dims = [int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
        want = 4 + 4 * ndim + int(np.prod(dims)) * _IDX_DTYPES[head[2]]
        if size != want:
            problem = f"it has {size} bytes, its header {dims} promises {want} (truncated or damaged)"
    if problem:
        raise CorruptDataError(f"{path} is not a valid IDX file: {problem}; copy it again (for MNIST, the md5 sums "
                               "are in ../shared/data/README.md) or remove it and use --download")


def _missing(name: str, root: Path, expected: list[str], hint: str = "") -> MissingDataError:
    files = "\n  ".join(str(root / e) for e in expected)
    return MissingDataError(
        f"{name} files not found under data root {root}. Expected:\n  {files}\n"
        f"Put the files there, pass --data-root DIR (or set OSRKIT_DATA), "
        f"or use --download where the data set can be downloaded. {hint}".rstrip()
    )


class ImageSet(Dataset):
    """In-memory uint8 image set; `transform` (if any) is applied to a float image in [0, 1]."""

    data: torch.Tensor
    targets: torch.Tensor
    classes: list[str]
    source: str | None = None  # where the images came from, where a data set has several sources
    label: str | None = None  # how results name the data when it is not the canonical copy
    downloadable: bool = False
    expected_files: tuple[str, ...] = ()

    def __init__(self, root=None, train: bool = True, download: bool = False, transform: Callable | None = None):
        self.root = default_data_root(root)
        self.train = train
        self.transform = transform
        if download and not self.downloadable:
            raise ValueError(f"{type(self).__name__} cannot be downloaded; place its files under {self.root}")
        self.data, self.targets, self.classes = self._load(download)
        if self.data.dtype != torch.uint8 or self.data.ndim != 4:
            raise ValueError(f"{type(self).__name__}: expected uint8 (N,C,H,W) images, got {self.data.dtype} {tuple(self.data.shape)}")

    def _load(self, download: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, i: int):
        img = self.data[i].float() / 255.0
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[i])

    @classmethod
    def files_present(cls, root=None) -> bool:
        r = default_data_root(root)
        return bool(cls.expected_files) and all((r / f).exists() for f in cls.expected_files)


def _nchw(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x))
    if t.ndim == 3:
        t = t.unsqueeze(1)
    return t.contiguous()


class MNIST(ImageSet):
    """MNIST via torchvision (files under ROOT/MNIST/raw)."""

    downloadable = True
    tv_class = torchvision.datasets.MNIST
    folder = "MNIST"
    expected_files = tuple(f"MNIST/raw/{f}" for f in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))

    def _load(self, download):
        prefix = "train" if self.train else "t10k"
        for name, ndim in ((f"{prefix}-images-idx3-ubyte", 3), (f"{prefix}-labels-idx1-ubyte", 1)):
            path = self.root / self.folder / "raw" / name
            if path.exists():
                check_idx(path, ndim)
                if type(self) is MNIST:
                    check_md5(path, MNIST_MD5[name])
        try:
            ds = self.tv_class(root=str(self.root), train=self.train, download=download)
        except RuntimeError as e:
            raise _missing(type(self).__name__, self.root, list(self.expected_files)) from e
        return _nchw(ds.data), torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes)


class FashionMNIST(MNIST):
    """Fashion-MNIST via torchvision (files under ROOT/FashionMNIST/raw)."""

    tv_class = torchvision.datasets.FashionMNIST
    folder = "FashionMNIST"
    expected_files = tuple(f"FashionMNIST/raw/{f}" for f in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))


class _ExistenceOnly:
    """torchvision CIFAR with existence checks instead of md5 sums, so small real-format files load."""

    def _check_integrity(self) -> bool:
        base = Path(self.root) / self.base_folder
        return all((base / name).exists() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        import pickle

        path = Path(self.root) / self.base_folder / self.meta["filename"]
        if not path.exists():
            raise RuntimeError(f"{path} not found")
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
        self.classes = data[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _CIFAR10Files(_ExistenceOnly, torchvision.datasets.CIFAR10):
    pass


class _CIFAR100Files(_ExistenceOnly, torchvision.datasets.CIFAR100):
    pass


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# where an ImageFolder copy of CIFAR-10 (train/<class>/, test/<class>/) is looked for, under the data root
CIFAR10_FOLDERS = ("cifar10-jpeg", "cifar10", ".")


class CIFAR10(ImageSet):
    """CIFAR-10 via torchvision (python pickle batches under ROOT/cifar-10-batches-py), or, where those are
    absent, an ImageFolder copy (ROOT/cifar10-jpeg/, ROOT/cifar10/ or ROOT itself holding train/<class>/ and
    test/<class>/ with the ten class names), such as ../shared/data/cifar10-jpeg.tar.gz extracted. `source`
    records which: "pickles", or "image folder" (labelled "CIFAR-10 (JPEG copy)" when the files are JPEG)."""

    downloadable = True
    tv_class = _CIFAR10Files
    expected_files = tuple(f"cifar-10-batches-py/{f}" for f in (
        "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"))

    @classmethod
    def image_folder(cls, root=None) -> Path | None:
        """The first CIFAR-10 ImageFolder copy under the data root (train/ and test/ with the ten classes)."""
        r = default_data_root(root)
        for sub in CIFAR10_FOLDERS:
            base = r / sub
            if all((base / part / c).is_dir() for part in ("train", "test") for c in CIFAR10_CLASSES):
                return base
        return None

    @classmethod
    def files_present(cls, root=None) -> bool:
        if cls is not CIFAR10:
            return super().files_present(root)
        return super().files_present(root) or cls.image_folder(root) is not None

    def _load(self, download):
        self.source = "pickles"
        folder = None if type(self) is not CIFAR10 or download or super().files_present(self.root) \
            else self.image_folder(self.root)
        if folder is not None:
            return self._load_folder(folder)
        if download:
            getattr(torchvision.datasets, type(self).__name__)(root=str(self.root), train=self.train, download=True)
        try:
            ds = self.tv_class(root=str(self.root), train=self.train, download=False)
        except RuntimeError as e:
            raise _missing(type(self).__name__, self.root, list(self.expected_files)) from e
        data = torch.as_tensor(ds.data).permute(0, 3, 1, 2).contiguous()
        return data, torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes)


    def _load_folder(self, folder: Path):
        ds = torchvision.datasets.ImageFolder(str(folder / ("train" if self.train else "test")))
        if tuple(ds.classes) != CIFAR10_CLASSES:
            raise ValueError(f"{folder}: a CIFAR-10 image folder needs exactly the class folders "
                             f"{', '.join(CIFAR10_CLASSES)}; found {', '.join(ds.classes)}")
        paths = [Path(p) for p, _ in ds.samples]
        jpeg = all(p.suffix.lower() in (".jpg", ".jpeg") for p in paths)
        self.source = "image folder (JPEG)" if jpeg else "image folder"
        self.label = "CIFAR-10 (JPEG copy)" if jpeg else "CIFAR-10 (image folder)"
        images = np.stack([_read_rgb(p, 32) for p in paths])
        labels = torch.as_tensor([y for _, y in ds.samples], dtype=torch.int64)
        return torch.as_tensor(images).permute(0, 3, 1, 2).contiguous(), labels, list(CIFAR10_CLASSES)


class CIFAR100(CIFAR10):
    """CIFAR-100 (fine labels) via torchvision (ROOT/cifar-100-python) — the unknowns of CIFAR+N."""

    tv_class = _CIFAR100Files
    expected_files = tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta"))


class _SVHNFiles(torchvision.datasets.SVHN):
    def _check_integrity(self) -> bool:
        return (Path(self.root) / self.filename).exists()


class SVHN(ImageSet):
    """SVHN via torchvision (ROOT/train_32x32.mat, ROOT/test_32x32.mat); digit 0 is label 0."""

    downloadable = True
    expected_files = ("train_32x32.mat", "test_32x32.mat")

    def _load(self, download):
        split = "train" if self.train else "test"
        if download:
            torchvision.datasets.SVHN(root=str(self.root), split=split, download=True)
        try:
            ds = _SVHNFiles(root=str(self.root), split=split, download=False)
        except RuntimeError as e:
            raise _missing("SVHN", self.root, [f"{split}_32x32.mat"]) from e
        return torch.as_tensor(ds.data).contiguous(), torch.as_tensor(ds.labels, dtype=torch.int64), [str(i) for i in range(10)]


class Digits(ImageSet):
    """scikit-learn's 8x8 digits (bundled, no download): a fixed, stratified 2/3 train, 1/3 test split."""

    expected_files = ()

    @classmethod
    def files_present(cls, root=None) -> bool:
        return True

    def _load(self, download):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        idx_train, idx_test = train_test_split(
            np.arange(len(d.target)), test_size=1 / 3, random_state=0, stratify=d.target)
        idx = idx_train if self.train else idx_test
        images = np.round(d.images[idx] * (255.0 / 16.0)).astype(np.uint8)
        return _nchw(images), torch.as_tensor(d.target[idx], dtype=torch.int64), [str(i) for i in range(10)]


def _read_rgb(path: Path, size: int | None = None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size, size):
            im = torchvision.transforms.functional.center_crop(
                torchvision.transforms.functional.resize(im, size), size)
        return np.asarray(im, dtype=np.uint8)


_IMG_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMG_EXT)


class TinyImageNet(ImageSet):
    """TinyImageNet-200 (ROOT/tiny-imagenet-200): classes are the sorted 200 wnids.

    The validation folder is read as shipped (val/images + val/val_annotations.txt) or restructured
    into class folders (val/<wnid>/images/*.JPEG or val/<wnid>/*.JPEG). `train=False` gives val.
    """

    folder = "tiny-imagenet-200"
    expected_files = ("tiny-imagenet-200/wnids.txt", "tiny-imagenet-200/train", "tiny-imagenet-200/val")

    def _load(self, download):
        base = self.root / self.folder
        if not all((self.root / f).exists() for f in self.expected_files):
            raise _missing("TinyImageNet", self.root, list(self.expected_files),
                           "Get tiny-imagenet-200.zip from http://cs231n.stanford.edu/ and unzip it there.")
        wnids = sorted((base / "wnids.txt").read_text().split())
        index = {w: i for i, w in enumerate(wnids)}
        items = self._train_items(base, index) if self.train else self._val_items(base, index)
        if not items:
            raise _missing("TinyImageNet", self.root, [f"{self.folder}/{'train' if self.train else 'val'}/..."])
        images = np.stack([_read_rgb(p, 64) for p, _ in items])
        labels = torch.tensor([y for _, y in items], dtype=torch.int64)
        return torch.as_tensor(images).permute(0, 3, 1, 2).contiguous(), labels, wnids

    @staticmethod
    def _train_items(base: Path, index: dict) -> list[tuple[Path, int]]:
        return [(p, index[w]) for w in sorted(index) for p in _images_in(base / "train" / w)]

    @staticmethod
    def _val_items(base: Path, index: dict) -> list[tuple[Path, int]]:
        val = base / "val"
        ann = val / "val_annotations.txt"
        if (val / "images").is_dir() and ann.exists():
            rows = [line.split("\t")[:2] for line in ann.read_text().splitlines() if line.strip()]
            return [(val / "images" / f, index[w]) for f, w in sorted(rows) if (val / "images" / f).exists()]
        return [(p, index[w]) for w in sorted(index) for p in _images_in(val / w)]


class ImageFolderSet(ImageSet):
    """Any ImageFolder tree (ROOT/<class>/*.png), or ROOT/train/<class> and ROOT/test/<class>.

    Without train/test subfolders, a seeded 80/20 per-class split is used. Images are read with PIL,
    resized and centre-cropped to `image_size`, RGB.
    """

    def __init__(self, root, train: bool = True, download: bool = False, transform=None,
                 image_size: int = 32, seed: int = 0):
        self.image_size, self.seed = image_size, seed
        if root is None:
            raise ValueError("the folder data set needs --data-root pointing at an image folder tree")
        super().__init__(root, train, download, transform)

    def _load(self, download):
        split_dir = self.root / ("train" if self.train else "test")
        has_split = (self.root / "train").is_dir() and (self.root / "test").is_dir()
        base = split_dir if has_split else self.root
        if not base.is_dir():
            raise _missing("folder", self.root, ["<class name>/<image files>"])
        try:
            ds = torchvision.datasets.ImageFolder(str(base))
        except FileNotFoundError as e:
            raise _missing("folder", self.root, ["<class name>/<image files>"]) from e
        if has_split:
            train_classes = sorted(p.name for p in (self.root / "train").iterdir() if p.is_dir())
            if list(ds.classes) != train_classes:
                raise ValueError(f"{self.root}: train/ and test/ must hold the same class folders; "
                                 f"train has {train_classes}, {'train' if self.train else 'test'} has {ds.classes}")
        paths = [Path(p) for p, _ in ds.samples]
        labels = np.array([y for _, y in ds.samples], dtype=np.int64)
        if not has_split:
            keep = self._split_mask(labels)
            paths = [p for p, k in zip(paths, keep) if k]
            labels = labels[keep]
        images = np.stack([_read_rgb(p, self.image_size) for p in paths])
        return torch.as_tensor(images).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(labels), list(ds.classes)

    def _split_mask(self, labels: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        test = np.zeros(len(labels), dtype=bool)
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            test[rng.permutation(idx)[: max(1, len(idx) // 5)]] = True
        return ~test if self.train else test


DATASETS: dict[str, type[ImageSet]] = {
    "mnist": MNIST,
    "fashion-mnist": FashionMNIST,
    "svhn": SVHN,
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "tinyimagenet": TinyImageNet,
    "digits": Digits,
    "folder": ImageFolderSet,
}


def get_dataset_class(name: str) -> type[ImageSet]:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def load_dataset(name: str, root=None, train: bool = True, download: bool = False, **kwargs) -> ImageSet:
    """Instantiate a data set by name."""
    return get_dataset_class(name)(root=root, train=train, download=download, **kwargs)
