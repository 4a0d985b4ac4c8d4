"""Published open-set class splits: exactly the lists of ../shared/spec/splits.json."""

from __future__ import annotations

import json
import warnings

import pytest

from conftest import SPEC_SPLITS
from osrkit.data.splits import duplicated_splits, get_split, num_splits, split_families, split_tasks

SPEC = json.loads(SPEC_SPLITS.read_text())["families"]
CASES = [(family, task, i) for family in sorted(SPEC) for task in sorted(SPEC[family]["splits"])
         for i in range(len(SPEC[family]["splits"][task]))]


def test_families_and_tasks_are_those_of_the_spec():
    assert sorted(SPEC) == ["arpl", "neal"]
    assert split_families() == sorted(SPEC)
    for family in SPEC:
        assert split_tasks(family) == sorted(SPEC[family]["splits"])
        for task in ("mnist", "svhn", "cifar10", "cifar+10", "cifar+50", "tinyimagenet"):
            assert task in SPEC[family]["splits"]
            assert num_splits(family, task) == len(SPEC[family]["splits"][task]) == 5


@pytest.mark.parametrize("family, task, index", CASES)
def test_get_split_returns_the_published_lists(family, task, index):
    expected = SPEC[family]["splits"][task][index]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        known, unknown = get_split(family, task, index)
    assert known == expected["known"]  # same classes, same order
    assert unknown == expected["unknown"]
    assert all(type(c) is int for c in known + unknown)


def test_sizes_of_the_splits():
    for family in SPEC:
        for i in range(5):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for task in ("mnist", "svhn", "cifar10"):
                    known, unknown = get_split(family, task, i)
                    assert len(known) == 6 and len(set(known)) == 6 and not set(known) & set(unknown)
                    if family == "neal":
                        assert sorted(known + unknown) == list(range(10))
                assert len(get_split(family, "tinyimagenet", i)[0]) == 20
                assert len(get_split(family, "cifar+10", i)[1]) == 10
                assert len(get_split(family, "cifar+50", i)[1]) == 50


def test_returned_lists_are_copies():
    known, unknown = get_split("neal", "mnist", 0)
    known.append(99)
    unknown.clear()
    assert get_split("neal", "mnist", 0) == (SPEC["neal"]["splits"]["mnist"][0]["known"],
                                              SPEC["neal"]["splits"]["mnist"][0]["unknown"])


@pytest.mark.parametrize("family", ["neal", "arpl"])
@pytest.mark.parametrize("alias", ["digits", "fashion-mnist"])
def test_aliases_use_the_mnist_lists(family, alias):
    assert num_splits(family, alias) == num_splits(family, "mnist")
    for i in range(num_splits(family, "mnist")):
        assert get_split(family, alias, i) == get_split(family, "mnist", i)
        assert get_split(family, alias, i) == (SPEC[family]["splits"]["mnist"][i]["known"],
                                                SPEC[family]["splits"]["mnist"][i]["unknown"])


@pytest.mark.parametrize("index", [5, -1, 100])
def test_index_out_of_range(index):
    with pytest.raises(ValueError) as info:
        get_split("neal", "mnist", index)
    msg = str(info.value)
    assert str(index) in msg and "0..4" in msg


@pytest.mark.parametrize("index", ["0", 1.0, None])
def test_index_must_be_an_int(index):
    with pytest.raises(ValueError, match="0..4"):
        get_split("neal", "cifar10", index)


def test_unknown_family_or_task():
    with pytest.raises(ValueError) as info:
        get_split("osrci", "mnist", 0)
    assert "osrci" in str(info.value) and "neal" in str(info.value) and "arpl" in str(info.value)
    with pytest.raises(ValueError) as info:
        get_split("neal", "cifar+20", 0)
    assert "cifar+20" in str(info.value) and "cifar+10" in str(info.value)
    with pytest.raises(ValueError):
        num_splits("neal", "imagenet")
    with pytest.raises(ValueError):
        duplicated_splits("nope", "mnist")


def _spec_duplicates(family: str, task: str) -> list[tuple[int, int]]:
    sets = [(frozenset(s["known"]), frozenset(s["unknown"])) for s in SPEC[family]["splits"][task]]
    return [(i, j) for i in range(len(sets)) for j in range(i + 1, len(sets)) if sets[i] == sets[j]]


def test_arpl_duplicated_splits():
    assert duplicated_splits("arpl", "svhn") == [(0, 1)]
    assert duplicated_splits("arpl", "cifar10") == [(0, 1)]
    for task in ("mnist", "tinyimagenet"):
        assert duplicated_splits("arpl", task) == []
    for task in SPEC["arpl"]["splits"]:
        assert duplicated_splits("arpl", task) == _spec_duplicates("arpl", task)


def test_neal_duplicates_are_reported_as_in_the_file():
    for task in SPEC["neal"]["splits"]:
        assert duplicated_splits("neal", task) == _spec_duplicates("neal", task)
    for task in ("mnist", "svhn", "cifar10", "tinyimagenet", "cifar+10"):
        assert duplicated_splits("neal", task) == []
    # neal's CIFAR+50 splits all hold the same 4 knowns and the same 50 unknowns (only the order differs)
    assert len(duplicated_splits("neal", "cifar+50")) == 10


@pytest.mark.parametrize("task", ["svhn", "cifar10"])
@pytest.mark.parametrize("index", [0, 1])
def test_using_a_duplicated_split_warns(task, index):
    with pytest.warns(UserWarning, match=rf"split {index} has the same known and unknown classes as split\(s\) {1 - index}") as record:
        known, _ = get_split("arpl", task, index)
    assert known == SPEC["arpl"]["splits"][task][index]["known"]
    assert any("arpl" in str(w.message) and task in str(w.message) for w in record)


@pytest.mark.parametrize("family, task, index", [("arpl", "svhn", 2), ("arpl", "cifar10", 4),
                                                  ("arpl", "mnist", 0), ("neal", "cifar10", 0)])
def test_other_splits_do_not_warn(family, task, index):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_split(family, task, index)
