"""osrkit.OpenSetClassifier: fit / predict / score_samples / save / load in scikit-learn's conventions."""

import csv

import numpy as np
import pytest
from sklearn.datasets import load_digits

import osrkit
from osrkit.cli import main
from osrkit.data.tasks import _holdout

NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    X = np.round(d.images * 255 / 16).astype(np.uint8)  # (N, 8, 8)
    known = d.target < 6
    return X, d.target, known


@pytest.fixture(scope="module")
def fitted(digits):
    X, t, known = digits
    return osrkit.OpenSetClassifier(method="softmax", epochs=8).fit(X[known][:900], NAMES[t[known][:900]])


def test_string_labels_predict_and_reject(fitted, digits):
    X, t, known = digits
    clf = fitted
    assert list(clf.classes_) == sorted(NAMES[:6]) and clf.unknown_label_ == "unknown"
    held = X[known][900:], NAMES[t[known][900:]]
    pred = clf.predict(held[0])
    assert pred.dtype == object and set(pred) <= set(clf.classes_) | {"unknown"}
    assert (pred == held[1]).mean() > 0.8
    # the rule, checked independently: rejected exactly where the unknown score is above the threshold
    scores = clf.score_samples(held[0])
    assert np.array_equal(pred == "unknown", scores > clf.threshold_)
    assert (clf.predict(X[~known]) == "unknown").mean() > (pred == "unknown").mean()  # unknowns rejected more
    # the threshold keeps 95% of the held-out validation knowns, which fit never trained on
    _, va = _holdout(900, 0.2, 0)
    val_scores = clf.score_samples(X[known][:900][va.numpy()])
    assert (val_scores <= clf.threshold_).mean() >= 0.95


def test_save_load_and_osrkit_predict_read_the_same_file(fitted, digits, tmp_path):
    X, _, _ = digits
    path = tmp_path / "clf.pt"
    fitted.save(path)
    again = osrkit.OpenSetClassifier.load(path)
    assert np.array_equal(again.predict(X[:50]), fitted.predict(X[:50]))
    assert list(again.classes_) == list(fitted.classes_) and again.threshold_ == fitted.threshold_
    np.save(tmp_path / "x.npy", X[:50])
    assert main(["predict", str(path), str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [r["label"] for r in rows] == list(fitted.predict(X[:50]))


def test_integer_labels_default_to_minus_one_and_image_paths_work(digits, tmp_path):
    from PIL import Image

    X, t, known = digits
    sel = np.flatnonzero(np.isin(t, [0, 1, 7]))[:150]
    paths = []
    for i in sel:
        p = tmp_path / f"{i}.png"
        Image.fromarray(X[i]).resize((16, 16)).save(p)
        paths.append(str(p))
    clf = osrkit.OpenSetClassifier(method="mls", epochs=6, channels=1, image_size=8).fit(paths, t[sel])
    assert clf.classes_.dtype == np.int64 and list(clf.classes_) == [0, 1, 7] and clf.unknown_label_ == -1
    pred = clf.predict(X[np.isin(t, [3, 4])][:60])
    assert pred.dtype == np.int64 and set(pred.tolist()) <= {-1, 0, 1, 7}


@pytest.mark.parametrize("X, y, message", [
    (np.zeros((10, 8, 8), np.float32), [0, 1] * 5, "uint8"),
    (np.zeros((10, 2, 8, 8), np.uint8), [0, 1] * 5, "C = 1, 3 or 4"),
    (np.zeros((10, 8, 8), np.uint8), [0] * 10, "at least 2 classes"),
    (np.zeros((10, 8, 8), np.uint8), [0, 1] * 4, "10 images but y has 8 labels"),
])
def test_bad_input_names_the_problem(X, y, message):
    with pytest.raises(ValueError, match=message):
        osrkit.OpenSetClassifier(epochs=1).fit(X, y)


def test_unfitted_and_unknown_method():
    with pytest.raises(RuntimeError, match="not fitted"):
        osrkit.OpenSetClassifier().predict(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="unknown method 'nosuch'"):
        osrkit.OpenSetClassifier(method="nosuch")
