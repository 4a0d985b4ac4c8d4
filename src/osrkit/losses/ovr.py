"""One-vs-rest losses: plain OvR (baseline) and m-OvR (Park et al. 2024, angular margin on cosines).

Both sum a binary cross-entropy over the K classes (class y positive, the others negative) and
average over the batch. ``ovr_sample_loss`` gives the per-sample values, which the m-OvR unknown
score reuses (evaluated at the predicted class, without margin).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OvRLoss", "MOvRLoss", "ovr_sample_loss", "margin_logits", "apply_margin", "angular_shift", "MARGIN_ON"]

MARGIN_ON = ("all", "target", "two-sided")
_EPS = 1e-7


def _check(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(f"logits must be a tensor (N, K), got {getattr(logits, 'shape', type(logits))}")
    if not torch.is_floating_point(logits):
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"logits have {logits.shape[1]} classes, the loss expects {num_classes}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must be a 1-d tensor of length {logits.shape[0]}, got {getattr(labels, 'shape', type(labels))}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1] - 1}], got range [{int(labels.min())}, {int(labels.max())}]")


def angular_shift(cosines: torch.Tensor, theta: torch.Tensor, margin: float) -> torch.Tensor:
    """cos(theta + m), continued outside theta + m in [0, pi] by cos theta -/+ (1 - cos m), so it stays continuous and
    decreasing in theta. As printed, cos(theta + m) turns back there: a target nearly opposite its prototype
    (theta > pi - m) would be pushed further away, and in the two-sided reading (m < 0 for the non-targets) a
    non-target within m of a sample would be pulled closer (the guard ArcFace-style heads use, made continuous)."""
    phi = theta + margin
    jump = 1.0 - math.cos(margin)
    shifted = torch.where(phi > math.pi, cosines - jump, torch.cos(phi))
    return torch.where(phi < 0, cosines + jump, shifted)


def apply_margin(
    cosines: torch.Tensor, target: torch.Tensor | None, margin: float, margin_on: str = "all", eps: float = _EPS
) -> torch.Tensor:
    """The margin of ``margin_logits`` given a boolean (N, K) mask of the target entries (None for "all")."""
    if margin_on not in MARGIN_ON:
        raise ValueError(f"margin_on must be one of {MARGIN_ON}, got {margin_on!r}")
    if margin == 0:
        return cosines
    clamped = cosines.clamp(-1 + eps, 1 - eps)
    theta = torch.acos(clamped)
    shifted = angular_shift(clamped, theta, margin)
    if margin_on == "all":
        return shifted
    if target is None:
        raise ValueError(f"margin_on={margin_on!r} needs labels")
    other = cosines if margin_on == "target" else angular_shift(clamped, theta, -margin)
    return torch.where(target, shifted, other)


def margin_logits(
    cosines: torch.Tensor,
    labels: torch.Tensor | None,
    margin: float,
    margin_on: str = "all",
    eps: float = _EPS,
) -> torch.Tensor:
    """s_k = cos(theta_k + m), theta_k = arccos(clamp(cos theta_k, -1+eps, 1-eps)).

    margin_on="all": every class gets cos(theta + m), as published; "target": only k = y (labels required);
    "two-sided": the target cos(theta + m), the non-targets cos(theta - m) (each side must win by m).
    With m = 0 the cosines are returned unchanged (no clamp), so the scores see exact values. Where
    theta +/- m leaves [0, pi], the formula is continued monotonically (see ``angular_shift``).
    """
    target = None if labels is None else F.one_hot(labels.long(), cosines.shape[1]).bool()
    return apply_margin(cosines, target, margin, margin_on, eps)


def ovr_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) per-sample one-vs-rest loss: sum_k BCE-with-logits(logits[:, k], 1{y = k})."""
    targets = F.one_hot(labels.long(), logits.shape[1]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(1)


class OvRLoss(nn.Module):
    """Plain one-vs-rest loss on raw logits (N, K): per-class BCE vs one-hot, summed over classes, batch mean."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check(logits, labels, self.num_classes)
        return ovr_sample_loss(logits, labels).mean()


class MOvRLoss(nn.Module):
    """m-OvR loss on cosines (N, K) from ``CosineLinear``.

    L = -sum_k [1{y=k} log sigmoid(T s_k) + 1{y!=k} log(1 - sigmoid(T s_k))], s_k = cos(theta_k + m),
    summed over classes and averaged over the batch. Defaults T = 32, m = 0.5 rad, margin on every
    class (``margin_on="all"``; the paper leaves open whether only the target gets it: "target"; or
    "two-sided": target cos(theta + m), non-targets cos(theta - m)).

    ``embedding_norm`` is the paper's "embedding normalisation" extra, on by default: the scale is the fixed T.
    Off, the scale is each sample's embedding norm ||f|| (SphereFace's reading of an unnormalised embedding
    against unit prototypes), so ``forward`` needs the norms and T is unused.
    """

    def __init__(self, num_classes: int, temperature: float = 32.0, margin: float = 0.5, margin_on: str = "all",
                 embedding_norm: bool = True) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a positive finite number, got {temperature}")
        if not math.isfinite(margin):
            raise ValueError(f"margin must be finite, got {margin}")
        if margin_on not in MARGIN_ON:
            raise ValueError(f"margin_on must be one of {MARGIN_ON}, got {margin_on!r}")
        self.num_classes = num_classes
        self.temperature = float(temperature)
        self.margin = float(margin)
        self.margin_on = margin_on
        self.embedding_norm = bool(embedding_norm)

    @property
    def needs_embedding_norms(self) -> bool:
        """Whether ``forward`` needs each sample's embedding norm (the scale when the embedding is not normalised)."""
        return not self.embedding_norm

    def forward(self, cosines: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor | None = None) -> torch.Tensor:
        _check(cosines, labels, self.num_classes)
        s = margin_logits(cosines, labels, self.margin, self.margin_on)
        return ovr_sample_loss(self._scale(norms, cosines) * s, labels).mean()

    def _scale(self, norms: torch.Tensor | None, cosines: torch.Tensor) -> torch.Tensor | float:
        """T, or the (N, 1) embedding norms when the embedding is not normalised."""
        if self.embedding_norm:
            return self.temperature
        if norms is None or norms.shape != (cosines.shape[0],):
            raise ValueError(f"embedding_norm=False needs the embedding norms, shape ({cosines.shape[0]},), got "
                             f"{None if norms is None else tuple(norms.shape)}")
        return norms.to(cosines.dtype).unsqueeze(1)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, temperature={self.temperature}, margin={self.margin}, "
                f"margin_on={self.margin_on!r}, embedding_norm={self.embedding_norm}")
