"""The published open-set class splits (`neal`, `arpl` families), shipped as package data."""

from __future__ import annotations

import json
import os
import warnings
from functools import lru_cache
from importlib import resources
from pathlib import Path

# data sets that borrow another task's split lists
SPLIT_ALIASES = {"digits": "mnist", "fashion-mnist": "mnist"}


def _load() -> dict:
    """The split lists: the package's splits.json, or the file named by $OSRKIT_SPLITS (same schema)."""
    return _load_file(os.environ.get("OSRKIT_SPLITS") or None)


@lru_cache(maxsize=4)
def _load_file(path: str | None) -> dict:
    source = resources.files("osrkit.data").joinpath("splits.json") if path is None else Path(path)
    try:
        with source.open() as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"splits file {source} (from $OSRKIT_SPLITS) does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"splits file {source} is not valid JSON ({e}): it is truncated or damaged; restore it "
                         "(the package's own copy is osrkit/data/splits.json)") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("families"), dict):
        raise ValueError(f"splits file {source} has no \"families\" mapping: it is not an osrkit splits file")
    return doc


def split_families() -> list[str]:
    return sorted(_load()["families"])


def split_tasks(family: str) -> list[str]:
    """The task names a split family covers (e.g. mnist, cifar+10)."""
    return sorted(_family(family)["splits"])


def _family(family: str) -> dict:
    fams = _load()["families"]
    if family not in fams:
        raise ValueError(f"unknown split family {family!r}; choose one of: {', '.join(sorted(fams))}")
    return fams[family]


def num_splits(family: str, task: str) -> int:
    return len(_splits_of(family, task))


def _splits_of(family: str, task: str) -> list[dict]:
    splits = _family(family)["splits"]
    key = SPLIT_ALIASES.get(task, task)
    if key not in splits:
        raise ValueError(
            f"split family {family!r} has no task {task!r}; tasks: {', '.join(sorted(splits))}"
            f" (plus aliases {', '.join(sorted(SPLIT_ALIASES))})"
        )
    return splits[key]


def duplicated_splits(family: str, task: str) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of split indices with the same known and the same unknown class sets."""
    splits = _splits_of(family, task)
    sets = [(frozenset(s["known"]), frozenset(s["unknown"])) for s in splits]
    return [(i, j) for i in range(len(sets)) for j in range(i + 1, len(sets)) if sets[i] == sets[j]]


def get_split(family: str, task: str, index: int) -> tuple[list[int], list[int]]:
    """(known, unknown) class index lists of split `index`, exactly as in the published file."""
    splits = _splits_of(family, task)
    if not isinstance(index, int) or not 0 <= index < len(splits):
        raise ValueError(
            f"split index {index!r} out of range for {family}/{task}: valid indices are 0..{len(splits) - 1}"
        )
    twins = sorted({j if i == index else i for i, j in duplicated_splits(family, task) if index in (i, j)})
    if twins:
        warnings.warn(
            f"{family}/{task} split {index} has the same known and unknown classes as split(s) "
            f"{', '.join(map(str, twins))} (a known quirk of the {family} family): their results are not independent",
            stacklevel=2,
        )
    s = splits[index]
    return list(s["known"]), list(s["unknown"])
