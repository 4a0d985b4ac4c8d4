"""Batched tensor preprocessing and augmentation on the training device (the small-image fast path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 (N,C,H,W) images to size x size, bilinear with antialias (like PIL's Resize)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return TF.resize(images, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def normalize(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 or [0,1] float (N,C,H,W) → float, standardised per channel."""
    x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


class BatchAugment:
    """Random resized crop (area `scale`, aspect 3/4–4/3) and optional horizontal flip, per sample,
    for a whole batch at once with one `grid_sample` call; randomness from `generator` only."""

    def __init__(self, crop_scale: tuple[float, float] | None = (0.7, 1.0), flip: bool = False) -> None:
        self.crop_scale, self.flip = crop_scale, flip

    @property
    def active(self) -> bool:
        return self.crop_scale is not None or self.flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.active:
            return x
        n = x.shape[0]
        sx = torch.ones(n)
        sy = torch.ones(n)
        if self.crop_scale is not None:
            lo, hi = self.crop_scale
            area = lo + (hi - lo) * torch.rand(n, generator=generator)
            log_ratio = (torch.rand(n, generator=generator) * 2 - 1) * torch.log(torch.tensor(4 / 3))
            # keep the aspect ratio within what the drawn area allows, so area 1 is the whole image
            log_ratio = torch.maximum(torch.minimum(log_ratio, -torch.log(area)), torch.log(area))
            ratio = torch.exp(log_ratio)
            sx = torch.sqrt(area * ratio).clamp(max=1.0)
            sy = torch.sqrt(area / ratio).clamp(max=1.0)
        tx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - sx)
        ty = (torch.rand(n, generator=generator) * 2 - 1) * (1 - sy)
        if self.flip:
            sx = sx * torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
        theta = theta.to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


AUGMENTATIONS = {
    "none": lambda: BatchAugment(crop_scale=None, flip=False),
    "crop": lambda: BatchAugment(crop_scale=(0.7, 1.0), flip=False),
    "crop-flip": lambda: BatchAugment(crop_scale=(0.7, 1.0), flip=True),
}


def make_augment(name: str) -> BatchAugment:
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]()
