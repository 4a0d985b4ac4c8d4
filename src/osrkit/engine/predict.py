"""Run a model over uint8 images in batches and collect `Outputs` (logits, embedding, extras)."""

from __future__ import annotations

import torch

from osrkit.data.transforms import normalize
from osrkit.outputs import Outputs


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, mean: list[float], std: list[float],
            labels: torch.Tensor | None = None, batch_size: int = 512, device: str | torch.device = "cpu",
            channels_last: bool = False) -> Outputs:
    """Model outputs for uint8 (N,C,H,W) images, in eval mode (dropout off, BatchNorm frozen)."""
    was_training = model.training
    model.eval()
    logits, embs, extras = [], [], {}
    for i in range(0, len(images), batch_size):
        x = normalize(images[i:i + batch_size].to(device), mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)
        logits.append(out.logits.float().cpu())
        embs.append(out.embedding.float().cpu())
        for k, v in (out.extras or {}).items():
            if isinstance(v, torch.Tensor) and v.ndim == 2:
                extras.setdefault(k, []).append(v.float().cpu())
    model.train(was_training)
    return Outputs(
        logits=torch.cat(logits) if logits else torch.empty(0),
        embedding=torch.cat(embs) if embs else None,
        labels=labels,
        extras={k: torch.cat(v) for k, v in extras.items()},
    )
