"""Run a model over uint8 images in batches and collect `Outputs` (logits, embedding, extras)."""

from __future__ import annotations

import torch

from osrkit.data.transforms import normalize
from osrkit.engine.precision import apply_memory_format, autocast, to_memory_format
from osrkit.outputs import Outputs


def predict(model: torch.nn.Module, images: torch.Tensor, mean: list[float], std: list[float],
            labels: torch.Tensor | None = None, batch_size: int = 512, device: str | torch.device = "cpu",
            precision: str = "fp32", memory_format: str = "contiguous") -> Outputs:
    """Model outputs for uint8 (N,C,H,W) images, in eval mode (dropout off, BatchNorm frozen).

    `precision`/`memory_format` are resolved values ("bf16"/"fp32", "channels_last"/"contiguous"), as a
    checkpoint's config records them; outputs are returned in fp32 either way. A channels_last run converts the
    model's weights in place."""
    was_training = model.training
    model.eval()
    # the weights' layout too: bf16 kernels differ by layout, so a loaded checkpoint (contiguous weights) must run
    # as the network it was trained as (channels_last) to give the same outputs
    apply_memory_format(model, memory_format)
    logits, embs, extras = [], [], {}
    for i in range(0, len(images), batch_size):
        x = normalize(images[i:i + batch_size].to(device), mean, std)
        x = to_memory_format(x, memory_format)
        with torch.no_grad(), autocast(precision, device):  # (a block, not a decorator: mutmut mutates this body)
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
