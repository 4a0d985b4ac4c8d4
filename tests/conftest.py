"""Shared fixtures for the data tests.

SHARED_DATA is the project's real data folder (../shared/data, read-only). The other fixtures write
tiny synthetic data sets into tmp_path in each data set's *real* on-disk format, so that the loaders
(torchvision's included) are exercised end to end without the real files. Each fixture returns the
data root together with the ground truth it wrote (uint8 images as (N, C, H, W) numpy arrays).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

def _find_shared() -> Path:
    """../shared beside the checkout ($OSRKIT_SHARED if set); found from a copy of tests/ nested deeper too
    (mutmut runs the tests from mutants/tests/)."""
    if os.environ.get("OSRKIT_SHARED"):
        return Path(os.environ["OSRKIT_SHARED"])
    here = Path(__file__).resolve()
    for p in here.parents:
        if (p / "shared" / "spec").is_dir():
            return p / "shared"
    return here.parents[1].parent / "shared"


SHARED = _find_shared()
SHARED_DATA = SHARED / "data"
MNIST_RAW = SHARED_DATA / "MNIST" / "raw"
SPEC_SPLITS = SHARED / "spec" / "splits.json"

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read_idx_images(path: Path) -> np.ndarray:
    """An IDX3 image file read directly: 16-byte header, then N*28*28 uint8 (N, 28, 28)."""
    raw = np.fromfile(path, dtype=np.uint8)
    n = int.from_bytes(raw[4:8].tobytes(), "big")
    return raw[16:].reshape(n, 28, 28)


def read_idx_labels(path: Path) -> np.ndarray:
    """An IDX1 label file read directly: 8-byte header, then N uint8 labels."""
    return np.fromfile(path, dtype=np.uint8)[8:].astype(np.int64)


def _pattern_images(n: int, channels: int, size: int, offset: int, rng: np.random.Generator) -> np.ndarray:
    """Random uint8 images (N, C, H, W), each with a unique id in pixel (0, 0, 0) and a marker value
    `offset` in pixel (C-1, H-1, W-1) so that the origin of an image can be told from its content."""
    x = rng.integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n) % 256
    x[:, 0, 0, 1] = np.arange(n) // 256
    x[:, -1, -1, -1] = offset
    return x


def _dump(path: Path, obj: dict) -> None:
    # The real CIFAR files are Python 2 pickles: their str keys come back as str when read with
    # encoding="latin1" (as torchvision does), so str keys here reproduce what the loader sees.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, n_per_batch: int = 6, n_test: int = 20, seed: int = 0) -> SimpleNamespace:
    """ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} in the real pickle format:
    b'data' (N, 3072) uint8 rows, channel-major (R plane, G plane, B plane, each row-major 32x32),
    'labels' a list of ints, meta 'label_names'."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    train_x, train_y = [], []
    for b in range(1, 6):
        x = _pattern_images(n_per_batch, 3, 32, offset=10, rng=rng)
        x[:, 0, 0, 2] = b  # the batch number, to check the batches are concatenated in order
        y = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        _dump(base / f"data_batch_{b}", {
            "batch_label": f"training batch {b} of 5", "labels": y, "data": x.reshape(n_per_batch, 3072),
            "filenames": [f"img_{b}_{i}.png" for i in range(n_per_batch)]})
        train_x.append(x)
        train_y += y
    test_x = _pattern_images(n_test, 3, 32, offset=11, rng=rng)
    test_y = [i % 10 for i in range(n_test)]  # every class present
    _dump(base / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_y,
                                "data": test_x.reshape(n_test, 3072),
                                "filenames": [f"test_{i}.png" for i in range(n_test)]})
    _dump(base / "batches.meta", {"num_cases_per_batch": n_per_batch, "label_names": CIFAR10_NAMES,
                                  "num_vis": 3072})
    return SimpleNamespace(root=root, train_x=np.concatenate(train_x), train_y=np.array(train_y),
                           test_x=test_x, test_y=np.array(test_y), classes=CIFAR10_NAMES)


def write_cifar100(root: Path, n_train: int = 30, per_class_test: int = 1, seed: int = 1) -> SimpleNamespace:
    """ROOT/cifar-100-python/{train, test, meta}: 'data' (N, 3072) uint8, 'fine_labels',
    'coarse_labels', meta 'fine_label_names' and 'coarse_label_names'."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-100-python"
    fine_names = [f"fine{i:02d}" for i in range(100)]
    coarse_names = [f"coarse{i:02d}" for i in range(20)]
    train_x = _pattern_images(n_train, 3, 32, offset=20, rng=rng)
    train_y = [int(v) for v in rng.integers(0, 100, size=n_train)]
    n_test = 100 * per_class_test
    test_x = _pattern_images(n_test, 3, 32, offset=21, rng=rng)
    test_y = [int(v) for v in rng.permutation(np.repeat(np.arange(100), per_class_test))]
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        _dump(base / name, {"filenames": [f"{name}_{i}.png" for i in range(len(y))], "batch_label": name,
                            "fine_labels": y, "coarse_labels": [v // 5 for v in y],
                            "data": x.reshape(len(y), 3072)})
    _dump(base / "meta", {"fine_label_names": fine_names, "coarse_label_names": coarse_names})
    return SimpleNamespace(root=root, train_x=train_x, train_y=np.array(train_y), test_x=test_x,
                           test_y=np.array(test_y), classes=fine_names)


@pytest.fixture
def cifar_root(tmp_path) -> SimpleNamespace:
    """Synthetic CIFAR-10 and CIFAR-100 under one data root."""
    c10 = write_cifar10(tmp_path)
    c100 = write_cifar100(tmp_path)
    return SimpleNamespace(root=tmp_path, cifar10=c10, cifar100=c100)


@pytest.fixture
def svhn_root(tmp_path) -> SimpleNamespace:
    """ROOT/{train,test}_32x32.mat as shipped: X (32, 32, 3, N) uint8 (H, W, C, N), y (N, 1) with 10 for digit 0."""
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    out = SimpleNamespace(root=tmp_path)
    for split, n in (("train", 12), ("test", 11)):
        x = _pattern_images(n, 3, 32, offset=30 if split == "train" else 31, rng=rng)  # (N, C, H, W)
        digits = np.arange(n) % 10  # every digit, 0 included
        y_file = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        savemat(tmp_path / f"{split}_32x32.mat", {"X": np.ascontiguousarray(x.transpose(2, 3, 1, 0)), "y": y_file})
        setattr(out, f"{split}_x", x)
        setattr(out, f"{split}_y", digits.astype(np.int64))
        setattr(out, f"{split}_y_file", y_file.ravel())
    return out


TINY_WNIDS = ["n03000000", "n01000000", "n02000000"]  # written unsorted, as in the real wnids.txt


def _block_image(rgb: tuple[int, int, int], corner: tuple[int, int, int]) -> np.ndarray:
    """64x64 RGB (H, W, 3): a flat colour with a flat 16x16 top-left block of another colour, aligned to
    the JPEG blocks so that a quality-100 JPEG reproduces it to within a few grey levels."""
    im = np.empty((64, 64, 3), dtype=np.uint8)
    im[:] = rgb
    im[:16, :16] = corner
    return im


def _save_jpeg(path: Path, hwc: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(hwc).save(path, format="JPEG", quality=100, subsampling=0)


def write_tinyimagenet(root: Path, val_layout: str = "shipped", n_train: int = 2, n_val: int = 6) -> SimpleNamespace:
    """ROOT/tiny-imagenet-200 with 3 wnids: wnids.txt, words.txt, train/<wnid>/images/<wnid>_<i>.JPEG and
    train/<wnid>/<wnid>_boxes.txt, and val either as shipped (val/images/val_<i>.JPEG +
    val/val_annotations.txt: filename, wnid, 4 bbox ints, tab-separated) or restructured into
    class folders (val/<wnid>/images/val_<i>.JPEG). Real JPEGs (quality 100)."""
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in TINY_WNIDS))
    sorted_wnids = sorted(TINY_WNIDS)
    train = []  # (label, image HWC) in loader order: sorted wnid, then file name
    for w in sorted_wnids:
        label = sorted_wnids.index(w)
        boxes = []
        for i in range(n_train):
            im = _block_image((40 + 60 * label, 30 * i + 20, 100), (250 - 50 * label, 10, 30 + 100 * i))
            _save_jpeg(base / "train" / w / "images" / f"{w}_{i}.JPEG", im)
            boxes.append(f"{w}_{i}.JPEG\t0\t0\t63\t63\n")
            train.append((label, im))
        (base / "train" / w / f"{w}_boxes.txt").write_text("".join(boxes))
    val = {}  # filename -> (label, image HWC)
    ann = []
    for i in range(n_val):
        w = TINY_WNIDS[i % len(TINY_WNIDS)]
        label = sorted_wnids.index(w)
        im = _block_image((20 + 35 * i, 200 - 20 * i, 60), (255 - 30 * i, 128, 10 + 40 * label))
        fname = f"val_{i}.JPEG"
        if val_layout == "shipped":
            _save_jpeg(base / "val" / "images" / fname, im)
        elif val_layout == "folders":
            _save_jpeg(base / "val" / w / "images" / fname, im)
        else:
            raise ValueError(val_layout)
        ann.append(f"{fname}\t{w}\t{i}\t{i + 1}\t{40 + i}\t{50 + i}\n")
        val[fname] = (label, im)
    if val_layout == "shipped":
        (base / "val" / "val_annotations.txt").write_text("".join(ann))
    (base / "test" / "images").mkdir(parents=True)
    return SimpleNamespace(root=root, wnids=sorted_wnids, train=train, val=val)


@pytest.fixture
def tinyimagenet_factory(tmp_path):
    """Call with val_layout="shipped" or "folders"; each call writes a tree under its own folder."""
    def make(val_layout: str = "shipped") -> SimpleNamespace:
        return write_tinyimagenet(tmp_path / f"tin_{val_layout}", val_layout)
    return make


FOLDER_CLASSES = ["bird", "cat", "dog", "fish"]


def write_image_folder(root: Path, with_split: bool, per_class: int = 10, size: int = 32) -> SimpleNamespace:
    """An ImageFolder tree of RGB PNGs: ROOT/<class>/<i>.png, or ROOT/train/<class> and ROOT/test/<class>
    (then per_class train and per_class // 2 test images). Every image is unique: pixel (0, 0) holds
    (class index, image number, 200 for train / 100 for test or unsplit)."""
    from PIL import Image

    rng = np.random.default_rng(3)
    out = SimpleNamespace(root=root, classes=FOLDER_CLASSES, images={})
    parts = [("train", per_class), ("test", max(1, per_class // 2))] if with_split else [("", per_class)]
    for part, n in parts:
        xs, ys = [], []
        for c, name in enumerate(FOLDER_CLASSES):
            folder = (root / part / name) if part else (root / name)
            folder.mkdir(parents=True)
            for i in range(n):
                hwc = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                hwc[0, 0] = (c, i, 200 if part == "train" else 100)
                Image.fromarray(hwc).save(folder / f"{i:03d}.png")
                xs.append(hwc.transpose(2, 0, 1))
                ys.append(c)
        out.images[part or "all"] = (np.stack(xs), np.array(ys, dtype=np.int64))
    return out


@pytest.fixture
def folder_split_root(tmp_path) -> SimpleNamespace:
    """ImageFolder tree with train/ and test/ subfolders (classes bird, cat, dog, fish)."""
    return write_image_folder(tmp_path / "folder_split", with_split=True)


@pytest.fixture
def folder_flat_root(tmp_path) -> SimpleNamespace:
    """ImageFolder tree without train/test subfolders: 10 PNGs in each of bird, cat, dog, fish."""
    return write_image_folder(tmp_path / "folder_flat", with_split=False)


# -- real servers, started by the tests that need them -----------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server on loopback for the whole session (as the `postgres` user when root)."""
    from osrkit.results.pg_server import LocalPostgres

    with LocalPostgres() as pg:
        yield pg


@pytest.fixture
def pg_url(postgres_server) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.new_database()


# -- CPU threads ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): tiny models
    train far faster on one thread on a busy machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
