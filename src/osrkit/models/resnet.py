"""The Jacobian-norm paper's CIFAR backbones: WRN-16-4 (Zagoruyko & Komodakis 2016) and ResNet-18 (He et al.
2016), both with the 32×32 stem of the CIFAR literature (a 3×3 stride-1 first convolution, no max-pool).

Each returns ModelOutput(logits, embedding), the embedding being the globally pooled last feature map (through
an optional Linear+BN `neck`); `classifier="cosine"` gives the m-OvR head. Inputs of any size ≥ 8 work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from osrkit.engine.precision import fp32_head
from osrkit.models.heads import make_classifier, make_neck
from osrkit.models.output import ModelOutput


class _PooledHead(nn.Module):
    """Global average pool → neck → classifier (in fp32): the part every backbone here shares."""

    def __init__(self, features: int, num_classes: int, classifier: str, neck: int) -> None:
        super().__init__()
        self.neck, self.embedding_dim = make_neck(features, int(neck))
        self.classifier = make_classifier(classifier, self.embedding_dim, num_classes)

    def forward(self, fmap: torch.Tensor) -> ModelOutput:
        emb = self.neck(fmap.mean(dim=(2, 3)))
        return ModelOutput(fp32_head(self.classifier, emb), emb)


class _PooledBackbone(nn.Module):
    """`features` (a conv trunk) then a `_PooledHead`; exposes `classifier` like the other backbones."""

    features: nn.Module
    head: _PooledHead

    @property
    def classifier(self) -> nn.Module:
        return self.head.classifier

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self.head(self.features(x))


class WideBasic(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv3x3-(dropout)-BN-ReLU-conv3x3, 1×1 projection on the shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(in_ch), nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(out_ch), nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = (nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)
                         if stride != 1 or in_ch != out_ch else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(F.relu(self.bn2(self.dropout(o))))
        return o + shortcut


class WideResNet(_PooledBackbone):
    """WRN-depth-k: (depth − 4) / 6 wide blocks per stage, widths 16k, 32k, 64k; WRN-16-4 by default."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32, depth: int = 16,
                 widen: int = 4, dropout: float = 0.0, classifier: str = "linear", neck: int = 0) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WRN depth must be 6n + 4 (10, 16, 22, 28, ...), got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
        prev = widths[0]
        for stage, w in enumerate(widths[1:]):
            for i in range(n):
                layers.append(WideBasic(prev, w, stride=(1 if stage == 0 or i > 0 else 2), dropout=dropout))
                prev = w
        layers += [nn.BatchNorm2d(prev), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = _PooledHead(prev, num_classes, classifier, neck)
        self.embedding_dim = self.head.embedding_dim


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN plus the (projected) input, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch)
        self.conv2, self.bn2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False), nn.BatchNorm2d(out_ch)
        self.shortcut = (nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
                         if stride != 1 or in_ch != out_ch else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(o)) + self.shortcut(x))


class ResNet18(_PooledBackbone):
    """ResNet-18 for 32×32 inputs: 3×3 stem (stride 1, no max-pool), stages of 2 blocks at 64/128/256/512."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32, classifier: str = "linear",
                 neck: int = 0, width: int = 64) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width, 8 * width)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                   nn.ReLU()]
        prev = widths[0]
        for stage, w in enumerate(widths):
            for i in range(2):
                layers.append(BasicBlock(prev, w, stride=(2 if stage > 0 and i == 0 else 1)))
                prev = w
        self.features = nn.Sequential(*layers)
        self.head = _PooledHead(prev, num_classes, classifier, neck)
        self.embedding_dim = self.head.embedding_dim


__all__ = ["WideResNet", "ResNet18"]
