"""CAC's distance-based unknown score: min_k d_k (1 - softmin(d)_k); prediction = its argmin."""

from __future__ import annotations

import torch

from osrkit.losses.cac import class_means_of_correct
from osrkit.outputs import Outputs
from osrkit.scores.base import Scorer, ScoreResult


def cac_score(distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unknown_scores, predictions) from (N, K) anchor distances."""
    if distances.ndim != 2:
        raise ValueError(f"distances must be (N, K), got {tuple(distances.shape)}")
    per_class = distances * (1 - torch.softmax(-distances, dim=1))
    scores, pred = per_class.min(1)
    return scores, pred


class CACScore(Scorer):
    """Fit: anchors ← per-class mean logits of correctly classified training samples. Score: `cac_score`."""

    name = "cac"

    def __init__(self, num_classes: int | None = None, anchors: torch.Tensor | None = None) -> None:
        self.anchors = anchors

    def fit(self, outputs: Outputs) -> "CACScore":
        if outputs.labels is None:
            raise ValueError("CAC scorer fit needs training outputs with labels")
        self.anchors = class_means_of_correct(outputs.logits.double(), outputs.labels, outputs.logits.shape[1])
        return self

    def distances(self, logits: torch.Tensor) -> torch.Tensor:
        if self.anchors is None:
            raise RuntimeError("CAC scorer is not fitted: call fit(train_outputs) first")
        return torch.cdist(logits.double(), self.anchors.double())

    def score(self, outputs: Outputs) -> ScoreResult:
        return ScoreResult(*cac_score(self.distances(outputs.logits)))

    def graph(self) -> torch.nn.Module:
        from osrkit.scores.graph import CACGraph

        if self.anchors is None:
            raise RuntimeError("CAC scorer is not fitted: call fit(train_outputs) first")
        return CACGraph(self.anchors)

    def state_dict(self) -> dict:
        return {"anchors": self.anchors}

    def load_state_dict(self, state: dict) -> "CACScore":
        self.anchors = state["anchors"]
        return self
