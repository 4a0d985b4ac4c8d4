"""The Jacobian-norm paper's CIFAR backbones: shapes, published parameter counts, and that training lowers the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from osrkit.models import WideResNet, create_model
from osrkit.models.heads import CosineLinear

# parameter counts of the 10-class CIFAR networks as published: WRN-16-4 "2.7M" (Zagoruyko & Komodakis 2016,
# exactly 2,748,890 in their reference code) and the CIFAR ResNet-18's 11,173,962
PUBLISHED_PARAMS = {"wrn-16-4": 2_748_890, "resnet18": 11_173_962}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_published_parameter_count_and_shapes(name: str) -> None:
    model = create_model(name, num_classes=10, in_channels=3, image_size=32)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[name]
    out = model(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, 10) and out.embedding.shape == (2, model.embedding_dim)
    # a 32x32 stem: the last map is 8x8 for ResNet-18 (three stride-2 stages) and WRN (two)
    fmap = model.features(torch.randn(1, 3, 32, 32))
    assert fmap.shape[-1] == (4 if name == "resnet18" else 8)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_cosine_head_neck_and_gray_inputs(name: str) -> None:
    model = create_model(name, num_classes=4, in_channels=1, image_size=28, classifier="cosine", neck=32)
    assert isinstance(model.classifier, CosineLinear) and model.embedding_dim == 32
    with torch.no_grad():
        out = model.eval()(torch.randn(3, 1, 28, 28))
    assert out.logits.shape == (3, 4) and float(out.logits.abs().max()) <= 1.0 + 1e-6


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_a_few_steps_lower_the_loss(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_channels=3, image_size=16)
    x, y = torch.randn(12, 3, 16, 16), torch.arange(12) % 3
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(x).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_wrn_depth_is_checked() -> None:
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(num_classes=3, depth=15)
