"""Metrics against the reference file, scikit-learn and hand-worked cases (ties included)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from osrkit import metrics as M
from conftest import SHARED

REF = SHARED / "spec" / "reference"


def _oscr_cases():
    return json.loads((REF / "oscr.json").read_text())["cases"]


@pytest.mark.parametrize("case", _oscr_cases(), ids=lambda c: f"n{len(c['labels'])}")
def test_oscr_matches_reference(case):
    kl, ul = np.array(case["known_logits"]), np.array(case["unknown_logits"])
    y = np.array(case["labels"])
    oscr = M.oscr(-kl.max(1), kl.argmax(1) == y, -ul.max(1))
    assert abs(oscr - case["oscr"]) < 1e-9


def test_oscr_hand_worked_no_ties():
    # knowns (score, correct): (0.1, T), (0.3, F), (0.5, T); unknowns 0.2, 0.6
    # thresholds: .1 -> ccr 1/3, fpr 0; .2 -> 1/3, 1/2; .3 -> 1/3, 1/2; .5 -> 2/3, 1/2; .6 -> 2/3, 1
    # area = (1/2)*(1/3+1/3)/2 + (1/2)*(2/3+2/3)/2 = 1/6 + 1/3 = 1/2
    assert M.oscr([0.1, 0.3, 0.5], [True, False, True], [0.2, 0.6]) == pytest.approx(0.5, abs=1e-12)


def test_oscr_ties_enter_together():
    # known (0.5, correct) ties with unknown 0.5: one step from (0,0) to (1, 1) -> trapezoid 0.5
    assert M.oscr([0.5], [True], [0.5]) == pytest.approx(0.5)
    # perfect separation -> accuracy
    assert M.oscr([0.1, 0.2], [True, True], [0.9]) == pytest.approx(1.0)
    assert M.oscr([0.1, 0.2], [True, False], [0.9]) == pytest.approx(0.5)


def test_oscr_arpl_by_hand():
    """ARPL's loop on knowns (scores 0.1 correct, 0.3 wrong) and one unknown (0.2), worked by hand: sorted by
    known-ness -0.3, -0.2, -0.1 gives CCR = [1/2, 1/2, 0, 0, 1], FPR = [1, 1, 0, 0, 1]; sorted descending the
    points are (1,1), (1,.5), (1,.5), (0,0), (0,0), whose trapezoids sum to 1 * (0.5 + 0) / 2 = 0.25.
    The exact OSCR of the same case: CCR 0.5 from FPR 0 to 1, area 0.5."""
    assert M.oscr_arpl([0.1, 0.3], [True, False], [0.2]) == pytest.approx(0.25)
    assert M.oscr([0.1, 0.3], [True, False], [0.2]) == pytest.approx(0.5)
    # two correct knowns (0.1, 0.2) below one unknown (0.9): sorted -0.9, -0.2, -0.1 gives CCR = [1, 1/2, 0, 0, 1],
    # FPR = [1, 0, 0, 0, 1]; descending points (1,1), (1,1), (0,.5), (0,0), (0,0): area 1 * (1 + 0.5) / 2 = 0.75
    assert M.oscr_arpl([0.1, 0.2], [True, True], [0.9]) == pytest.approx(0.75)
    assert M.oscr([0.1, 0.2], [True, True], [0.9]) == pytest.approx(1.0)


def test_oscr_arpl_variant_differs_but_is_close():
    case = _oscr_cases()[0]
    kl, ul, y = np.array(case["known_logits"]), np.array(case["unknown_logits"]), np.array(case["labels"])
    v = M.oscr_arpl(-kl.max(1), kl.argmax(1) == y, -ul.max(1))
    assert v != case["oscr"] and abs(v - case["oscr"]) < 0.06


def test_auroc_matches_rank_statistic():
    rng = np.random.default_rng(0)
    k = np.round(rng.normal(0, 1, 200), 1)  # rounding creates ties
    u = np.round(rng.normal(1, 1, 150), 1)
    # Mann-Whitney: P(u > k) + 0.5 P(u == k)
    expected = ((u[:, None] > k[None]).sum() + 0.5 * (u[:, None] == k[None]).sum()) / (len(k) * len(u))
    assert M.auroc(k, u) == pytest.approx(expected, abs=1e-12)
    assert M.auroc(torch.tensor(k), torch.tensor(u)) == pytest.approx(expected, abs=1e-12)


def test_auroc_hand_worked():
    assert M.auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert M.auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert M.auroc([0.5, 0.1], [0.5, 0.9]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_fpr_at_tpr_hand_worked():
    # knowns are the positives: accepting 95% of 4 knowns means all 4 (t = 0.9) -> every unknown accepted
    assert M.fpr_at_tpr([0.1, 0.2, 0.55, 0.9], [0.5, 0.6, 0.7, 0.8]) == pytest.approx(1.0)
    # 20 knowns 0.00..0.19: 19 of them (95%) are accepted at t = 0.18; unknown 0.185 is rejected, 0.15 accepted
    knowns = np.arange(20) / 100
    assert M.fpr_at_tpr(knowns, [0.185, 0.5]) == 0.0
    assert M.fpr_at_tpr(knowns, [0.15, 0.5]) == pytest.approx(0.5)
    assert M.fpr_at_tpr([0.1, 0.2], [0.5, 0.6]) == 0.0
    with pytest.raises(ValueError, match="tpr"):
        M.fpr_at_tpr([0.1], [0.2], tpr=1.5)


def test_aupr_hand_worked():
    assert M.aupr_out([0.1, 0.2], [0.3, 0.4]) == pytest.approx(1.0)
    assert M.aupr_in([0.1, 0.2], [0.3, 0.4]) == pytest.approx(1.0)
    # one unknown ranked below one known: ranks u(.4) k(.3) u(.2) -> AP = (1/1 + 2/3)/2
    assert M.aupr_out([0.3], [0.4, 0.2]) == pytest.approx((1 + 2 / 3) / 2)


def test_accuracy_and_validation():
    assert M.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    with pytest.raises(ValueError, match="differ in length"):
        M.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="NaN"):
        M.auroc([0.1, float("nan")], [0.2])
    with pytest.raises(ValueError, match="1-D"):
        M.auroc(np.zeros((2, 2)), [0.2])
    with pytest.raises(ValueError, match="empty"):
        M.auroc([], [0.2])


def test_open_set_f1_hand_worked():
    # K = 2; samples: (pred, label, score): (0,0,.1) (1,1,.2) (1,0,.9->unknown) (0,-1,.8->unknown) (1,-1,.3)
    pred = [0, 1, 1, 0, 1]
    labels = [0, 1, 0, -1, -1]
    scores = [0.1, 0.2, 0.9, 0.8, 0.3]
    # open predictions: 0, 1, U, U, 1 ; truth: 0, 1, 0, U, U
    # class 0: tp1 fp0 fn1 -> f1 = 2/3 ; class 1: tp1 fp1 fn0 -> 2/3 ; U: tp1 fp1 fn1 -> 1/2
    expected = (2 / 3 + 2 / 3 + 1 / 2) / 3
    assert M.open_set_f1(pred, labels, scores, threshold=0.5) == pytest.approx(expected)
    assert M.open_set_f1(pred, [0, 1, 0, 2, 2], scores, 0.5, num_classes=2) == pytest.approx(expected)
    from sklearn.metrics import f1_score

    assert expected == pytest.approx(f1_score([0, 1, 0, 2, 2], [0, 1, 2, 2, 1], average="macro"))


def test_threshold_rejects_fraction():
    s = np.arange(100, dtype=float)
    t = M.threshold_at_known_rejection(s, 0.1)
    assert np.mean(s > t) == pytest.approx(0.1, abs=0.011)


@pytest.mark.parametrize("tpr", [0.5, 0.8, 0.9, 0.95, 1.0])
def test_fpr_at_tpr_at_several_operating_points(tpr):
    # 20 knowns at 0.00..0.19; the strictest threshold accepting `tpr` of them is the ceil(20 tpr)-th smallest.
    # 11 unknowns spread over the same range, each between two knowns: FPR = share of unknowns below it.
    knowns = np.arange(20) / 100
    unknowns = np.append(np.arange(10) / 50 + 0.005, 0.175)  # 0.005, 0.025, ..., 0.185, and 0.175
    t = knowns[int(np.ceil(20 * tpr)) - 1]
    expected = float(np.mean(unknowns <= t))
    assert M.fpr_at_tpr(knowns, unknowns, tpr) == pytest.approx(expected)
    assert M.fpr_at_tpr(knowns, unknowns) == pytest.approx(float(np.mean(unknowns <= 0.18)))  # default 0.95 -> 0.9
    assert M.fpr_at_tpr(knowns, unknowns) != M.fpr_at_tpr(knowns, unknowns, 0.90)
