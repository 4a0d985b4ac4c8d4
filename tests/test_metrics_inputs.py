"""Metric inputs: each bad input is named by osrkit's own message (not caught later by scikit-learn), torch
tensors are accepted as they come from a model, and the operating-point arguments are range-checked."""

import numpy as np
import pytest
import torch

from osrkit import metrics as M

OWN_NAN = "contains NaN or infinite values; check the model outputs"


@pytest.mark.parametrize("call, name", [
    (lambda bad: M.auroc(bad, [0.2]), "known_scores"),
    (lambda bad: M.auroc([0.2], bad), "unknown_scores"),
    (lambda bad: M.aupr_in(bad, [0.2]), "known_scores"),
    (lambda bad: M.aupr_out([0.2], bad), "unknown_scores"),
    (lambda bad: M.fpr_at_tpr(bad, [0.2]), "known_scores"),
    (lambda bad: M.oscr(bad, [True], [0.2]), "known_scores"),
    (lambda bad: M.oscr([0.1], [True], bad), "unknown_scores"),
    (lambda bad: M.threshold_at_known_rejection(bad), "val_known_scores"),
    (lambda bad: M.open_set_predictions([0], bad, 0.5, 2), "unknown scores"),
])
def test_bad_scores_are_named(call, name):
    with pytest.raises(ValueError, match=f"^{name} {OWN_NAN}"):
        call([float("nan")])
    with pytest.raises(ValueError, match=f"^{name} contains NaN or infinite"):
        call([float("inf")])
    with pytest.raises(ValueError, match=rf"^{name} must be 1-D, got shape \(1, 1\)"):
        call([[0.1]])
    with pytest.raises(ValueError, match=f"^{name} is empty"):
        call([])


def test_integer_inputs_are_named_and_not_float_checked():
    with pytest.raises(ValueError, match=r"^predictions must be 1-D"):
        M.accuracy([[0]], [0])
    with pytest.raises(ValueError, match=r"^labels is empty"):
        M.accuracy([0], [])
    with pytest.raises(ValueError, match=r"^known_correct must be 1-D"):
        M.oscr([0.1], [[True]], [0.2])
    with pytest.raises(ValueError, match=r"^known_scores \(2\) and known_correct \(1\) differ in length"):
        M.oscr([0.1, 0.2], [True], [0.3])
    with pytest.raises(ValueError, match=r"^predictions \(2\) and scores \(1\) differ in length"):
        M.open_set_predictions([0, 1], [0.1], 0.5, 2)
    with pytest.raises(ValueError, match=r"^pred \(2\) and labels \(1\) differ in length"):
        M.open_set_f1([0, 1], [0], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match=r"^pred must be 1-D"):
        M.open_set_f1([[0]], [0], [0.1], 0.5)
    assert M.accuracy(np.array([1, 2], dtype=np.int32), [1, 3]) == 0.5


def test_torch_tensors_straight_from_a_model():
    k = torch.tensor([0.1, 0.4, 0.35], requires_grad=True)  # as scores come from a network, still in the graph
    u = torch.tensor([0.8, 0.3], requires_grad=True)
    assert M.auroc(k, u) == M.auroc([0.1, 0.4, 0.35], [0.8, 0.3]) == pytest.approx(4 / 6)
    assert M.accuracy(torch.tensor([1, 0]), torch.tensor([1, 1])) == 0.5


def test_operating_point_arguments_are_range_checked():
    k, u = [0.1, 0.2, 0.3], [0.25, 0.9]
    for bad in (0.0, -0.1, 1.0001):
        with pytest.raises(ValueError, match=r"tpr must be in \(0, 1\]"):
            M.fpr_at_tpr(k, u, bad)
    assert M.fpr_at_tpr(k, u, 1.0) == pytest.approx(0.5)  # all knowns accepted at 0.3: 0.25 accepted too
    assert M.fpr_at_tpr(k, u, 1 / 3) == pytest.approx(0.0)  # the strictest threshold 0.1 accepts no unknown
    for bad in (1.0, -0.01):
        with pytest.raises(ValueError, match=r"reject_fraction must be in \[0, 1\)"):
            M.threshold_at_known_rejection(k, bad)
    assert M.threshold_at_known_rejection(k, 0.0) == pytest.approx(0.3)  # rejecting none: the largest score


def test_open_set_predictions_threshold_is_strict():
    # a score equal to the threshold stays known; only scores above it are rejected
    out = M.open_set_predictions([0, 1, 2], [0.5, 0.50001, 0.2], 0.5, 9)
    assert out.tolist() == [0, 9, 2]
    # the input predictions are not modified in place
    p = np.array([0, 1, 2])
    M.open_set_predictions(p, [0.9, 0.9, 0.9], 0.5, 9)
    assert p.tolist() == [0, 1, 2]


def test_open_set_f1_default_class_count_and_out_of_range_labels():
    from sklearn.metrics import f1_score

    pred, scores = [0, 1, 1, 0], [0.1, 0.2, 0.9, 0.1]
    # K inferred as 1 + max(label, pred) = 2; the -1 labels are "unknown" (index 2).
    # open predictions 0, 1, U, 0 against truth 0, 1, U, U
    expected = f1_score([0, 1, 2, 2], [0, 1, 2, 0], labels=[0, 1, 2], average="macro", zero_division=0)
    assert M.open_set_f1(pred, [0, 1, -1, -1], scores, 0.5) == pytest.approx(expected)
    # with num_classes = 2 given, a label 5 (>= K) is "unknown" too, as is -1
    assert M.open_set_f1(pred, [0, 1, -1, 5], scores, 0.5, num_classes=2) == pytest.approx(expected)
    # without it, the 5 makes K = 6: a different (wrong for this protocol) score, so K matters
    assert M.open_set_f1(pred, [0, 1, -1, 5], scores, 0.5) != pytest.approx(expected)


def test_roc_points_thinning_keeps_the_ends():
    rng = np.random.default_rng(0)
    k, u = rng.normal(0, 1, 500), rng.normal(1, 1, 500)
    pts = M.roc_points(k, u, max_points=50)
    assert len(pts["fpr"]) <= 50 and pts["fpr"][0] == 0.0 and pts["tpr"][-1] == 1.0 and pts["fpr"][-1] == 1.0
    assert np.all(np.diff(pts["fpr"]) >= 0) and np.all(np.diff(pts["tpr"]) >= 0)
    assert np.trapezoid(pts["tpr"], pts["fpr"]) == pytest.approx(M.auroc(k, u), abs=0.01)
    full = M.roc_points([0.1, 0.2], [0.3])
    assert full == {"fpr": [0.0, 0.0, 1.0], "tpr": [0.0, 1.0, 1.0]}
