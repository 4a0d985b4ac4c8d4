"""The life cycle every unknown detector shares: fit on training outputs, then score test outputs."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from osrkit.outputs import Outputs


class ScoreResult(NamedTuple):
    """Unknown scores (higher = more likely unknown) and predicted known classes, both (N,)."""

    unknown_scores: torch.Tensor
    predictions: torch.Tensor


class Scorer:
    """Base class: `fit(train_outputs)` then `score(test_outputs)`.

    A scorer is fitted even when it needs nothing (MSP), so every method has one life cycle;
    its fitted state (tensors and plain types only) is saved in the checkpoint.
    """

    name: str = "scorer"
    # False for scorers whose fit ignores the training outputs (MSP, MLS, energy, OvR): the pipeline then
    # skips the forward pass over the training set (a third of a fast run's evaluation time)
    uses_training_outputs: bool = True

    def fit(self, outputs: Outputs) -> "Scorer":
        return self

    def score(self, outputs: Outputs) -> ScoreResult:
        raise NotImplementedError

    def graph(self) -> torch.nn.Module:
        """The fitted scorer as a traceable module (osrkit.scores.graph), for exported graphs."""
        raise ValueError(f"the {self.name} scorer has no graph form, so this method cannot be exported")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> "Scorer":
        return self
