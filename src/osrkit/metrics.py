"""Open-set metrics. Inputs are numpy arrays or torch tensors; outputs are Python floats.

Convention: an unknown score is higher for inputs more likely unknown; unknown = positive class.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve


def _as_1d(x, name: str, dtype=np.float64) -> np.ndarray:
    """Validate and convert to a finite 1-D numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    arr = arr.astype(dtype)
    if dtype is np.float64 and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; check the model outputs")
    return arr


def _binary(known_scores, unknown_scores) -> tuple[np.ndarray, np.ndarray]:
    k = _as_1d(known_scores, "known_scores")
    u = _as_1d(unknown_scores, "unknown_scores")
    y = np.concatenate([np.zeros(len(k)), np.ones(len(u))])
    return y, np.concatenate([k, u])


def auroc(known_scores, unknown_scores) -> float:
    """Area under the ROC curve, unknowns as the positive class."""
    y, s = _binary(known_scores, unknown_scores)
    return float(roc_auc_score(y, s))


def aupr_out(known_scores, unknown_scores) -> float:
    """Average precision with unknowns as positives (AUPR-out)."""
    y, s = _binary(known_scores, unknown_scores)
    return float(average_precision_score(y, s))


def aupr_in(known_scores, unknown_scores) -> float:
    """Average precision with knowns as positives, ranked by -unknown score (AUPR-in)."""
    y, s = _binary(known_scores, unknown_scores)
    return float(average_precision_score(1 - y, -s))


def fpr_at_tpr(known_scores, unknown_scores, tpr: float = 0.95) -> float:
    """FPR at `tpr` TPR, the OOD literature's convention (knowns are the positives): the fraction of
    unknowns accepted (score <= t) at the strictest threshold t that accepts `tpr` of the knowns."""
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    y, s = _binary(known_scores, unknown_scores)
    fpr, tpr_curve, _ = roc_curve(1 - y, -s, drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr_curve, tpr - 1e-12, side="left")])


def accuracy(predictions, labels) -> float:
    """Closed-set accuracy on known test samples."""
    p = _as_1d(predictions, "predictions", np.int64)
    t = _as_1d(labels, "labels", np.int64)
    if len(p) != len(t):
        raise ValueError(f"predictions ({len(p)}) and labels ({len(t)}) differ in length")
    return float(np.mean(p == t))


def oscr_curve(known_scores, known_correct, unknown_scores) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, CCR) points of the OSCR curve, t sweeping all scores (see `oscr`), starting at (0, 0)."""
    k = _as_1d(known_scores, "known_scores")
    c = _as_1d(known_correct, "known_correct", bool)
    u = _as_1d(unknown_scores, "unknown_scores")
    if len(k) != len(c):
        raise ValueError(f"known_scores ({len(k)}) and known_correct ({len(c)}) differ in length")
    thresholds = np.unique(np.concatenate([k, u]))
    ccr_counts = np.searchsorted(np.sort(k[c]), thresholds, side="right")
    fpr_counts = np.searchsorted(np.sort(u), thresholds, side="right")
    return (np.concatenate([[0.0], fpr_counts / len(u)]), np.concatenate([[0.0], ccr_counts / len(k)]))


def oscr(known_scores, known_correct, unknown_scores) -> float:
    """Open-set classification rate (Dhamija et al. 2018), exact.

    Area under CCR(t) against FPR(t), t sweeping all scores: a known sample counts when its unknown
    score <= t and it is correctly classified; FPR(t) = fraction of unknowns with score <= t.
    Starts at (0, 0), ends at (1, accuracy); samples with equal scores enter together; trapezoidal.
    """
    fpr, ccr = oscr_curve(known_scores, known_correct, unknown_scores)
    return float(np.sum((fpr[1:] - fpr[:-1]) * (ccr[1:] + ccr[:-1]) / 2.0))


def roc_points(known_scores, unknown_scores, max_points: int = 200) -> dict[str, list[float]]:
    """The ROC curve (unknowns positive) as at most `max_points` (fpr, tpr) points, for storing with a result:
    scikit-learn's corners, thinned evenly when there are more."""
    y, s = _binary(known_scores, unknown_scores)
    fpr, tpr, _ = roc_curve(y, s)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}


def oscr_arpl(known_scores, known_correct, unknown_scores) -> float:
    """The ARPL code's OSCR variant (off-by-one sweep, ties not grouped), for published-table parity.

    ARPL scores known-ness (higher = known); we negate our unknown scores to feed its loop.
    """
    x1 = -_as_1d(known_scores, "known_scores")
    c = _as_1d(known_correct, "known_correct", bool)
    x2 = -_as_1d(unknown_scores, "unknown_scores")
    m_x1 = np.zeros(len(x1))
    m_x1[c] = 1
    k_target = np.concatenate((m_x1, np.zeros(len(x2))), axis=0)
    u_target = np.concatenate((np.zeros(len(x1)), np.ones(len(x2))), axis=0)
    predict = np.concatenate((x1, x2), axis=0)
    n = len(predict)
    ccr = [0.0] * (n + 2)
    fpr = [0.0] * (n + 2)
    order = predict.argsort()
    s_k, s_u = k_target[order], u_target[order]
    for k in range(n - 1):
        ccr[k] = s_k[k + 1 :].sum() / float(len(x1))
        fpr[k] = s_u[k:].sum() / float(len(x2))
    ccr[n] = 0.0
    fpr[n] = 0.0
    ccr[n + 1] = 1.0
    fpr[n + 1] = 1.0
    pts = sorted(zip(fpr, ccr), reverse=True)
    return float(sum((pts[j][0] - pts[j + 1][0]) * (pts[j][1] + pts[j + 1][1]) / 2.0 for j in range(n + 1)))


def open_set_predictions(predictions, known_scores_or_all, threshold: float, unknown_label: int) -> np.ndarray:
    """Class predictions with `unknown_label` wherever the unknown score exceeds `threshold`."""
    p = _as_1d(predictions, "predictions", np.int64).copy()
    s = _as_1d(known_scores_or_all, "unknown scores")
    if len(p) != len(s):
        raise ValueError(f"predictions ({len(p)}) and scores ({len(s)}) differ in length")
    p[s > threshold] = unknown_label
    return p


def open_set_f1(pred, labels, known_scores, threshold: float, num_classes: int | None = None) -> float:
    """Macro-F1 over the K known classes plus "unknown" (CROSR protocol).

    pred: closed-set predictions (N,); labels: true labels (N,), unknowns labelled -1 (or K when
    `num_classes` = K is given); known_scores: unknown scores (N,) of the same samples. A sample
    whose score exceeds `threshold` is predicted "unknown". K defaults to 1 + the largest label/pred.
    """
    p = _as_1d(pred, "pred", np.int64)
    t = _as_1d(labels, "labels", np.int64).copy()
    if len(p) != len(t):
        raise ValueError(f"pred ({len(p)}) and labels ({len(t)}) differ in length")
    k = int(num_classes) if num_classes is not None else int(max(p.max(), t.max())) + 1
    t[(t < 0) | (t >= k)] = k
    op = open_set_predictions(p, known_scores, threshold, k)
    return float(f1_score(t, op, labels=list(range(k + 1)), average="macro", zero_division=0))


def threshold_at_known_rejection(val_known_scores, reject_fraction: float = 0.1) -> float:
    """Threshold rejecting `reject_fraction` of validation knowns (CROSR follow-ups: 10%)."""
    s = _as_1d(val_known_scores, "val_known_scores")
    if not 0.0 <= reject_fraction < 1.0:
        raise ValueError(f"reject_fraction must be in [0, 1), got {reject_fraction}")
    return float(np.quantile(s, 1.0 - reject_fraction))
