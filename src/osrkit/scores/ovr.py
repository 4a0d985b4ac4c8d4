"""Unknown scores for one-vs-rest classifiers: plain OvR and m-OvR (Park et al. 2024).

Default ("loss"): the "sample-wise loss" evaluated without a label, i.e. the OvR loss at the
predicted class y_hat = argmax_k logit_k, with no margin:
    score = -log sigmoid(T z_yhat) - sum_{k != yhat} log(1 - sigmoid(T z_k)),
where z = raw logits (OvR, T = 1 by default) or cos theta_k (m-OvR, T = 32 by default).
Alternative ("max_sigmoid"): -max_k sigmoid(T z_k). Higher = more likely unknown; predictions = argmax.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from osrkit.losses.ovr import ovr_sample_loss
from osrkit.outputs import Outputs
from osrkit.scores.base import Scorer, ScoreResult

__all__ = ["OvRScore", "MOvRScore", "OVR_SCORE_KINDS"]

OVR_SCORE_KINDS = ("loss", "max_sigmoid")


class _OvRScoreBase(Scorer):
    """Shared code: the two scorers differ only in their default temperature and what the logits are."""

    name = "ovr-base"
    default_temperature = 1.0

    def __init__(self, kind: str = "loss", temperature: float | None = None) -> None:
        if kind not in OVR_SCORE_KINDS:
            raise ValueError(f"kind must be one of {OVR_SCORE_KINDS}, got {kind!r}")
        t = self.default_temperature if temperature is None else float(temperature)
        if not (t > 0 and math.isfinite(t)):
            raise ValueError(f"temperature must be a positive finite number, got {temperature}")
        self.kind = kind
        self.temperature = t

    def fit(self, outputs: Outputs) -> "_OvRScoreBase":
        """Nothing to fit (kept for the common life cycle)."""
        return self

    def score(self, outputs: Outputs) -> ScoreResult:
        logits = outputs.logits
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] < 1:
            raise ValueError(f"outputs.logits must be a tensor (N, K), got {getattr(logits, 'shape', type(logits))}")
        z = logits.detach().double() * self.temperature  # float64: sigmoid(T z) saturates in float32 at T = 32
        pred = logits.argmax(dim=1)
        if self.kind == "loss":
            scores = ovr_sample_loss(z, pred)
        else:
            scores = -torch.sigmoid(z).max(dim=1).values
        return ScoreResult(scores, pred)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "temperature": self.temperature}

    def load_state_dict(self, state: dict[str, Any]) -> "_OvRScoreBase":
        kind = state.get("kind", self.kind)
        if kind not in OVR_SCORE_KINDS:
            raise ValueError(f"kind must be one of {OVR_SCORE_KINDS}, got {kind!r}")
        self.kind = kind
        self.temperature = float(state.get("temperature", self.temperature))
        return self


class OvRScore(_OvRScoreBase):
    """Plain OvR: logits are raw; default temperature 1 (the loss the model was trained with)."""

    name = "ovr"
    default_temperature = 1.0


class MOvRScore(_OvRScoreBase):
    """m-OvR: logits are cos theta_k from ``CosineLinear``; default temperature 32 (the training T), no margin."""

    name = "m-ovr"
    default_temperature = 32.0
