"""Metric values at many operating points, each against an independent computation: scikit-learn, numpy, a
brute-force sweep written here, the ARPL authors' loop, or a case worked by hand. Also the exact messages
and the integer handling of the class-index inputs."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve

from osrkit import metrics as M

def _cases():
    """(known, unknown) score pairs: continuous, heavily tied (rounded), and tiny."""
    out = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        k, u = rng.normal(0, 1, 40), rng.normal(0.8, 1, 25)
        out.append((k, u))
        out.append((np.round(k, 0), np.round(u, 0)))  # many ties, also between knowns and unknowns
    out.append((np.array([0.3]), np.array([0.1, 0.3])))
    return out


# ---------------------------------------------------------------- AUROC / AUPR


@pytest.mark.parametrize("k, u", _cases())
def test_auroc_and_aupr_match_scikit_learn(k, u):
    y = np.r_[np.zeros(len(k)), np.ones(len(u))]
    s = np.r_[k, u]
    assert M.auroc(k, u) == pytest.approx(roc_auc_score(y, s))
    assert M.aupr_out(k, u) == pytest.approx(average_precision_score(y, s))
    assert M.aupr_in(k, u) == pytest.approx(average_precision_score(y == 0, -s))


def test_aupr_in_by_hand():
    """knowns 0.1, 0.4; unknown 0.2. Ranked by -score: 0.1 (known), 0.2 (unknown), 0.4 (known):
    precision at each known = 1/1 and 2/3, AP = (1 + 2/3) / 2. AUPR-out: unknown ranked 2nd of 3 by score,
    precision 1/2 at recall 1: AP = 1/2."""
    assert M.aupr_in([0.1, 0.4], [0.2]) == pytest.approx((1 + 2 / 3) / 2)
    assert M.aupr_out([0.1, 0.4], [0.2]) == pytest.approx(0.5)
    assert M.auroc([0.1, 0.4], [0.2]) == pytest.approx(0.5)


# ---------------------------------------------------------------- FPR at TPR


def _fpr_at_tpr_brute(k, u, tpr):
    """The strictest threshold t among the known scores with mean(k <= t) >= tpr; the share of unknowns <= t."""
    for t in np.sort(np.unique(k)):
        if np.mean(k <= t) >= tpr - 1e-12:
            return float(np.mean(u <= t))
    raise AssertionError("unreachable")


@pytest.mark.parametrize("k, u", _cases())
@pytest.mark.parametrize("tpr", [0.05, 0.3, 0.5, 0.8, 0.95, 1.0])
def test_fpr_at_tpr_matches_a_brute_force_sweep(k, u, tpr):
    assert M.fpr_at_tpr(k, u, tpr) == pytest.approx(_fpr_at_tpr_brute(k, u, tpr))


def test_fpr_at_tpr_inside_a_run_of_tied_pairs():
    """Each score is shared by one known and one unknown, so the ROC points are collinear; at TPR 1/2 the
    threshold is 2 and half the unknowns (1, 2) are accepted. Dropping "intermediate" collinear points would
    jump to the end of the run (FPR 1)."""
    k = u = [1.0, 2.0, 3.0, 4.0]
    assert M.fpr_at_tpr(k, u, 0.5) == pytest.approx(0.5)
    assert M.fpr_at_tpr(k, u, 0.25) == pytest.approx(0.25)
    assert M.fpr_at_tpr(k, u, 0.75) == pytest.approx(0.75)


def test_fpr_at_tpr_default_is_95_percent_and_bad_tpr_is_named():
    k = np.arange(1, 21) / 20.0  # 0.05 .. 1.0
    u = np.array([0.9, 0.95, 0.97, 1.0])
    # 95% of 20 knowns = 19: threshold 0.95 accepts 0.9 and 0.95
    assert M.fpr_at_tpr(k, u) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"^tpr must be in \(0, 1\], got 0$"):
        M.fpr_at_tpr(k, u, 0)


# ---------------------------------------------------------------- accuracy and class-index inputs


def test_accuracy_compares_class_indices_exactly_as_integers():
    """2**53 + 1 and 2**53 are the same float64 but different int64 class indices."""
    big = 2**53
    assert M.accuracy([big + 1, 3], [big, 3]) == 0.5
    assert M.accuracy(np.array([big + 1]), np.array([big + 1])) == 1.0
    assert M.accuracy(torch.tensor([big + 1, 2]), torch.tensor([big, 2])) == 0.5


def test_accuracy_by_hand_and_messages():
    assert M.accuracy([0, 1, 2, 3, 3], [0, 1, 1, 3, 0]) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match=r"^predictions \(3\) and labels \(2\) differ in length$"):
        M.accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match=r"^labels must be 1-D, got shape \(1, 2\)$"):
        M.accuracy([0, 1], [[0, 1]])


def test_open_set_predictions_keep_exact_integer_classes():
    big = 2**53 + 1
    out = M.open_set_predictions([big, 5, 2], [0.1, 0.9, 0.5], 0.5, 7)
    assert out.dtype == np.int64 and out.tolist() == [big, 7, 2]


def test_open_set_predictions_messages_name_the_inputs():
    with pytest.raises(ValueError, match=r"^predictions must be 1-D, got shape \(1, 2\)$"):
        M.open_set_predictions([[0, 1]], [0.1, 0.2], 0.5, 2)
    with pytest.raises(ValueError, match=r"^predictions is empty$"):
        M.open_set_predictions([], [0.1], 0.5, 2)
    with pytest.raises(ValueError, match=r"^unknown scores contains NaN"):
        M.open_set_predictions([1], [float("nan")], 0.5, 2)


# ---------------------------------------------------------------- open-set F1


def test_open_set_f1_counts_classes_never_seen_as_zero_f1_without_warning():
    """K = 3 given, but class 2 appears neither in the labels nor in the predictions: the macro average is over
    all K + 1 = 4 classes, class 2 contributing F1 = 0 (zero_division=0, silently)."""
    pred, labels, scores = [0, 1, 1, 0], [0, 1, -1, 0], [0.1, 0.2, 0.9, 0.3]
    # open predictions 0, 1, U(3), 0 against truth 0, 1, U(3), 0: classes 0, 1, 3 perfect
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = M.open_set_f1(pred, labels, scores, 0.5, num_classes=3)
    assert value == pytest.approx(3 / 4)
    assert value == pytest.approx(f1_score([0, 1, 3, 0], [0, 1, 3, 0], labels=[0, 1, 2, 3], average="macro",
                                           zero_division=0))


def test_open_set_f1_matches_scikit_learn_on_random_cases():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        n, k = 30, 4
        pred = rng.integers(0, k, n)
        labels = rng.integers(-1, k, n)  # -1: unknown
        scores = rng.random(n)
        thr = 0.6
        truth = np.where(labels < 0, k, labels)
        openp = np.where(scores > thr, k, pred)
        expected = f1_score(truth, openp, labels=list(range(k + 1)), average="macro", zero_division=0)
        assert M.open_set_f1(pred, labels, scores, thr, num_classes=k) == pytest.approx(expected)


def test_open_set_f1_label_equal_to_k_is_unknown():
    """num_classes = 2: label 2 is "unknown", as -1 is. Truth 0, 1, U; the third sample is rejected (0.9 > 0.5),
    so every class is right: F1 = 1. Not rejected, it is predicted 0: class 0 F1 2/3, class 1 1, U 0."""
    pred = [0, 1, 0]
    assert M.open_set_f1(pred, [0, 1, 2], [0.1, 0.1, 0.9], 0.5, num_classes=2) == pytest.approx(1.0)
    assert M.open_set_f1(pred, [0, 1, 2], [0.1, 0.1, 0.1], 0.5, num_classes=2) == pytest.approx((2 / 3 + 1) / 3)


def test_open_set_f1_float_labels_are_cast_to_integer_classes():
    """labels are converted like numpy's astype(int64) (toward zero): 1.7 is class 1, -0.5 is class 0."""
    pred, scores = [0, 1, 0], [0.1, 0.1, 0.1]
    assert M.open_set_f1(pred, np.array([-0.5, 1.7, 0.0]), scores, 0.5, num_classes=2) == pytest.approx(
        M.open_set_f1(pred, [0, 1, 0], scores, 0.5, num_classes=2))
    assert M.open_set_f1(pred, [0, 1, 0], scores, 0.5, num_classes=2) == pytest.approx(2 / 3)


def test_open_set_f1_prediction_is_an_integer_input_not_float_checked():
    """pred holds class indices (not float-checked): a -inf becomes a class index no label has, so that sample
    simply counts as misclassified."""
    scores = [0.1, 0.1, 0.1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's cast warning
        value = M.open_set_f1(np.array([0.0, 1.0, -np.inf]), [0, 1, 1], scores, 0.5, num_classes=2)
    assert value == pytest.approx(M.open_set_f1([0, 1, 5], [0, 1, 1], scores, 0.5, num_classes=2))


def test_open_set_f1_messages_name_the_inputs():
    with pytest.raises(ValueError, match=r"^labels must be 1-D, got shape \(1, 1\)$"):
        M.open_set_f1([0], [[0]], [0.1], 0.5)
    with pytest.raises(ValueError, match=r"^labels is empty$"):
        M.open_set_f1([0], [], [0.1], 0.5)


# ---------------------------------------------------------------- OSCR


def _oscr_brute(k, correct, u):
    ts = np.unique(np.r_[k, u])
    fpr = np.r_[0.0, [np.mean(u <= t) for t in ts]]
    ccr = np.r_[0.0, [np.sum(correct & (k <= t)) / len(k) for t in ts]]
    return fpr, ccr


@pytest.mark.parametrize("k, u", _cases())
def test_oscr_matches_a_brute_force_sweep(k, u):
    correct = np.arange(len(k)) % 3 != 0
    fpr, ccr = M.oscr_curve(k, correct, u)
    bf, bc = _oscr_brute(k, correct, u)
    np.testing.assert_allclose(fpr, bf)
    np.testing.assert_allclose(ccr, bc)
    assert M.oscr(k, correct, u) == pytest.approx(float(np.trapezoid(bc, bf)))


def _arpl_reference(x1, x2, correct):
    """The ARPL authors' compute_oscr loop (known-ness scores x1 of knowns, x2 of unknowns), as published."""
    m_x1 = np.zeros(len(x1))
    m_x1[correct] = 1
    k_target = np.concatenate((m_x1, np.zeros(len(x2))), axis=0)
    u_target = np.concatenate((np.zeros(len(x1)), np.ones(len(x2))), axis=0)
    predict = np.concatenate((x1, x2), axis=0)
    n = len(predict)
    CCR = [0 for _ in range(n + 2)]
    FPR = [0 for _ in range(n + 2)]
    idx = predict.argsort()
    s_k_target, s_u_target = k_target[idx], u_target[idx]
    for k in range(n - 1):
        CCR[k] = s_k_target[k + 1:].sum() / float(len(x1))
        FPR[k] = s_u_target[k:].sum() / float(len(x2))
    CCR[n], FPR[n] = 0.0, 0.0
    CCR[n + 1], FPR[n + 1] = 1.0, 1.0
    ROC = sorted(zip(FPR, CCR), reverse=True)
    OSCR = 0
    for j in range(n + 1):
        h = ROC[j][0] - ROC[j + 1][0]
        w = (ROC[j][1] + ROC[j + 1][1]) / 2.0
        OSCR = OSCR + h * w
    return OSCR


@pytest.mark.parametrize("k, u", _cases())
def test_oscr_arpl_matches_the_authors_loop(k, u):
    for correct in (np.arange(len(k)) % 3 != 0, np.ones(len(k), bool), np.arange(len(k)) % 2 == 0):
        assert M.oscr_arpl(k, correct, u) == pytest.approx(_arpl_reference(-k, -u, correct))


def test_oscr_arpl_small_cases_by_the_authors_loop():
    cases = [([0.1, 0.3], [True, False], [0.2]), ([0.5, 0.1, 0.2], [True, True, False], [0.05, 0.6]),
             ([0.9, 0.8], [True, True], [0.1, 0.2, 0.3]), ([0.2, 0.4, 0.6], [False, True, True], [0.3, 0.5])]
    for k, c, u in cases:
        k, c, u = np.array(k), np.array(c), np.array(u)
        assert M.oscr_arpl(k, c, u) == pytest.approx(_arpl_reference(-k, -u, c))


def test_oscr_arpl_lowest_score_unknown_by_hand():
    """knowns 0.5 (correct), 0.6 (correct); unknown 0.1 (the lowest). Known-ness order: -0.6, -0.5, -0.1:
    CCR = [1/2, 0, 0, 0, 1], FPR = [1, 1, 0, 0, 1]; descending points (1,1), (1,.5), (1,0), (0,0), (0,0):
    no width anywhere, area 0."""
    assert M.oscr_arpl([0.5, 0.6], [True, True], [0.1]) == pytest.approx(0.0)
    # the same with the unknown highest: order -0.9, -0.6, -0.5: CCR = [1, 1/2, 0, 0, 1], FPR = [1, 0, 0, 0, 1];
    # points (1,1), (1,1), (0,.5), (0,0), (0,0): area 1 * (1 + .5) / 2
    assert M.oscr_arpl([0.5, 0.6], [True, True], [0.9]) == pytest.approx(0.75)


@pytest.mark.parametrize("args, name", [
    (([[0.1]], [True], [0.2]), "known_scores"),
    (([0.1], [[True]], [0.2]), "known_correct"),
    (([0.1], [True], [[0.2]]), "unknown_scores"),
])
def test_oscr_arpl_messages_name_the_inputs(args, name):
    with pytest.raises(ValueError, match=rf"^{name} must be 1-D, got shape \(1, 1\)$"):
        M.oscr_arpl(*args)
    empty = [list(a) if i != ["known_scores", "known_correct", "unknown_scores"].index(name) else []
             for i, a in enumerate(args)]
    with pytest.raises(ValueError, match=rf"^{name} is empty$"):
        M.oscr_arpl(*empty)


# ---------------------------------------------------------------- ROC points


def _many_corner_case():
    rng = np.random.default_rng(5)
    k, u = rng.normal(0, 1, 400), rng.normal(0.3, 1, 400)
    y = np.r_[np.zeros(400), np.ones(400)]
    fpr, tpr, _ = roc_curve(y, np.r_[k, u])
    assert len(fpr) > 260  # enough corners to need thinning at the default 200 points
    return k, u, fpr, tpr


def test_roc_points_default_thins_to_exactly_200_evenly_spread_corners():
    k, u, fpr, tpr = _many_corner_case()
    pts = M.roc_points(k, u)
    assert len(pts["fpr"]) == len(pts["tpr"]) == 200
    assert (pts["fpr"][0], pts["tpr"][0]) == (0.0, 0.0) and (pts["fpr"][-1], pts["tpr"][-1]) == (1.0, 1.0)
    # every kept point is one of scikit-learn's corners, in order, with index gaps differing by at most one
    corners = list(zip(fpr.tolist(), tpr.tolist()))
    idx = [corners.index(p) for p in zip(pts["fpr"], pts["tpr"])]
    assert idx[0] == 0 and idx[-1] == len(corners) - 1
    gaps = np.diff(idx)
    assert gaps.min() >= 1 and gaps.max() - gaps.min() <= 1


def test_roc_points_at_or_below_the_limit_are_scikit_learns_curve():
    k, u, fpr, tpr = _many_corner_case()
    n = len(fpr)
    for limit in (n, n + 1):
        pts = M.roc_points(k, u, max_points=limit)
        assert pts == {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    assert len(M.roc_points(k, u, max_points=n - 1)["fpr"]) == n - 1
    few = M.roc_points(k, u, max_points=7)
    assert len(few["fpr"]) == 7 and few["fpr"][0] == 0.0 and few["tpr"][0] == 0.0


# ---------------------------------------------------------------- thresholds and input conversion


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.1, 0.25, 0.5, 0.99])
def test_threshold_at_known_rejection_is_numpys_linear_quantile(fraction):
    s = np.random.default_rng(3).normal(0, 1, 37)
    assert M.threshold_at_known_rejection(s, fraction) == pytest.approx(np.quantile(s, 1 - fraction))


def test_threshold_at_known_rejection_by_hand():
    # 1..5, reject 10% by default: quantile 0.9 = 1 + 0.9 * 4 = 4.6 (linear interpolation)
    assert M.threshold_at_known_rejection([3.0, 1.0, 5.0, 2.0, 4.0]) == pytest.approx(4.6)
    assert M.threshold_at_known_rejection(torch.tensor([3.0, 1.0, 5.0, 2.0, 4.0]), 0.5) == pytest.approx(3.0)
    assert M.threshold_at_known_rejection([7.0], 0.3) == 7.0
    with pytest.raises(ValueError, match=r"^reject_fraction must be in \[0, 1\), got 1\.0$"):
        M.threshold_at_known_rejection([1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match=r"^reject_fraction must be in \[0, 1\), got -0\.1$"):
        M.threshold_at_known_rejection([1.0, 2.0], -0.1)
    with pytest.raises(ValueError, match=r"^val_known_scores must be 1-D, got shape \(2, 1\)$"):
        M.threshold_at_known_rejection([[1.0], [2.0]])


def test_score_inputs_are_float64_and_tensors_are_detached():
    k = torch.tensor([0.1, 0.4], dtype=torch.float32, requires_grad=True)
    u = torch.tensor([0.2], dtype=torch.float64, requires_grad=True)
    assert M.auroc(k, u) == pytest.approx(0.5)
    # integer and boolean score arrays are converted, not rejected
    assert M.auroc(np.array([1, 4]), np.array([2])) == pytest.approx(0.5)
    assert M.auroc([False, False], [True]) == 1.0
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match=r"^unknown_scores contains NaN or infinite values; check the model "
                                             r"outputs$"):
            M.aupr_in([0.1], [0.2, bad])
