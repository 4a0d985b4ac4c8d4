"""Auxiliary 4-way rotation prediction (one of m-OvR's "final model" extras, Park et al. 2024).

Each training batch is also shown once rotated: every image by a random multiple of 90 degrees
(one draw per image), and a linear head on the embedding predicts which. The total loss is
base(logits, y) + weight * CE(head(embedding of the rotated batch), rotation). The head lives in
this loss module, so the engine optimises it and checkpoints it with the loss state.

Reading chosen (the paper gives no more detail): one random rotation per image and a second
forward pass, rather than all four rotations of every image (4x the cost). The rotated pass leaves
BatchNorm's running statistics as the upright pass set them, so evaluation normalises upright images
with upright statistics (the rotated batch is still normalised by its own statistics in training).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from osrkit.engine.precision import fp32_head
from osrkit.models.output import ModelOutput

__all__ = ["RotationAuxiliaryLoss", "rotate_batch", "running_stats_kept", "full_output_step"]


def rotate_batch(x: torch.Tensor, quarter_turns: torch.Tensor) -> torch.Tensor:
    """Rotate image i of (N, C, H, W) by quarter_turns[i] * 90 degrees counter-clockwise (H == W)."""
    if x.dim() != 4 or x.shape[2] != x.shape[3]:
        raise ValueError(f"rotation needs square images (N, C, H, H), got shape {tuple(x.shape)}")
    if quarter_turns.shape != (x.shape[0],):
        raise ValueError(f"quarter_turns must have shape ({x.shape[0]},), got {tuple(quarter_turns.shape)}")
    out = x.clone()
    for r in (1, 2, 3):
        sel = quarter_turns == r
        if bool(sel.any()):
            out[sel] = torch.rot90(x[sel], r, dims=(2, 3))
    return out


@contextmanager
def running_stats_kept(model: nn.Module) -> Iterator[None]:
    """Inside, every BatchNorm updates copies of its running statistics, and the originals are put back on exit: a
    forward pass inside trains with batch statistics but leaves those used at evaluation untouched (swapped, not
    copied back in place, as the originals may be saved for an earlier pass's backward)."""
    names = ("running_mean", "running_var", "num_batches_tracked")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
             and m.running_mean is not None]
    saved = [{n: getattr(m, n) for n in names} for m in norms]
    for m, buffers in zip(norms, saved):
        for n, t in buffers.items():
            setattr(m, n, t.clone())
    try:
        yield
    finally:
        for m, buffers in zip(norms, saved):
            for n, t in buffers.items():
                setattr(m, n, t)


class RotationAuxiliaryLoss(nn.Module):
    """base(logits, y) + weight * rotation CE; call `bind(model, ...)` before training when weight > 0."""

    def __init__(self, base: nn.Module, weight: float = 0.1) -> None:
        super().__init__()
        if not (weight >= 0 and weight == weight and weight != float("inf")):
            raise ValueError(f"rotation weight must be a finite number >= 0, got {weight}")
        self.base = base
        self.weight = float(weight)
        self.head: nn.Linear | None = None
        self._model: list[nn.Module] = []  # a plain list, so the model is not registered as a submodule
        self.last_terms: dict[str, float] = {}

    def bind(self, model: nn.Module, in_channels: int, image_size: int) -> None:
        """Attach the network whose embedding the head reads, and size the head from one dummy forward."""
        self._model = [model]
        if self.weight == 0:
            return
        was_training = model.training
        model.eval()
        with torch.no_grad():
            p = next(model.parameters())
            emb = model(torch.zeros(2, in_channels, image_size, image_size, device=p.device, dtype=p.dtype)).embedding
        model.train(was_training)
        if emb is None or emb.dim() != 2:
            raise ValueError("the rotation head needs a model whose output has a 2-d embedding")
        self.head = nn.Linear(emb.shape[1], 4).to(device=p.device, dtype=p.dtype)

    def forward(self, out: ModelOutput, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if getattr(self.base, "needs_embedding_norms", False):
            base = self.base(out.logits, y, out.embedding.float().norm(dim=1))
        else:
            base = self.base(out.logits, y)
        if self.weight == 0:
            self.last_terms = {"base": float(base.detach()), "loss": float(base.detach())}
            return base
        if self.head is None or not self._model:
            raise RuntimeError("RotationAuxiliaryLoss.bind(model, in_channels, image_size) must be called before training")
        turns = torch.randint(0, 4, (x.shape[0],), device=x.device)
        with running_stats_kept(self._model[0]):
            rotated = self._model[0](rotate_batch(x, turns)).embedding
        rotation = F.cross_entropy(fp32_head(self.head, rotated), turns)
        loss = base + self.weight * rotation
        self.last_terms = {"base": float(base.detach()), "rotation": float(rotation.detach()), "loss": float(loss.detach())}
        return loss


def full_output_step(loss_fn: nn.Module, out: ModelOutput, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Engine adapter for losses that need the whole model output and the input."""
    return loss_fn(out, x, y)
