"""CROSR's training loss: cross-entropy on the logits + weighted reconstruction error of DHRNet."""

from __future__ import annotations

import torch
from torch import nn

from osrkit.models.dhrnet import crosr_loss
from osrkit.models.output import ModelOutput


class ClassificationReconstructionLoss(nn.Module):
    """`loss_fn(output, x, labels)` → CE + recon_weight · MSE(x̃, x); terms in `last_terms`."""

    def __init__(self, num_classes: int, recon_weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes, self.recon_weight = num_classes, float(recon_weight)
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, output: ModelOutput, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total, terms = crosr_loss(output, x, labels, recon_weight=self.recon_weight)
        self.last_terms = terms
        return total


def reconstruction_step(loss_fn: nn.Module, out: ModelOutput, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Engine adapter: this loss needs the whole model output and the input, not only the logits."""
    return loss_fn(out, x, y)
