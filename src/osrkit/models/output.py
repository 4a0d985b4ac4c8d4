"""What every osrkit model's forward returns."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ModelOutput(NamedTuple):
    """logits (N, K) and the embedding (N, D) that feeds the last layer; extras for DHRNet etc."""

    logits: torch.Tensor
    embedding: torch.Tensor
    extras: dict | None = None
