"""`vgg32`, the "classifier32" of the OSR literature (Neal et al. 2018; ARPL; Vaze et al.; CAC).

Nine bias-free 3x3 convolutions (64, 64, 128 | 128, 128, 128 | 128, 128, 128), the third of each
group with stride 2, each followed by BatchNorm and LeakyReLU(0.2), Dropout2d after each group.
Head "pool" (ARPL/Vaze): global average pool to 128-d, bias-free Linear(128, K).
Head "flatten" (CAC authors): flatten the 128x4x4 map (2048-d) into Linear(2048, K) with bias.
`neck` > 0 puts Linear + BatchNorm1d (that many features) between the pooled map and the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from osrkit.models.heads import make_classifier, make_neck
from osrkit.engine.precision import fp32_head
from osrkit.models.output import ModelOutput

_CHANNELS = (64, 64, 128, 128, 128, 128, 128, 128, 128)


def _conv_bn(in_ch: int, out_ch: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.2),
    ]


class VGG32(nn.Module):
    """classifier32; `width` scales every channel count (1.0 = the paper's network)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 32,
        head: str = "pool",
        dropout: float = 0.2,
        width: float = 1.0,
        classifier: str = "linear",
        neck: int = 0,
    ) -> None:
        super().__init__()
        if head not in ("pool", "flatten"):
            raise ValueError(f"vgg32 head must be 'pool' or 'flatten', got {head!r}")
        channels = [max(8, int(round(c * width))) for c in _CHANNELS]
        layers: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate(channels):
            layers += _conv_bn(prev, ch, stride=2 if i % 3 == 2 else 1)
            prev = ch
            if i % 3 == 2:
                layers.append(nn.Dropout2d(dropout))
        self.features = nn.Sequential(*layers)
        self.head = head
        spatial = -(-image_size // 8)
        pooled_dim = prev if head == "pool" else prev * spatial * spatial
        self.neck, self.embedding_dim = make_neck(pooled_dim, int(neck))
        self.classifier = make_classifier(classifier, self.embedding_dim, num_classes, bias=(head == "flatten"))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        fmap = self.features(x)
        emb = self.neck(fmap.mean(dim=(2, 3)) if self.head == "pool" else fmap.flatten(1))
        return ModelOutput(fp32_head(self.classifier, emb), emb)
