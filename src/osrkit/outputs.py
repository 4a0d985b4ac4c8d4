"""The numbers a network produces for a set of inputs: what scorers and metrics consume.

Scorers see only `Outputs`, never models, so a scorer works on any network and on saved outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Outputs:
    """Network outputs for N inputs.

    logits: (N, K) classifier outputs; embedding: (N, D) representation before the last layer;
    labels: (N,) known-class labels (0..K-1) when known, else None;
    extras: method-specific tensors keyed by name (e.g. "latents" for DHRNet, "distances" for CAC).
    """

    logits: torch.Tensor
    embedding: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.logits.shape[0])
