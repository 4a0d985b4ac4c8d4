"""Classifier heads that replace a backbone's last Linear layer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CosineLinear", "make_classifier", "make_neck"]


class CosineLinear(nn.Module):
    """Cosine-similarity head: out[n, k] = cos theta_k = normalize(w_k) . normalize(f_n), shape (N, K).

    The m-OvR head (Park et al. 2024): learnable prototypes w_k (no bias); both the prototypes and the
    embedding are unit-normalised, so outputs lie in [-1, 1] and the loss's temperature sets the scale.
    """

    def __init__(self, in_features: int, num_classes: int, eps: float = 1e-12) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError(f"in_features and num_classes must be >= 1, got {in_features}, {num_classes}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Same init as nn.Linear's weight (only the prototypes' directions matter)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    @property
    def prototypes(self) -> torch.Tensor:
        """The unit-normalised prototypes (K, D)."""
        return F.normalize(self.weight, dim=1, eps=self.eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(f"expected features (N, {self.in_features}), got shape {tuple(features.shape)}")
        return F.linear(F.normalize(features, dim=1, eps=self.eps), self.prototypes)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"


def make_classifier(kind: str, in_features: int, num_classes: int, bias: bool = True) -> nn.Module:
    """The last layer: "linear" (logits) or "cosine" (cosines to learnable prototypes, for m-OvR)."""
    if kind == "linear":
        return nn.Linear(in_features, num_classes, bias=bias)
    if kind == "cosine":
        return CosineLinear(in_features, num_classes)
    raise ValueError(f"unknown classifier {kind!r}; choose linear or cosine")


def make_neck(in_features: int, dim: int) -> tuple[nn.Module, int]:
    """An embedding neck before the classifier: Linear(in, dim, no bias) + BatchNorm1d(dim) when dim > 0
    (centres the pooled post-activation features, which otherwise sit in one orthant and so in a narrow
    cone of angles, which is what a cosine head sees); the identity when dim == 0. Returns (neck, out_dim)."""
    if dim < 0:
        raise ValueError(f"neck must be >= 0 (0 = none), got {dim}")
    if dim == 0:
        return nn.Identity(), in_features
    return nn.Sequential(nn.Linear(in_features, dim, bias=False), nn.BatchNorm1d(dim)), dim
