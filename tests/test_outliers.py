"""CROSR outlier sets: Omniglot, MNIST-noise, Noise, ImageNet crop/resize, LSUN folders, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from conftest import SHARED
from osrkit.data.outliers import (
    OUTLIER_SETS,
    imagenet_crop,
    imagenet_resize,
    load_outliers,
    lsun_folder,
    mnist_noise,
    omniglot,
    uniform_noise,
)

DATA = SHARED / "data"
needs_data = pytest.mark.skipif(not (DATA / "omniglot.npz").is_file(), reason="shared data not present")


@pytest.fixture(scope="module")
def mnist_test() -> torch.Tensor:
    if not (DATA / "MNIST" / "raw").is_dir():
        pytest.skip("MNIST not present")
    return torchvision.datasets.MNIST(root=DATA, train=False, download=False).data


def test_registry_names() -> None:
    assert set(OUTLIER_SETS) == {
        "omniglot", "mnist-noise", "noise", "imagenet-crop", "imagenet-resize", "lsun-crop", "lsun-resize"
    }


@needs_data
def test_omniglot_shape_range_inversion() -> None:
    x = omniglot(DATA, n=200, seed=0)
    assert x.shape == (200, 1, 28, 28) and x.dtype == torch.uint8
    assert int(x.max()) > 200 and int(x.min()) == 0
    # after 255 - x the background is black, strokes are white, like MNIST
    assert (x == 0).float().mean() > 0.6
    corners = torch.cat([x[..., :2, :2], x[..., -2:, -2:]]).float()
    assert corners.mean() < 5


@needs_data
def test_omniglot_seed_subset_and_size() -> None:
    a, b, c = omniglot(DATA, n=50, seed=1), omniglot(DATA, n=50, seed=1), omniglot(DATA, n=50, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert omniglot(DATA, n=5, size=32, subset="background").shape == (5, 1, 32, 32)
    assert omniglot(DATA, n=5, subset="all").shape == (5, 1, 28, 28)
    with pytest.raises(ValueError, match="only 13180"):
        omniglot(DATA, n=13181)
    with pytest.raises(ValueError):
        omniglot(DATA, n=5, subset="train")


def test_uniform_noise() -> None:
    x = uniform_noise(n=500, seed=0)
    assert x.shape == (500, 1, 28, 28) and x.dtype == torch.uint8
    assert int(x.min()) == 0 and int(x.max()) == 255
    assert abs(x.float().mean().item() - 127.5) < 2
    assert torch.equal(x, uniform_noise(n=500, seed=0))
    assert not torch.equal(x, uniform_noise(n=500, seed=1))
    assert uniform_noise(n=3, shape=(3, 32, 32)).shape == (3, 3, 32, 32)
    assert load_outliers("noise", None, n=4).shape == (4, 1, 28, 28)


def test_mnist_noise(mnist_test: torch.Tensor) -> None:
    digits = mnist_test[:300]
    x = mnist_noise(digits, seed=0)
    assert x.shape == (300, 1, 28, 28) and x.dtype == torch.uint8
    d = digits.unsqueeze(1)
    fg = d > 0
    assert torch.equal(x[fg], d[fg])  # the digit strokes are kept
    bg = x[~fg].float()
    assert bg.mean().item() == pytest.approx(127.5, abs=3) and int(bg.max()) == 255
    assert torch.equal(x, mnist_noise(digits, seed=0))
    assert not torch.equal(x, mnist_noise(digits, seed=1))
    assert torch.equal(mnist_noise(d, seed=0), x)


@needs_data
def test_mnist_noise_from_root() -> None:
    x = load_outliers("mnist-noise", DATA, seed=0)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.uint8


@needs_data
@pytest.mark.parametrize("loader", [imagenet_crop, imagenet_resize])
def test_imagenet(loader) -> None:
    x = loader(DATA)
    assert x.shape == (10000, 3, 32, 32) and x.dtype == torch.uint8
    assert x.is_contiguous() and int(x.max()) > 200


def _write_pngs(folder: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    for i, (h, w) in enumerate([(48, 64), (40, 40), (20, 30)]):
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / ("sub" if i == 2 else ".") / f"img{i}.png")
    Image.fromarray(np.full((36, 36), 77, dtype=np.uint8), mode="L").save(folder / "grey.jpg")
    (folder / "notes.txt").write_text("not an image")


@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_lsun_folder(tmp_path: Path, mode: str) -> None:
    _write_pngs(tmp_path)
    x = lsun_folder(tmp_path, mode=mode)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8
    assert lsun_folder(tmp_path, mode=mode, n=2).shape == (2, 3, 32, 32)
    assert load_outliers(f"lsun-{mode}", tmp_path).shape == (4, 3, 32, 32)


def test_lsun_crop_is_center_window(tmp_path: Path) -> None:
    from PIL import Image

    arr = np.arange(40 * 40 * 3, dtype=np.int64).reshape(40, 40, 3).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = lsun_folder(tmp_path, mode="crop")
    assert torch.equal(x[0], torch.from_numpy(arr[4:36, 4:36]).permute(2, 0, 1))


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="omniglot.npz") as err:
        omniglot(tmp_path, n=5)
    assert str(tmp_path.resolve()) in str(err.value) and "README" in str(err.value)
    with pytest.raises(FileNotFoundError, match="tinyimagenet_crop32.npz"):
        imagenet_crop(tmp_path)
    with pytest.raises(FileNotFoundError, match="tinyimagenet_resize32.npz"):
        imagenet_resize(tmp_path)
    with pytest.raises(FileNotFoundError, match="No image files"):
        lsun_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="No image files"):
        lsun_folder(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError, match="MNIST"):
        load_outliers("mnist-noise", tmp_path)
    with pytest.raises(KeyError):
        load_outliers("cifar", tmp_path)
