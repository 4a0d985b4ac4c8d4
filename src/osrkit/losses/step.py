"""How the training loop turns a model output into a loss: the default (logits only) and its type."""

from __future__ import annotations

from typing import Callable

import torch

from osrkit.models.output import ModelOutput

LossStep = Callable[[torch.nn.Module, ModelOutput, torch.Tensor, torch.Tensor], torch.Tensor]


def default_loss_step(loss_fn: torch.nn.Module, out: ModelOutput, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Losses that read only the logits and the labels (cross-entropy, CAC, OvR)."""
    return loss_fn(out.logits, y)
