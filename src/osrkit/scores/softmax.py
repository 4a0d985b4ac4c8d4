"""Logit-based baselines: MSP (1 - max softmax), MLS (-max logit), energy (-logsumexp)."""

from __future__ import annotations

import math

import torch

from osrkit.outputs import Outputs
from osrkit.scores.base import Scorer, ScoreResult


class MSPScore(Scorer):
    """Maximum softmax probability (Hendrycks & Gimpel): unknown score 1 - max softmax."""

    uses_training_outputs = False

    name = "msp"

    def score(self, outputs: Outputs) -> ScoreResult:
        p = torch.softmax(outputs.logits.double(), dim=1)
        conf, pred = p.max(1)
        return ScoreResult(1.0 - conf, pred)

    def graph(self) -> torch.nn.Module:
        from osrkit.scores.graph import MSPGraph

        return MSPGraph()


class MLSScore(Scorer):
    """Maximum logit score (Vaze et al. 2022): unknown score -max logit."""

    uses_training_outputs = False

    name = "mls"

    def score(self, outputs: Outputs) -> ScoreResult:
        top, pred = outputs.logits.double().max(1)
        return ScoreResult(-top, pred)

    def graph(self) -> torch.nn.Module:
        from osrkit.scores.graph import MLSGraph

        return MLSGraph()


class EnergyScore(Scorer):
    """Energy (Liu et al. 2020): unknown score -T·logsumexp(logits/T)."""

    uses_training_outputs = False

    name = "energy"

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = _positive_temperature(temperature)

    def score(self, outputs: Outputs) -> ScoreResult:
        z = outputs.logits.double()
        return ScoreResult(-self.temperature * torch.logsumexp(z / self.temperature, dim=1), z.argmax(1))

    def graph(self) -> torch.nn.Module:
        from osrkit.scores.graph import EnergyGraph

        return EnergyGraph(self.temperature)

    def state_dict(self) -> dict:
        return {"temperature": self.temperature}

    def load_state_dict(self, state: dict) -> "EnergyScore":
        """A state without a temperature was saved at the default, 1.0."""
        self.temperature = _positive_temperature(state.get("temperature", 1.0))
        return self


def _positive_temperature(t: float) -> float:
    """T as a float; 0, negative (which reverses the score's direction) or non-finite T is an error."""
    value = float(t)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"energy temperature must be a positive finite number, got {t}")
    return value
