"""CROSR's training loss: cross-entropy on the logits + weighted reconstruction error of DHRNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from osrkit.models.output import ModelOutput


def reconstruction_loss(output: ModelOutput, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the input and DHRNet's reconstruction (mean over all elements)."""
    return F.mse_loss(output.extras["reconstruction"], x)


def crosr_loss(
    output: ModelOutput, x: torch.Tensor, labels: torch.Tensor, recon_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CROSR's training loss: cross-entropy(y) + recon_weight * MSE(x, x~_1).

    Returns (total, {"ce": ..., "recon": ...}); the parts are detached scalars, for logging.
    """
    ce = F.cross_entropy(output.logits, labels)
    recon = reconstruction_loss(output, x)
    total = ce + recon_weight * recon
    return total, {"ce": ce.detach(), "recon": recon.detach()}


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
