"""A small CNN for 8x8 inputs (scikit-learn digits): the embedded default data set's network."""

from __future__ import annotations

import torch
from torch import nn

from osrkit.models.heads import make_classifier, make_neck
from osrkit.engine.precision import fp32_head
from osrkit.models.output import ModelOutput


class SmallNet(nn.Module):
    """Three 3x3 convolutions (32, 64, 64) with BatchNorm/ReLU, one 2x2 pool, pooled to 64-d."""

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 8, width: int = 32,
                 classifier: str = "linear", neck: int = 0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        )
        self.neck, self.embedding_dim = make_neck(2 * width, int(neck))
        self.classifier = make_classifier(classifier, self.embedding_dim, num_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        emb = self.neck(self.features(x).mean(dim=(2, 3)))
        return ModelOutput(fp32_head(self.classifier, emb), emb)
