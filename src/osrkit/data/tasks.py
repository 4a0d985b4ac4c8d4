"""Open-set tasks: data set + split → known-train / known-val / known-test / unknown-test, in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from osrkit.data.datasets import ImageSet, default_data_root, load_dataset
from osrkit.data.splits import get_split
from osrkit.data.transforms import resize_uint8

# model input size and the data set holding CIFAR+N's unknowns
IMAGE_SIZE = {"mnist": 32, "fashion-mnist": 32, "svhn": 32, "cifar10": 32, "cifar100": 32,
              "tinyimagenet": 64, "digits": 8, "folder": 32}
PLUS_TASKS = {"cifar+10", "cifar+50"}


@dataclass
class OpenSetTask:
    """An open-set task held as uint8 tensors at the model's input size; labels remapped to 0..K-1.

    Known classes are remapped in ascending order of their original index.
    """

    name: str
    dataset: str
    known_classes: list[int]
    unknown_classes: list[int]
    class_names: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    unknown_x: torch.Tensor
    mean: list[float]
    std: list[float]
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.known_classes)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def summary(self) -> str:
        return (f"{self.name}: K={self.num_classes} known {self.known_classes}, unknown {self.unknown_classes}; "
                f"train {len(self.train_y)}, val {len(self.val_y)}, test {len(self.test_y)}, "
                f"unknown-test {len(self.unknown_x)}; input {self.in_channels}x{self.image_size}x{self.image_size}")


def _resolve_classes(requested: Sequence, names: list[str], what: str) -> list[int]:
    """Class indices from indices or names; unknown names/indices are errors naming the choices."""
    out = []
    for c in requested:
        if isinstance(c, str) and c in names:  # a class name, even a numeric one, wins over an index
            out.append(names.index(c))
        elif isinstance(c, str) and not c.lstrip("-").isdigit():
            if c not in names:
                raise ValueError(f"unknown {what} class name {c!r}; available: {', '.join(names)}")
            out.append(names.index(c))
        else:
            i = int(c)
            if not 0 <= i < len(names):
                raise ValueError(f"{what} class index {i} out of range 0..{len(names) - 1}")
            out.append(i)
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate {what} classes in {list(requested)}")
    return out


def _select(ds: ImageSet, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.isin(ds.targets, torch.tensor(classes, dtype=torch.int64))
    return ds.data[mask], ds.targets[mask]


def _remap(labels: torch.Tensor, known: list[int]) -> torch.Tensor:
    lut = torch.full((int(max(known)) + 1,), -1, dtype=torch.int64)
    for new, old in enumerate(sorted(known)):
        lut[old] = new
    return lut[labels]


def _holdout(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of range(n) into (train, val) indices with `fraction` held out."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    n_val = int(round(n * fraction))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units."""
    x = images.float().div(255.0)
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()


def _outliers(name: str, root, channels: int) -> torch.Tensor:
    """An outlier set as uint8 (N, channels, H, W): grey sets repeated to RGB, RGB sets averaged to grey."""
    from osrkit.data.outliers import OUTLIER_SETS, load_outliers

    if name not in OUTLIER_SETS:
        raise ValueError(f"unknown outlier set {name!r}; available: {', '.join(sorted(OUTLIER_SETS))}")
    if name.startswith("lsun") and root is None:
        raise ValueError(f"{name} is read from your own folder of LSUN images: pass --outlier-root DIR")
    x = load_outliers(name, root)
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.repeat(1, 3, 1, 1)
    return x.float().mean(1, keepdim=True).round().to(torch.uint8)


def _empty_like(ds: ImageSet) -> ImageSet:
    """A stand-in training set with no images (for test-only tasks)."""
    empty = object.__new__(type(ds))
    empty.data, empty.targets, empty.classes = ds.data[:0], ds.targets[:0], ds.classes
    return empty


def read_trainval(path) -> list[int]:
    """The training indices of a CAC-authors-style partition file: {"Train": {class: [indices]}, "Val": {...}}."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"train/val partition file {p} does not exist")
    try:
        parts = json.loads(p.read_text())
        return sorted(int(i) for idxs in parts["Train"].values() for i in idxs)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{p} is not a train/val partition: expected JSON {{\"Train\": {{class: [indices]}}, "
                         f"\"Val\": ...}} ({e})") from e


def make_task(
    dataset: str,
    split: int | None = 0,
    family: str = "neal",
    known: Sequence | None = None,
    unknown: Sequence | None = None,
    data_root=None,
    download: bool = False,
    val_fraction: float = 0.2,
    seed: int = 0,
    image_size: int | None = None,
    normalization: tuple[list[float], list[float]] | None = None,
    train_indices: Sequence[int] | None = None,
    test_only: bool = False,
    outlier: str | None = None,
    outlier_root=None,
) -> OpenSetTask:
    """Build an open-set task.

    dataset: a data set name, or "cifar+10"/"cifar+50" (CIFAR-10 knowns, CIFAR-100 unknowns).
    known/unknown: explicit classes (indices or names) instead of the published split; unknown
    defaults to every other class. train_indices: use exactly these training-set indices as the
    known training data (e.g. a published train/val partition) instead of the seeded holdout.
    test_only: load only the test files (for evaluating a checkpoint; needs `normalization`).
    outlier: an outlier-set protocol (CROSR): every class known (unless `known` is given) and the
    unknown test set is this outlier set (omniglot, mnist-noise, noise, imagenet-crop, ...), loaded
    from `outlier_root` (default: the data root; for lsun-* the folder of LSUN images).
    """
    root = default_data_root(data_root)
    base = "cifar10" if dataset in PLUS_TASKS else dataset
    test_ds = load_dataset(base, root, train=False, download=download)
    if test_only and normalization is None:
        raise ValueError("test_only needs the training normalization (mean, std)")
    train_ds = _empty_like(test_ds) if test_only else load_dataset(base, root, train=True, download=download)
    unknown_ds = load_dataset("cifar100", root, train=False, download=download) if dataset in PLUS_TASKS else test_ds

    if outlier is not None and known is None:
        known = list(range(len(train_ds.classes)))
        unknown = []
    if known is not None:
        known_idx = _resolve_classes(known, train_ds.classes, "known")
        unknown_idx = (_resolve_classes(unknown, unknown_ds.classes, "unknown") if unknown is not None
                       else [c for c in range(len(unknown_ds.classes)) if c not in known_idx])
        split_desc = {"family": None, "index": None}
    else:
        if split is None:
            raise ValueError("give a split index or explicit known classes")
        known_idx, unknown_idx = get_split(family, dataset, split)
        split_desc = {"family": family, "index": split}
    if dataset not in PLUS_TASKS and set(known_idx) & set(unknown_idx):
        raise ValueError(f"known and unknown classes overlap: {sorted(set(known_idx) & set(unknown_idx))}")

    size = image_size or IMAGE_SIZE.get(base, int(train_ds.data.shape[-1]))
    x_all, y_all = _select(train_ds, known_idx)
    if train_indices is not None:
        idx = torch.as_tensor(list(train_indices), dtype=torch.int64)
        sel = idx[torch.isin(train_ds.targets[idx], torch.tensor(known_idx))]
        val_mask = torch.ones(len(train_ds), dtype=torch.bool)
        val_mask[idx] = False
        val_sel = torch.nonzero(val_mask & torch.isin(train_ds.targets, torch.tensor(known_idx))).flatten()
        train_x, train_y = train_ds.data[sel], train_ds.targets[sel]
        val_x, val_y = train_ds.data[val_sel], train_ds.targets[val_sel]
    else:
        tr, va = _holdout(len(y_all), val_fraction, seed)
        train_x, train_y, val_x, val_y = x_all[tr], y_all[tr], x_all[va], y_all[va]
    test_x, test_y = _select(test_ds, known_idx)
    unk_x = (_select(unknown_ds, unknown_idx)[0] if outlier is None
             else _outliers(outlier, outlier_root or (None if outlier.startswith("lsun") else root), test_x.shape[1]))

    train_x = resize_uint8(train_x, size)
    mean, std = normalization if normalization is not None else channel_stats(train_x)
    names = [train_ds.classes[i] for i in sorted(known_idx)]
    spec = {"dataset": dataset, "known": list(known_idx), "unknown": list(unknown_idx),
            "image_size": size, "val_fraction": val_fraction, "seed": seed, **split_desc}
    if train_indices is not None:  # a fixed partition is part of the task's identity
        import hashlib

        ids = ",".join(str(int(i)) for i in train_indices)
        spec["train_indices"] = f"{len(train_indices)} indices, sha1 {hashlib.sha1(ids.encode()).hexdigest()[:12]}"
    if test_ds.source is not None:  # e.g. CIFAR-10 from pickles or from its JPEG copy: results say which
        spec["source"] = test_ds.source
        if test_ds.label:
            spec["data_label"] = test_ds.label
    shown = f"{dataset}-jpeg" if spec.get("source") == "image folder (JPEG)" else dataset  # never passed off as CIFAR-10
    name = shown if split_desc["family"] is None else f"{shown}/{family}{split}"
    if outlier is not None:
        spec["outlier"] = outlier
        spec["outlier_root"] = str(outlier_root) if outlier_root else None
        name = f"{dataset}+{outlier}"
    return OpenSetTask(
        name=name, dataset=dataset, known_classes=sorted(known_idx), unknown_classes=list(unknown_idx),
        class_names=names,
        train_x=train_x, train_y=_remap(train_y, known_idx),
        val_x=resize_uint8(val_x, size), val_y=_remap(val_y, known_idx),
        test_x=resize_uint8(test_x, size), test_y=_remap(test_y, known_idx),
        unknown_x=resize_uint8(unk_x, size), mean=list(mean), std=list(std), spec=spec,
    )
