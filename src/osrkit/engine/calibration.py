"""Operating points: the unknown-score threshold a deployed model rejects at, calibrated on validation knowns.

A sample is predicted "unknown" when its unknown score is above the threshold. `threshold_at_tpr(s, 0.95)`
keeps 95% of the validation knowns (the true positive rate of known-vs-unknown detection, knowns positive).
The open-set F1 metric keeps its own rule (reject 10% of validation knowns, as CROSR's follow-ups do).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from osrkit import metrics as M

DEFAULT_TPR = 0.95  # the deployed operating point: keep 95% of validation knowns
F1_REJECT_FRACTION = 0.1  # the F1 metric's rule (CROSR follow-ups): reject 10% of validation knowns


def check_tpr(tpr: float) -> float:
    """`tpr` as a float in (0, 1], or a ValueError naming the allowed range."""
    try:
        q = float(tpr)
    except (TypeError, ValueError):
        raise ValueError(f"--tpr must be a number in (0, 1], got {tpr!r}") from None
    if not 0.0 < q <= 1.0:
        raise ValueError(f"--tpr must be in (0, 1] (the share of validation knowns kept), got {tpr}")
    return q


def threshold_at_tpr(val_known_scores, tpr: float = DEFAULT_TPR) -> float:
    """The smallest validation score that keeps at least the share `tpr` of validation knowns (score <=
    threshold): the empirical quantile by the inverted CDF, so the promise holds on the validation set."""
    s = np.asarray(torch.as_tensor(val_known_scores, dtype=torch.float64).cpu().numpy()).ravel()
    if s.size == 0 or not np.isfinite(s).all():
        raise ValueError("validation scores must be a non-empty array of finite numbers")
    return float(np.quantile(s, check_tpr(tpr), method="inverted_cdf"))


def operating_point(val_known_scores: torch.Tensor, tpr: float = DEFAULT_TPR) -> dict[str, Any]:
    """Checkpoint entry: threshold, the tpr it keeps and on how many validation knowns it was set."""
    return {"threshold": threshold_at_tpr(val_known_scores, tpr), "tpr": check_tpr(tpr),
            "num_val_known": int(len(val_known_scores)),
            "rule": f"keeps {100 * check_tpr(tpr):g}% of the validation knowns"}


def calibration_entries(val_known_scores: torch.Tensor | None, tpr: float = DEFAULT_TPR,
                        f1_reject: float = F1_REJECT_FRACTION) -> dict[str, Any]:
    """What a checkpoint stores about thresholds: the operating point, the F1 threshold and the validation
    scores (so `predict --tpr Q` can move the operating point without the data)."""
    if val_known_scores is None or len(val_known_scores) == 0:
        return {"operating_point": None, "f1_threshold": None, "f1_reject": f1_reject, "val_known_scores": None}
    scores = torch.as_tensor(val_known_scores, dtype=torch.float64).cpu()
    return {"operating_point": operating_point(scores, tpr),
            "f1_threshold": M.threshold_at_known_rejection(scores, f1_reject), "f1_reject": f1_reject,
            "val_known_scores": scores}
