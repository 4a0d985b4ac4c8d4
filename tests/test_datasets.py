"""Data set loaders: real MNIST from ../shared/data, and tiny synthetic files in each data set's real
on-disk format (CIFAR pickles, SVHN .mat, TinyImageNet JPEG tree, ImageFolder PNG tree)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from conftest import MNIST_RAW, SHARED_DATA, read_idx_images, read_idx_labels
from osrkit.data import datasets as D
from osrkit.data.datasets import MissingDataError, default_data_root, load_dataset


def _hashes(x) -> Counter:
    x = np.asarray(x)
    return Counter(img.tobytes() for img in x)


# --------------------------------------------------------------------------------------- MNIST (real)


@pytest.fixture(scope="module")
def mnist_train():
    return load_dataset("mnist", SHARED_DATA, train=True)


@pytest.fixture(scope="module")
def mnist_test():
    return load_dataset("mnist", SHARED_DATA, train=False)


def test_mnist_real_shapes_and_labels(mnist_train, mnist_test):
    assert isinstance(mnist_train, D.MNIST)
    assert len(mnist_train) == 60000 and len(mnist_test) == 10000
    for ds, n in ((mnist_train, 60000), (mnist_test, 10000)):
        assert ds.data.dtype == torch.uint8
        assert tuple(ds.data.shape) == (n, 1, 28, 28)
        assert ds.targets.dtype == torch.int64 and tuple(ds.targets.shape) == (n,)
        assert len(ds.classes) == 10
    assert mnist_train.targets[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist_test.targets[:5].tolist() == [7, 2, 1, 0, 4]


def test_mnist_goes_through_torchvision(monkeypatch):
    calls = []
    real = D.MNIST.tv_class

    def init(self, *a, **k):
        calls.append(k)
        real.__init__(self, *a, **k)

    Spy = type("MNIST", (real,), {"__init__": init})  # torchvision derives the folder from the class name

    monkeypatch.setattr(D.MNIST, "tv_class", Spy)
    ds = load_dataset("mnist", SHARED_DATA, train=False)
    assert len(ds) == 10000
    assert calls and calls[0]["root"] == str(SHARED_DATA) and calls[0]["train"] is False


def test_mnist_pixels_equal_the_idx_files(mnist_train, mnist_test):
    train_raw = read_idx_images(MNIST_RAW / "train-images-idx3-ubyte")
    test_raw = read_idx_images(MNIST_RAW / "t10k-images-idx3-ubyte")
    assert train_raw.shape == (60000, 28, 28) and test_raw.shape == (10000, 28, 28)
    for i in (0, 1, 2, 12345, 59999):
        np.testing.assert_array_equal(mnist_train.data[i, 0].numpy(), train_raw[i])
    for i in (0, 7, 9999):
        np.testing.assert_array_equal(mnist_test.data[i, 0].numpy(), test_raw[i])
    # and the whole arrays and label files, which is cheap
    assert np.array_equal(mnist_train.data[:, 0].numpy(), train_raw)
    assert np.array_equal(mnist_test.data[:, 0].numpy(), test_raw)
    assert np.array_equal(mnist_train.targets.numpy(), read_idx_labels(MNIST_RAW / "train-labels-idx1-ubyte"))
    assert np.array_equal(mnist_test.targets.numpy(), read_idx_labels(MNIST_RAW / "t10k-labels-idx1-ubyte"))


def test_getitem_is_float_in_unit_range_with_transform(mnist_test):
    img, y = mnist_test[0]
    assert img.dtype == torch.float32 and tuple(img.shape) == (1, 28, 28)
    assert y == 7
    assert torch.allclose(img * 255.0, mnist_test.data[0].float())
    ds = load_dataset("mnist", SHARED_DATA, train=False, transform=lambda t: t * 2)
    assert torch.allclose(ds[0][0], img * 2)


# --------------------------------------------------------------------------------------- CIFAR


def test_cifar10_round_trip(cifar_root):
    truth = cifar_root.cifar10
    train = load_dataset("cifar10", cifar_root.root, train=True)
    test = load_dataset("cifar10", cifar_root.root, train=False)
    assert train.data.dtype == torch.uint8
    assert tuple(train.data.shape) == (30, 3, 32, 32) and tuple(test.data.shape) == (20, 3, 32, 32)
    assert np.array_equal(train.data.numpy(), truth.train_x)
    assert np.array_equal(test.data.numpy(), truth.test_x)
    assert train.targets.tolist() == truth.train_y.tolist()
    assert test.targets.tolist() == truth.test_y.tolist()
    assert train.classes == truth.classes
    # a known pixel pattern: byte c*1024 + h*32 + w of a row is pixel (c, h, w)
    assert int(train.data[0, 0, 0, 2]) == 1 and int(train.data[6, 0, 0, 2]) == 2 and int(train.data[29, 0, 0, 2]) == 5
    assert int(test.data[3, 2, 31, 31]) == 11 and int(train.data[3, 2, 31, 31]) == 10
    row = truth.test_x[4].reshape(3072)
    for c, h, w in ((0, 0, 5), (1, 7, 3), (2, 31, 0), (1, 31, 31)):
        assert int(test.data[4, c, h, w]) == int(row[c * 1024 + h * 32 + w])


def test_cifar100_round_trip_fine_labels(cifar_root):
    truth = cifar_root.cifar100
    train = load_dataset("cifar100", cifar_root.root, train=True)
    test = load_dataset("cifar100", cifar_root.root, train=False)
    assert isinstance(test, D.CIFAR100)
    assert np.array_equal(train.data.numpy(), truth.train_x)
    assert np.array_equal(test.data.numpy(), truth.test_x)
    assert train.targets.tolist() == truth.train_y.tolist()  # fine labels, not coarse
    assert test.targets.tolist() == truth.test_y.tolist()
    assert test.classes == truth.classes and len(test.classes) == 100
    assert int(test.data[0, 2, 31, 31]) == 21


def test_cifar_real_files_with_wrong_md5_still_load(cifar_root):
    """The files are tiny, so none of them has the published md5: existence is what is checked."""
    ds = load_dataset("cifar10", cifar_root.root, train=False)
    assert len(ds) == 20


# --------------------------------------------------------------------------------------- SVHN


def test_svhn_round_trip_and_label_10_is_digit_0(svhn_root):
    for split, train in (("train", True), ("test", False)):
        ds = load_dataset("svhn", svhn_root.root, train=train)
        x, y, y_file = getattr(svhn_root, f"{split}_x"), getattr(svhn_root, f"{split}_y"), getattr(svhn_root, f"{split}_y_file")
        assert ds.data.dtype == torch.uint8
        assert tuple(ds.data.shape) == (len(y), 3, 32, 32)
        assert np.array_equal(ds.data.numpy(), x)
        assert ds.targets.dtype == torch.int64
        assert ds.targets.tolist() == y.tolist()
        assert 10 in y_file.tolist() and 10 not in ds.targets.tolist()
        assert ds.targets[y_file == 10].tolist() == [0] * int((y_file == 10).sum())
        assert ds.classes == [str(i) for i in range(10)]
    ds = load_dataset("svhn", svhn_root.root, train=True)
    assert int(ds.data[0, 2, 31, 31]) == 30 and int(ds.data[5, 0, 0, 0]) == 5


# --------------------------------------------------------------------------------------- TinyImageNet


def _close(a: np.ndarray, b: np.ndarray, tol: int = 3) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) <= tol


def test_tinyimagenet_train_labels_are_sorted_wnid_indices(tinyimagenet_factory):
    tree = tinyimagenet_factory("shipped")
    ds = load_dataset("tinyimagenet", tree.root, train=True)
    assert ds.classes == sorted(tree.wnids)
    assert ds.data.dtype == torch.uint8 and tuple(ds.data.shape) == (6, 3, 64, 64)
    assert ds.targets.tolist() == [label for label, _ in tree.train]
    for got, (_, im) in zip(ds.data.numpy(), tree.train):
        assert _close(got.transpose(1, 2, 0), im)
    # the corner block lands top-left: (C, H, W) layout, not transposed
    assert _close(ds.data[0, :, :16, :16].numpy().transpose(1, 2, 0), tree.train[0][1][:16, :16])
    assert not _close(ds.data[0, :, :16, -16:].numpy().transpose(1, 2, 0), tree.train[0][1][:16, :16])


def _val_pairs(ds) -> list[tuple[int, tuple]]:
    """(label, mean colour of the background, of the corner block) per image, sorted: order-free."""
    out = []
    for x, y in zip(ds.data.numpy(), ds.targets.tolist()):
        out.append((y, tuple(np.round(x[:, 40:, 40:].mean(axis=(1, 2)) / 8).astype(int)),
                    tuple(np.round(x[:, :16, :16].mean(axis=(1, 2)) / 8).astype(int))))
    return sorted(out)


def test_tinyimagenet_val_as_shipped_and_restructured(tinyimagenet_factory):
    shipped = tinyimagenet_factory("shipped")
    folders = tinyimagenet_factory("folders")
    a = load_dataset("tinyimagenet", shipped.root, train=False)
    b = load_dataset("tinyimagenet", folders.root, train=False)
    assert len(a) == len(b) == 6
    assert a.classes == b.classes == sorted(shipped.wnids)
    # shipped: the annotation file gives each val image's wnid
    truth = shipped.val
    expected = sorted(truth)
    got_labels = {}
    for x, y in zip(a.data.numpy(), a.targets.tolist()):
        match = [f for f in expected if _close(x.transpose(1, 2, 0), truth[f][1])]
        assert len(match) == 1
        got_labels[match[0]] = y
    assert got_labels == {f: truth[f][0] for f in expected}
    assert sorted(a.targets.tolist()) == [0, 0, 1, 1, 2, 2]
    # restructured into class folders: the same images with the same labels
    assert _val_pairs(a) == _val_pairs(b)
    for x, y in zip(b.data.numpy(), b.targets.tolist()):
        match = [f for f in expected if _close(x.transpose(1, 2, 0), folders.val[f][1])]
        assert len(match) == 1 and folders.val[match[0]][0] == y


def test_tinyimagenet_resizes_other_sizes(tmp_path):
    from PIL import Image

    tree = tmp_path / "tiny-imagenet-200"
    (tree / "train" / "n1" / "images").mkdir(parents=True)
    (tree / "val" / "n1" / "images").mkdir(parents=True)
    (tree / "wnids.txt").write_text("n1\n")
    Image.new("RGB", (80, 80), (10, 200, 30)).save(tree / "train" / "n1" / "images" / "a.JPEG", quality=100)
    ds = load_dataset("tinyimagenet", tmp_path, train=True)
    assert tuple(ds.data.shape) == (1, 3, 64, 64)
    assert _close(ds.data[0, :, 32, 32].numpy(), np.array([10, 200, 30]), tol=4)


# --------------------------------------------------------------------------------------- ImageFolderSet


def test_image_folder_with_train_test_subfolders(folder_split_root):
    train = load_dataset("folder", folder_split_root.root, train=True)
    test = load_dataset("folder", folder_split_root.root, train=False)
    assert isinstance(train, D.ImageFolderSet)
    assert train.classes == test.classes == ["bird", "cat", "dog", "fish"]
    for ds, part in ((train, "train"), (test, "test")):
        x, y = folder_split_root.images[part]
        assert ds.data.dtype == torch.uint8 and tuple(ds.data.shape) == (len(y), 3, 32, 32)
        assert np.array_equal(ds.data.numpy(), x)  # PNG: exact
        assert ds.targets.tolist() == y.tolist()
    assert set(train.data[:, 2, 0, 0].tolist()) == {200} and set(test.data[:, 2, 0, 0].tolist()) == {100}


def test_image_folder_without_subfolders_is_a_seeded_80_20_split(folder_flat_root):
    x_all, y_all = folder_flat_root.images["all"]
    train = load_dataset("folder", folder_flat_root.root, train=True)
    test = load_dataset("folder", folder_flat_root.root, train=False)
    assert len(train) == 32 and len(test) == 8
    assert np.bincount(train.targets.numpy()).tolist() == [8, 8, 8, 8]
    assert np.bincount(test.targets.numpy()).tolist() == [2, 2, 2, 2]
    tr, te = _hashes(train.data), _hashes(test.data)
    assert not set(tr) & set(te)  # disjoint
    assert tr + te == _hashes(x_all)  # together exactly the images on disk
    # labels stay with their images
    by_image = {img.tobytes(): int(y) for img, y in zip(x_all, y_all)}
    for ds in (train, test):
        assert [by_image[img.tobytes()] for img in ds.data.numpy()] == ds.targets.tolist()
    # deterministic for a seed
    again = load_dataset("folder", folder_flat_root.root, train=False)
    assert torch.equal(again.data, test.data) and torch.equal(again.targets, test.targets)
    # another seed, another split (4 classes x C(10,2) choices: equal only by a tiny chance)
    other = [load_dataset("folder", folder_flat_root.root, train=False, seed=s) for s in (1, 2)]
    assert any(_hashes(o.data) != te for o in other)


def test_image_folder_image_size(folder_split_root):
    ds = load_dataset("folder", folder_split_root.root, train=False, image_size=16)
    assert tuple(ds.data.shape) == (20, 3, 16, 16) and ds.data.dtype == torch.uint8


# --------------------------------------------------------------------------------------- Digits


def test_digits_bundled_split():
    from sklearn.datasets import load_digits

    train = load_dataset("digits", None, train=True)
    test = load_dataset("digits", "/nonexistent/root/is/not/needed", train=False)
    assert len(train) == 1198 and len(test) == 599
    for ds in (train, test):
        assert ds.data.dtype == torch.uint8 and tuple(ds.data.shape[1:]) == (1, 8, 8)
        assert int(ds.data.min()) == 0 and int(ds.data.max()) == 255
    assert D.Digits.files_present("/nowhere")
    d = load_digits()
    full = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    pairs = lambda x, y: Counter(zip((i.tobytes() for i in np.asarray(x)), np.asarray(y).tolist()))  # noqa: E731
    # a partition of the 1797 images (no image used twice, none left out), labels kept
    assert pairs(train.data[:, 0], train.targets) + pairs(test.data[:, 0], test.targets) == pairs(full, d.target)
    # stratified: each class is split 2/3 : 1/3 (to within one image)
    total = np.bincount(d.target, minlength=10)
    n_test = np.bincount(test.targets.numpy(), minlength=10)
    assert np.all(np.abs(n_test - total / 3) <= 1)
    # fixed: the same split every time
    assert torch.equal(load_dataset("digits", None, train=False).data, test.data)


# --------------------------------------------------------------------------------------- errors, roots


@pytest.mark.parametrize("name, train, expected", [
    ("mnist", True, ["MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"]),
    ("fashion-mnist", False, ["FashionMNIST/raw/t10k-images-idx3-ubyte"]),
    ("cifar10", True, ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/batches.meta"]),
    ("cifar100", False, ["cifar-100-python/test", "cifar-100-python/meta"]),
    ("svhn", True, ["train_32x32.mat"]),
    ("svhn", False, ["test_32x32.mat"]),
    ("tinyimagenet", True, ["tiny-imagenet-200/wnids.txt", "tiny-imagenet-200/train"]),
])
def test_missing_files_error_names_paths_and_data_root(tmp_path, name, train, expected):
    with pytest.raises(MissingDataError) as info:
        load_dataset(name, tmp_path, train=train)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    for e in expected:
        assert str(tmp_path / e) in msg
    assert "--data-root" in msg


def test_missing_image_folder(tmp_path):
    with pytest.raises(MissingDataError, match="--data-root"):
        load_dataset("folder", tmp_path / "does-not-exist")
    with pytest.raises(ValueError, match="data-root"):
        load_dataset("folder", None)


def test_empty_image_folder_is_missing_data(tmp_path):
    """An existing but empty --data-root (no class folders) is missing data too, with the same help."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match="--data-root"):
        load_dataset("folder", tmp_path / "empty")


def test_unknown_dataset_name_lists_the_available_ones():
    with pytest.raises(ValueError) as info:
        load_dataset("imagenet-1k", SHARED_DATA)
    msg = str(info.value)
    assert "imagenet-1k" in msg
    for name in ("mnist", "fashion-mnist", "svhn", "cifar10", "cifar100", "tinyimagenet", "digits", "folder"):
        assert name in msg


def test_download_of_a_non_downloadable_set_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot be downloaded"):
        load_dataset("tinyimagenet", tmp_path, download=True)


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("OSRKIT_DATA", str(tmp_path / "env"))
    assert default_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert default_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("OSRKIT_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_root(None) == tmp_path / "home" / ".cache" / "osrkit"
    # a data set built with root=None reads $OSRKIT_DATA
    monkeypatch.setenv("OSRKIT_DATA", str(SHARED_DATA))
    assert len(load_dataset("mnist", None, train=False)) == 10000


def test_files_present(tmp_path, svhn_root):
    assert D.MNIST.files_present(SHARED_DATA)
    assert not D.MNIST.files_present(tmp_path / "nothing")
    assert D.SVHN.files_present(svhn_root.root)
    assert not D.CIFAR10.files_present(svhn_root.root)
