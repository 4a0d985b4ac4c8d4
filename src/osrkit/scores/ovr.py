"""Unknown scores for one-vs-rest classifiers: plain OvR and m-OvR (Park et al. 2024).

The paper scores by the "sample-wise loss" evaluated without a label, i.e. the OvR loss at the predicted
class y_hat = argmax_k z_k. Readings offered (``kind``); z = raw logits (OvR) or cos theta_k (m-OvR):
- "loss": -log sigmoid(T z_yhat) - sum_{k != yhat} log(1 - sigmoid(T z_k)), no margin (OvR's default).
- "loss_margin" (m-OvR): the same with the training margin applied as in training, s = margin_logits(z, y_hat):
  the loss the network was trained to make small on knowns.
- "target": the target term alone, -log sigmoid(T s_yhat) (with the training margin).
- "max_cos": -max_k z_k (for m-OvR: minus the largest cosine).
- "max_sigmoid": -max_k sigmoid(T z_k).
- "max_projection" (m-OvR; not in the paper): -||f|| max_k cos theta_k, the largest projection of the embedding
  f on a unit prototype: the cosine head's max logit, which keeps the feature norm that normalisation discards.
"target", "max_cos" and "max_sigmoid" rank samples identically (monotone in max z); they differ in scale only.
Higher = more likely unknown; predictions = argmax_k z_k.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from osrkit.losses.ovr import MARGIN_ON, margin_logits, ovr_sample_loss
from osrkit.outputs import Outputs
from osrkit.scores.base import Scorer, ScoreResult

__all__ = ["OvRScore", "MOvRScore", "OVR_SCORE_KINDS", "MOVR_SCORE_KINDS"]

OVR_SCORE_KINDS = ("loss", "max_sigmoid", "max_cos")
MOVR_SCORE_KINDS = ("loss_margin", "target", "max_cos", "loss", "max_sigmoid", "max_projection")


def _log_sigmoid_target(s: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    return -F.logsigmoid(s.gather(1, pred.view(-1, 1)).squeeze(1))


class _OvRScoreBase(Scorer):
    """Shared code: the two scorers differ in their default temperature, their kinds and the margin."""

    uses_training_outputs = False

    name = "ovr-base"
    default_temperature = 1.0
    kinds: tuple[str, ...] = OVR_SCORE_KINDS

    def __init__(self, kind: str = "loss", temperature: float | None = None) -> None:
        self.kind = self._check_kind(kind)
        t = self.default_temperature if temperature is None else float(temperature)
        if not (t > 0 and math.isfinite(t)):
            raise ValueError(f"temperature must be a positive finite number, got {temperature}")
        self.temperature = t

    def _check_kind(self, kind: str) -> str:
        if kind not in self.kinds:
            raise ValueError(f"score kind must be one of {', '.join(self.kinds)}, got {kind!r}")
        return kind

    def fit(self, outputs: Outputs) -> "_OvRScoreBase":
        """Nothing to fit (kept for the common life cycle)."""
        return self

    def _margin(self, z: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        return z

    def _scale(self, outputs: Outputs, z: torch.Tensor) -> torch.Tensor | float:
        """The logits' scale: the temperature (m-OvR without embedding normalisation: each ||f||)."""
        return self.temperature

    def score(self, outputs: Outputs) -> ScoreResult:
        logits = outputs.logits
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] < 1:
            raise ValueError(f"outputs.logits must be a tensor (N, K), got {getattr(logits, 'shape', type(logits))}")
        z = logits.detach().double()  # float64: sigmoid(T z) saturates in float32 at T = 32
        pred = logits.argmax(dim=1)
        t = self._scale(outputs, z) if self.kind in ("loss", "loss_margin", "target", "max_sigmoid") else None
        if self.kind == "loss":
            scores = ovr_sample_loss(t * z, pred)
        elif self.kind == "loss_margin":
            scores = ovr_sample_loss(t * self._margin(z, pred), pred)
        elif self.kind == "target":
            scores = _log_sigmoid_target(t * self._margin(z, pred), pred)
        elif self.kind == "max_cos":
            scores = -z.max(dim=1).values
        elif self.kind == "max_projection":
            if outputs.embedding is None or outputs.embedding.shape[0] != z.shape[0]:
                raise ValueError("score 'max_projection' needs the embedding in the outputs (N, D)")
            scores = -z.max(dim=1).values * outputs.embedding.detach().double().norm(dim=1)
        else:
            scores = -torch.sigmoid(t * z).max(dim=1).values
        return ScoreResult(scores, pred)

    def graph(self) -> torch.nn.Module:
        from osrkit.scores.graph import OvRGraph

        return OvRGraph(self.kind, self.temperature)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "temperature": self.temperature}

    def load_state_dict(self, state: dict[str, Any]) -> "_OvRScoreBase":
        """Keys the state leaves out keep their current values; the constructor's checks apply to the rest."""
        self.__init__(**{**self.state_dict(), **state})
        return self


class OvRScore(_OvRScoreBase):
    """Plain OvR: logits are raw; default temperature 1 (the loss the model was trained with)."""

    name = "ovr"
    default_temperature = 1.0


class MOvRScore(_OvRScoreBase):
    """m-OvR: logits are cos theta_k from ``CosineLinear``; default temperature 32 (the training T).

    `margin`/`margin_on` are the training loss's, used by "loss_margin" and "target" (see module doc).
    With ``embedding_norm=False`` (trained without the embedding-normalisation extra) the scale of the loss
    readings is each sample's ||f||, as in training, instead of T.
    """

    name = "m-ovr"
    default_temperature = 32.0
    kinds = MOVR_SCORE_KINDS

    def __init__(self, kind: str = "target", temperature: float | None = None, margin: float = 0.5,
                 margin_on: str = "all", embedding_norm: bool = True) -> None:
        super().__init__(kind, temperature)
        self.embedding_norm = bool(embedding_norm)
        if margin_on not in MARGIN_ON:
            raise ValueError(f"margin_on must be one of {', '.join(MARGIN_ON)}, got {margin_on!r}")
        if not math.isfinite(float(margin)):
            raise ValueError(f"margin must be finite, got {margin}")
        self.margin, self.margin_on = float(margin), margin_on

    def _margin(self, z: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        return margin_logits(z, pred, self.margin, self.margin_on)

    def _scale(self, outputs: Outputs, z: torch.Tensor) -> torch.Tensor | float:
        if self.embedding_norm:
            return self.temperature
        if outputs.embedding is None or outputs.embedding.shape[0] != z.shape[0]:
            raise ValueError(f"score {self.kind!r} without embedding normalisation needs the embedding in the outputs")
        return outputs.embedding.detach().double().norm(dim=1, keepdim=True)

    def graph(self) -> torch.nn.Module:
        from osrkit.scores.graph import OvRGraph

        return OvRGraph(self.kind, self.temperature, self.margin, self.margin_on, embedding_norm=self.embedding_norm)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "margin": self.margin, "margin_on": self.margin_on,
                "embedding_norm": self.embedding_norm}
