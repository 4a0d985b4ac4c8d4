"""DHRNet: the Deep Hierarchical Reconstruction Net of CROSR (Yoshihashi et al., CVPR 2019).

Structure (spec, "CROSR"): backbone blocks x_{l+1} = f_l(x_l) for l = 1..L (L = 3); a lateral
bottleneck z_l = h_l(.) per level; a decoder x~_l = g_l(x~_{l+1} + h~_l(z_l)) with x~_{L+1} = 0,
whose x~_1 is the reconstruction; a classifier head (global average pool + Linear) gives logits y.

Choices where the spec is unconfirmed (documented so that results can say which were used):

* Which tensor the lateral taps: each block's *output* (after its stride-2 down-sampling), i.e.
  z_l = h_l(f_l(x_l)), as in the paper's figure ("one latent after each down-sampling stage").
  This is also what makes the decoder's shapes line up: h~_l(z_l) has block l's output width and
  resolution, the same as x~_{l+1} = g_{l+1}(...), and g_1 up-samples back to the input.
* Lateral kernel: 1x1 by default (``lateral_kernel=3`` for the 3x3 variant); h_l is a plain
  convolution (no norm, no activation), one separate module per level; h~_l uses the same kernel.
* Down-sampling: 2x2 max pooling with stride 2 and ``ceil_mode=True`` (28 -> 14 -> 7 -> 4).
* Odd sizes (28 px): every g_l is a 3x3 ConvTranspose2d with stride 2 whose output size is given
  at call time (``output_size=`` the matching encoder size), so 4 -> 7 -> 14 -> 28 and
  4 -> 8 -> 16 -> 32 both come out exactly; no internal padding to 32.
* Dropout: ``nn.Dropout2d`` between blocks and ``nn.Dropout`` before the Linear head (module
  dropout, so ``model.eval()`` turns it off); the laterals tap the pre-dropout block output.
* The reconstruction is linear (no output activation), compared with the (normalised) input.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from osrkit.engine.precision import fp32_head
from osrkit.models.output import ModelOutput


def _conv_bn_act(cin: int, cout: int) -> list[nn.Module]:
    """3x3 convolution + BatchNorm + LeakyReLU(0.2)."""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]


class EncoderBlock(nn.Module):
    """f_l: two 3x3 conv-BN-LeakyReLU layers, then 2x2 max pooling (stride 2, ceil mode)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn_act(cin, cout), *_conv_bn_act(cout, cout))
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x))


class DecoderStep(nn.Module):
    """g_l: 3x3 ConvTranspose2d with stride 2 to an exact output size (+ BN + LeakyReLU unless last)."""

    def __init__(self, cin: int, cout: int, last: bool) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, bias=last)
        self.post = nn.Identity() if last else nn.Sequential(nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.post(self.deconv(x, output_size=list(size)))


class DHRNet(nn.Module):
    """CROSR's classification-reconstruction network with one latent map per down-sampling stage.

    forward(x) returns ModelOutput(logits (N, K), embedding (N, width[-1]), extras) with extras
    ``reconstruction`` (N, C, H, W), ``latent_maps`` [z_1..z_L] each (N, latent_channels, H_l, W_l)
    and ``latents`` (N, L * latent_channels): the spatially pooled z_l, concatenated (for OpenMax
    on [y, z]). ``image_size`` is recorded only: any input size works (odd sizes included).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        image_size: int = 28,
        latent_channels: int = 32,
        lateral_kernel: int = 1,
        width: Sequence[int] = (32, 64, 128),
        dropout: float = 0.2,
        latent_pool: str = "avg",
    ) -> None:
        super().__init__()
        if lateral_kernel not in (1, 3):
            raise ValueError(f"lateral_kernel must be 1 or 3, got {lateral_kernel}")
        if latent_pool not in ("avg", "max"):
            raise ValueError(f"latent_pool must be 'avg' or 'max', got {latent_pool!r}")
        width = tuple(int(w) for w in width)
        chans = (in_channels, *width)
        pad = lateral_kernel // 2
        self.num_classes, self.in_channels, self.image_size = num_classes, in_channels, image_size
        self.latent_channels, self.latent_pool, self.num_levels = latent_channels, latent_pool, len(width)
        self.blocks = nn.ModuleList(EncoderBlock(chans[i], chans[i + 1]) for i in range(len(width)))
        self.laterals = nn.ModuleList(nn.Conv2d(w, latent_channels, lateral_kernel, padding=pad) for w in width)
        self.lateral_decoders = nn.ModuleList(
            nn.Conv2d(latent_channels, w, lateral_kernel, padding=pad) for w in width
        )
        self.decoders = nn.ModuleList(DecoderStep(chans[i + 1], chans[i], last=(i == 0)) for i in range(len(width)))
        self.block_dropout = nn.Dropout2d(dropout)
        self.head_dropout = nn.Dropout(dropout)
        self.embedding_dim = width[-1]
        self.classifier = nn.Linear(self.embedding_dim, num_classes)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Size]]:
        """Run the backbone; return the top feature map, the latent maps and each block's input size."""
        latent_maps, sizes = [], []
        h = x
        for level, (block, lateral) in enumerate(zip(self.blocks, self.laterals)):
            sizes.append(h.shape[-2:])
            out = block(h)
            latent_maps.append(lateral(out))
            h = self.block_dropout(out) if level < self.num_levels - 1 else out
        return h, latent_maps, sizes

    def _decode(self, latent_maps: list[torch.Tensor], sizes: list[torch.Size]) -> torch.Tensor:
        """x~_l = g_l(x~_{l+1} + h~_l(z_l)), from the top (x~_{L+1} = 0) down to x~_1."""
        rec: torch.Tensor | None = None
        for level in reversed(range(self.num_levels)):
            lat = self.lateral_decoders[level](latent_maps[level])
            rec = self.decoders[level](lat if rec is None else rec + lat, sizes[level])
        assert rec is not None
        return rec

    def pool_latents(self, latent_maps: list[torch.Tensor]) -> torch.Tensor:
        """Spatially pool each z_l (average or max) and concatenate: (N, L * latent_channels)."""
        pool = (lambda z: z.mean(dim=(2, 3))) if self.latent_pool == "avg" else (lambda z: z.amax(dim=(2, 3)))
        return torch.cat([pool(z) for z in latent_maps], dim=1)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        top, latent_maps, sizes = self._encode(x)
        emb = top.mean(dim=(2, 3))
        logits = fp32_head(self.classifier, self.head_dropout(emb))
        extras = {
            "reconstruction": self._decode(latent_maps, sizes),
            "latent_maps": latent_maps,
            "latents": self.pool_latents(latent_maps),
        }
        return ModelOutput(logits, emb, extras)


__all__ = ["DHRNet"]
