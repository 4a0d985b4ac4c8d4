"""CIFAR-10 from an ImageFolder copy (the shared JPEG copy), recorded as such in the task."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from osrkit.data.datasets import CIFAR10, CIFAR10_CLASSES, MissingDataError
from osrkit.data.splits import get_split
from osrkit.data.tasks import make_task
from conftest import SHARED

ARCHIVE = SHARED / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="module")
def jpeg_root(tmp_path_factory) -> Path:
    """Two train and two test images per class, extracted from the real JPEG copy."""
    root = tmp_path_factory.mktemp("cifar") / "cifar10-jpeg"
    root.mkdir()
    subprocess.run(["tar", "-xzf", str(ARCHIVE), "-C", str(root), "--wildcards", "*/000[01].jpg"], check=True)
    return root.parent


def test_loads_the_jpeg_copy_and_labels_it(jpeg_root: Path) -> None:
    ds = CIFAR10(jpeg_root, train=True)
    assert ds.source == "image folder (JPEG)" and ds.label == "CIFAR-10 (JPEG copy)"
    assert ds.classes == list(CIFAR10_CLASSES)
    assert tuple(ds.data.shape) == (20, 3, 32, 32) and ds.data.dtype == torch.uint8
    assert sorted(ds.targets.tolist()) == sorted(list(range(10)) * 2)
    # pixels are the file's, decoded by PIL
    from PIL import Image

    path = jpeg_root / "cifar10-jpeg" / "train" / "cat" / "0001.jpg"
    ref = np.asarray(Image.open(path).convert("RGB"))
    cat = CIFAR10_CLASSES.index("cat")
    got = ds.data[ds.targets == cat].permute(0, 2, 3, 1).numpy()
    assert any(np.array_equal(g, ref) for g in got)
    assert CIFAR10.files_present(jpeg_root)


def test_task_from_the_jpeg_copy_keeps_the_published_split(jpeg_root: Path) -> None:
    task = make_task("cifar10", split=0, family="neal", data_root=jpeg_root, val_fraction=0.0)
    known, unknown = get_split("neal", "cifar10", 0)
    assert task.spec["source"] == "image folder (JPEG)" and task.spec["data_label"] == "CIFAR-10 (JPEG copy)"
    assert task.name == "cifar10-jpeg/neal0"
    assert task.class_names == [CIFAR10_CLASSES[i] for i in sorted(known)]
    assert len(task.train_y) == 2 * len(known) and len(task.unknown_x) == 2 * len(unknown)


def test_a_folder_with_other_classes_is_not_cifar(tmp_path: Path) -> None:
    for part in ("train", "test"):
        for c in CIFAR10_CLASSES[:9] + ("lorry",):
            (tmp_path / part / c).mkdir(parents=True)
    assert CIFAR10.image_folder(tmp_path) is None
    with pytest.raises(MissingDataError, match="cifar-10-batches-py"):
        CIFAR10(tmp_path, train=True)
