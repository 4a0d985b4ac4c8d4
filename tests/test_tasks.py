"""Open-set tasks built from real MNIST and from tiny synthetic data sets, and the batched transforms."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import MNIST_RAW, SHARED_DATA, SPEC_SPLITS, read_idx_images, read_idx_labels
from osrkit.data import tasks as T
from osrkit.data.tasks import OpenSetTask, channel_stats, make_task
from osrkit.data.transforms import BatchAugment, make_augment, normalize, resize_uint8

SPEC = json.loads(SPEC_SPLITS.read_text())["families"]
NEAL0 = SPEC["neal"]["splits"]["mnist"][0]


def _items(x: torch.Tensor, y: torch.Tensor | None = None) -> Counter:
    """Multiset of (image bytes, label) — order-free comparison of image sets."""
    xs = [img.tobytes() for img in x.numpy()]
    ys = [None] * len(xs) if y is None else y.tolist()
    return Counter(zip(xs, ys))


def _remap(labels: np.ndarray, known: list[int]) -> np.ndarray:
    lut = {old: new for new, old in enumerate(sorted(known))}
    return np.array([lut[int(v)] for v in labels], dtype=np.int64)


# --------------------------------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def raw_mnist():
    return {
        "train_x": read_idx_images(MNIST_RAW / "train-images-idx3-ubyte"),
        "train_y": read_idx_labels(MNIST_RAW / "train-labels-idx1-ubyte"),
        "test_x": read_idx_images(MNIST_RAW / "t10k-images-idx3-ubyte"),
        "test_y": read_idx_labels(MNIST_RAW / "t10k-labels-idx1-ubyte"),
    }


@pytest.fixture(scope="module")
def mnist_task() -> OpenSetTask:
    return make_task("mnist", 0, data_root=SHARED_DATA)


def test_mnist_task_classes_are_neal_split_0(mnist_task):
    t = mnist_task
    assert t.known_classes == sorted(NEAL0["known"]) == [0, 1, 2, 4, 5, 9]
    assert sorted(t.unknown_classes) == sorted(NEAL0["unknown"])
    assert t.num_classes == 6
    assert len(t.class_names) == 6 and t.class_names[0].startswith("0") and t.class_names[5].startswith("9")
    assert t.name == "mnist/neal0" and t.dataset == "mnist"
    assert t.spec["family"] == "neal" and t.spec["index"] == 0 and t.spec["seed"] == 0
    assert "K=6" in t.summary()


def test_mnist_task_images_are_uint8_32x32(mnist_task):
    t = mnist_task
    for x in (t.train_x, t.val_x, t.test_x, t.unknown_x):
        assert x.dtype == torch.uint8 and x.ndim == 4 and tuple(x.shape[1:]) == (1, 32, 32)
    assert t.in_channels == 1 and t.image_size == 32
    for y in (t.train_y, t.val_y, t.test_y):
        assert y.dtype == torch.int64


def test_mnist_task_labels_remapped_in_ascending_order(mnist_task, raw_mnist):
    t = mnist_task
    for y in (t.train_y, t.val_y, t.test_y):
        assert sorted(set(y.tolist())) == [0, 1, 2, 3, 4, 5]
    known = NEAL0["known"]
    mask = np.isin(raw_mnist["test_y"], known)
    assert t.test_y.tolist() == _remap(raw_mnist["test_y"][mask], known).tolist()
    # original 9 → 5, original 4 → 3, and the images are the raw ones, resized
    expected_x = resize_uint8(torch.from_numpy(raw_mnist["test_x"][mask]).unsqueeze(1), 32)
    assert torch.equal(t.test_x, expected_x)
    first9 = int(np.flatnonzero(raw_mnist["test_y"][mask] == 9)[0])
    assert int(t.test_y[first9]) == 5


def test_mnist_task_unknown_test_holds_only_unknown_classes(mnist_task, raw_mnist):
    t = mnist_task
    mask = np.isin(raw_mnist["test_y"], NEAL0["unknown"])
    assert len(t.unknown_x) == int(mask.sum()) == 10000 - len(t.test_y)
    expected = resize_uint8(torch.from_numpy(raw_mnist["test_x"][mask]).unsqueeze(1), 32)
    assert torch.equal(t.unknown_x, expected)


def test_mnist_task_train_val_partition_the_known_training_images(mnist_task, raw_mnist):
    t = mnist_task
    known = NEAL0["known"]
    mask = np.isin(raw_mnist["train_y"], known)
    n = int(mask.sum())
    assert len(t.train_y) + len(t.val_y) == n  # no unknown-class image got in
    assert len(t.val_y) == round(0.2 * n)
    assert abs(len(t.val_y) / n - 0.2) < 1e-3
    expected = _items(resize_uint8(torch.from_numpy(raw_mnist["train_x"][mask]).unsqueeze(1), 32),
                      torch.from_numpy(_remap(raw_mnist["train_y"][mask], known)))
    # train + val is exactly the known training set (each image once, labels kept): disjoint
    assert _items(t.train_x, t.train_y) + _items(t.val_x, t.val_y) == expected
    # the normalisation, against numpy on the training images (float64, sample std)
    x = t.train_x.numpy().astype(np.float64) / 255.0
    assert mnist_task.mean == pytest.approx([x.mean()], rel=1e-5)
    assert mnist_task.std == pytest.approx([x.std(ddof=1)], rel=1e-5)
    assert channel_stats(t.train_x)[0] == pytest.approx([x.mean()], rel=1e-5)


def test_mnist_task_holdout_is_seeded(mnist_task):
    same = make_task("mnist", 0, data_root=SHARED_DATA, seed=0)
    assert torch.equal(same.val_x, mnist_task.val_x) and torch.equal(same.val_y, mnist_task.val_y)
    assert torch.equal(same.train_x, mnist_task.train_x)
    other = make_task("mnist", 0, data_root=SHARED_DATA, seed=1)
    assert len(other.val_y) == len(mnist_task.val_y)
    assert not torch.equal(other.val_x, mnist_task.val_x)
    assert _items(other.val_x) != _items(mnist_task.val_x)
    # same data overall, different partition
    assert _items(other.train_x) + _items(other.val_x) == _items(mnist_task.train_x) + _items(mnist_task.val_x)
    assert torch.equal(other.test_x, mnist_task.test_x)


def test_test_only_loads_no_training_images(monkeypatch, mnist_task):
    calls = []
    real = T.load_dataset

    def spy(name, root=None, train=True, download=False, **kw):
        calls.append((name, train))
        return real(name, root, train=train, download=download, **kw)

    monkeypatch.setattr(T, "load_dataset", spy)
    norm = ([0.13], [0.31])
    t = make_task("mnist", 0, data_root=SHARED_DATA, test_only=True, normalization=norm)
    assert calls and all(train is False for _, train in calls)
    assert len(t.train_x) == 0 and len(t.train_y) == 0 and len(t.val_y) == 0
    assert (t.mean, t.std) == norm
    assert torch.equal(t.test_x, mnist_task.test_x) and torch.equal(t.test_y, mnist_task.test_y)
    assert torch.equal(t.unknown_x, mnist_task.unknown_x)
    assert t.known_classes == mnist_task.known_classes and t.class_names == mnist_task.class_names


def test_test_only_needs_normalization():
    with pytest.raises(ValueError, match="normalization"):
        make_task("digits", 0, test_only=True)


# --------------------------------------------------------------------------------------- folder tasks


def test_folder_task_with_known_class_names(folder_split_root):
    t = make_task("folder", known=["cat", "dog"], data_root=folder_split_root.root)
    assert t.known_classes == [1, 2] and t.class_names == ["cat", "dog"]
    assert sorted(t.unknown_classes) == [0, 3]
    assert t.name == "folder" and t.spec["family"] is None
    # train images: 10 per class; pixel (0, 0) holds (class, image number, 200 for train / 100 for test)
    assert len(t.train_y) + len(t.val_y) == 20 and len(t.val_y) == 4
    assert t.train_x.dtype == torch.uint8 and tuple(t.train_x.shape[1:]) == (3, 32, 32)
    for x, y in ((t.train_x, t.train_y), (t.val_x, t.val_y), (t.test_x, t.test_y)):
        assert (x[:, 0, 0, 0] - 1).tolist() == y.tolist()  # cat → 0, dog → 1
    assert set(t.train_x[:, 2, 0, 0].tolist()) == {200} and set(t.test_x[:, 2, 0, 0].tolist()) == {100}
    assert len(t.test_y) == 10
    assert len(t.unknown_x) == 10 and sorted(set(t.unknown_x[:, 0, 0, 0].tolist())) == [0, 3]
    assert set(t.unknown_x[:, 2, 0, 0].tolist()) == {100}


def test_folder_task_known_order_and_explicit_unknown(folder_split_root):
    t = make_task("folder", known=["dog", "cat"], unknown=["fish"], data_root=folder_split_root.root)
    assert t.known_classes == [1, 2] and t.class_names == ["cat", "dog"]
    assert int(t.test_y[t.test_x[:, 0, 0, 0] == 2][0]) == 1  # dog stays 1 whichever order it was named in
    assert t.unknown_classes == [3] and set(t.unknown_x[:, 0, 0, 0].tolist()) == {3} and len(t.unknown_x) == 5
    # indices work as names do
    u = make_task("folder", known=[2, 1], data_root=folder_split_root.root)
    assert torch.equal(u.test_x, t.test_x) and torch.equal(u.test_y, t.test_y)


def test_folder_task_unknown_class_name(folder_split_root):
    with pytest.raises(ValueError) as info:
        make_task("folder", known=["cat", "cow"], data_root=folder_split_root.root)
    msg = str(info.value)
    assert "cow" in msg and "bird, cat, dog, fish" in msg
    with pytest.raises(ValueError, match="overlap"):
        make_task("folder", known=["cat"], unknown=["cat"], data_root=folder_split_root.root)
    with pytest.raises(ValueError, match="out of range"):
        make_task("folder", known=[7], data_root=folder_split_root.root)


def test_folder_task_test_only_does_not_read_training_files(folder_split_root):
    bad = folder_split_root.root / "train" / "cat" / "000.png"
    bad.write_bytes(b"this is not a PNG")
    with pytest.raises(OSError, match="cannot identify image file"):  # the training images are read on the normal path ...
        make_task("folder", known=["cat", "dog"], data_root=folder_split_root.root)
    # ... and not at all for a test-only task
    t = make_task("folder", known=["cat", "dog"], data_root=folder_split_root.root, test_only=True,
                  normalization=([0.5] * 3, [0.25] * 3))
    assert len(t.train_x) == 0 and len(t.test_y) == 10 and len(t.unknown_x) == 10
    assert t.mean == [0.5] * 3


def test_task_image_size_option(folder_flat_root):
    t = make_task("folder", known=["bird"], data_root=folder_flat_root.root, image_size=16)
    for x in (t.train_x, t.val_x, t.test_x, t.unknown_x):
        assert tuple(x.shape[1:]) == (3, 16, 16) and x.dtype == torch.uint8
    assert len(t.test_y) == 2 and len(t.unknown_x) == 6


# --------------------------------------------------------------------------------------- CIFAR+N


@pytest.mark.parametrize("task", ["cifar+10", "cifar+50"])
def test_cifar_plus_task_uses_cifar100_unknowns(cifar_root, task):
    c10, c100 = cifar_root.cifar10, cifar_root.cifar100
    split = SPEC["neal"]["splits"][task][0]
    t = make_task(task, 0, data_root=cifar_root.root)
    assert t.known_classes == sorted(split["known"]) == [0, 1, 8, 9]
    assert t.unknown_classes == split["unknown"]
    assert t.class_names == ["airplane", "automobile", "ship", "truck"]
    # knowns from the CIFAR-10 files (marker 10 train, 11 test)
    known_mask = np.isin(c10.test_y, split["known"])
    assert torch.equal(t.test_x, torch.from_numpy(c10.test_x[known_mask]))
    assert t.test_y.tolist() == _remap(c10.test_y[known_mask], split["known"]).tolist()
    assert set(t.train_x[:, 2, 31, 31].tolist()) <= {10}
    assert len(t.train_y) + len(t.val_y) == int(np.isin(c10.train_y, split["known"]).sum())
    # unknowns from the CIFAR-100 test file (marker 21), exactly the split's fine classes
    unk_mask = np.isin(c100.test_y, split["unknown"])
    assert len(t.unknown_x) == int(unk_mask.sum()) == len(split["unknown"])
    assert torch.equal(t.unknown_x, torch.from_numpy(c100.test_x[unk_mask]))
    assert set(t.unknown_x[:, 2, 31, 31].tolist()) == {21}


# --------------------------------------------------------------------------------------- transforms


def test_resize_uint8():
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    y = resize_uint8(x, 32)
    assert y.dtype == torch.uint8 and tuple(y.shape) == (5, 1, 32, 32)
    z = resize_uint8(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8), 32)
    assert z.dtype == torch.uint8 and tuple(z.shape) == (2, 3, 32, 32)
    assert resize_uint8(x, 28) is x
    flat = torch.full((2, 3, 20, 20), 77, dtype=torch.uint8)
    assert torch.equal(resize_uint8(flat, 32), torch.full((2, 3, 32, 32), 77, dtype=torch.uint8))


def test_normalize():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    out = normalize(x, mean, std)
    assert out.dtype == torch.float32
    expected = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(normalize(x.float() / 255, mean, std), expected, atol=1e-6)
    assert x.dtype == torch.uint8  # input untouched


def _batch(n: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_batch_augment_is_deterministic_given_the_generator():
    x = _batch()
    aug = BatchAugment(crop_scale=(0.7, 1.0), flip=True)
    a = aug(x, torch.Generator().manual_seed(123))
    b = aug(x, torch.Generator().manual_seed(123))
    c = aug(x, torch.Generator().manual_seed(124))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, x)
    # randomness from the generator only: the global RNG is not used
    torch.manual_seed(0)
    r1 = torch.rand(3)
    torch.manual_seed(0)
    aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(torch.rand(3), r1)


def test_batch_augment_full_crop_without_flip_is_identity():
    x = _batch()
    out = BatchAugment(crop_scale=(1.0, 1.0), flip=False)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-5), float((out - x).abs().max())


def _check_mirrors(out: torch.Tensor, x: torch.Tensor) -> None:
    flipped = []
    for o, i in zip(out, x):
        same, mirrored = torch.allclose(o, i, atol=1e-5), torch.allclose(o, i.flip(-1), atol=1e-5)
        assert same or mirrored
        flipped.append(mirrored)
    assert 0 < sum(flipped) < len(flipped)  # both kinds occur in a batch of 32 (p ≈ 5e-10 otherwise)


def test_batch_augment_flip_only_mirrors_exactly():
    x = _batch()
    aug = BatchAugment(crop_scale=None, flip=True)
    assert aug.active
    _check_mirrors(aug(x, torch.Generator().manual_seed(1)), x)


def test_batch_augment_flip_with_full_crop_mirrors_exactly():
    x = _batch()
    _check_mirrors(BatchAugment(crop_scale=(1.0, 1.0), flip=True)(x, torch.Generator().manual_seed(1)), x)


def test_batch_augment_none_and_registry():
    x = _batch(4)
    none = make_augment("none")
    assert not none.active and none(x, torch.Generator()) is x
    assert make_augment("crop").crop_scale == (0.7, 1.0) and not make_augment("crop").flip
    assert make_augment("crop-flip").flip
    with pytest.raises(ValueError, match="crop-flip"):
        make_augment("mixup")
