"""Inter-class separation measures: hand-worked cases and invariances."""

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from osrkit.analysis.separation import between_within_ratio, class_separation


def test_between_within_hand_worked():
    # class 0 at {-1, 1} (mean 0), class 1 at {9, 11} (mean 10): within = 1, between = 10
    x = np.array([[-1.0], [1.0], [9.0], [11.0]])
    assert between_within_ratio(x, np.array([0, 0, 1, 1])) == pytest.approx(10.0)
    # three classes on a line, means 0, 3, 6: between = mean(3, 6, 3) = 4; within = 1
    x = np.array([[-1.0], [1.0], [2.0], [4.0], [5.0], [7.0]])
    assert between_within_ratio(x, np.array([0, 0, 1, 1, 2, 2])) == pytest.approx(4.0)


def test_separation_is_scale_free_and_grows_with_distance():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    centres = rng.normal(size=(4, 8))
    noise = rng.normal(size=(120, 8))
    near, far = centres[y] + noise, 3 * centres[y] + noise
    a, b = class_separation(near, y), class_separation(far, y)
    assert b["between_within"] > a["between_within"] and b["silhouette"] > a["silhouette"]
    scaled = class_separation(7.5 * near, y)
    assert scaled["between_within"] == pytest.approx(a["between_within"])
    assert scaled["silhouette"] == pytest.approx(silhouette_score(near, y))


def test_separation_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        between_within_ratio(np.zeros((3, 2)), np.zeros(3))


def _davies_bouldin_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """DB = mean_i max_{j != i} (s_i + s_j) / d(c_i, c_j); s_i = mean distance of class i to its centroid."""
    classes = np.unique(y)
    c = np.stack([x[y == k].mean(0) for k in classes])
    s = np.array([np.linalg.norm(x[y == k] - c[i], axis=1).mean() for i, k in enumerate(classes)])
    r = [max((s[i] + s[j]) / np.linalg.norm(c[i] - c[j]) for j in range(len(classes)) if j != i)
         for i in range(len(classes))]
    return float(np.mean(r))


def test_davies_bouldin_hand_worked_and_against_sklearn():
    # classes at {-1, 1} (centre 0, s = 1) and {9, 11} (centre 10, s = 1): DB = (1 + 1) / 10 = 0.2
    x = np.array([[-1.0], [1.0], [9.0], [11.0]])
    y = np.array([0, 0, 1, 1])
    assert class_separation(x, y)["davies_bouldin"] == pytest.approx(0.2)
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(5), 20)
    x = rng.normal(size=(5, 6))[y] * 3 + rng.normal(size=(100, 6))
    sep = class_separation(x, y)
    assert sep["davies_bouldin"] == pytest.approx(_davies_bouldin_by_hand(x, y), rel=1e-10)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert sep["davies_bouldin_unit"] == pytest.approx(_davies_bouldin_by_hand(unit, y), rel=1e-10)
    # lower is better: the same centres pulled three times further apart give a lower index
    centres, noise = rng.normal(size=(5, 6)), rng.normal(size=(100, 6))
    assert class_separation(9 * centres[y] + noise, y)["davies_bouldin"] < class_separation(centres[y] + noise, y)["davies_bouldin"]
