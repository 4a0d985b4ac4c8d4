"""Cross-entropy with optional label smoothing: the loss of the softmax / MLS / energy baselines."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLoss(nn.Module):
    """`loss_fn(logits, labels)` → scalar; `last_terms` holds the value for logging."""

    def __init__(self, num_classes: int, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self.last_terms = {"ce": loss.detach()}
        return loss
