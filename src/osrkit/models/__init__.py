"""Backbones. Every model's forward returns `ModelOutput(logits, embedding, extras)`."""

from osrkit.models.dhrnet import DHRNet
from osrkit.models.output import ModelOutput
from osrkit.models.registry import create_model, list_models, register_model
from osrkit.models.resnet import ResNet18, WideResNet
from osrkit.models.small import SmallNet
from osrkit.models.vgg32 import VGG32


@register_model("vgg32")
def vgg32(**kw) -> VGG32:
    """classifier32 with a pooled head (ARPL / Vaze et al.)."""
    return VGG32(head="pool", **kw)


@register_model("vgg32-flatten")
def vgg32_flatten(**kw) -> VGG32:
    """classifier32 with the CAC authors' flattened 128x4x4 -> Linear(2048, K) head."""
    return VGG32(head="flatten", **kw)


@register_model("vgg32-lite")
def vgg32_lite(**kw) -> VGG32:
    """Fast recipe: classifier32 at half width (a quarter of the multiply-adds)."""
    kw.setdefault("width", 0.5)
    return VGG32(head="pool", **kw)


@register_model("dhrnet")
def dhrnet(**kw) -> DHRNet:
    """CROSR's DHRNet (classification + hierarchical reconstruction, latents in extras)."""
    return DHRNet(**kw)


@register_model("wrn-16-4")
def wrn_16_4(**kw) -> WideResNet:
    """WRN-16-4 with a 32x32 stem (the Jacobian-norm paper's CIFAR backbone)."""
    return WideResNet(depth=16, widen=4, **kw)


@register_model("resnet18")
def resnet18(**kw) -> ResNet18:
    """ResNet-18 with a 32x32 stem (3x3 stride-1 first convolution, no max-pool)."""
    return ResNet18(**kw)


@register_model("small")
def small(**kw) -> SmallNet:
    """Small CNN for 8x8 digits."""
    return SmallNet(**kw)


__all__ = ["ModelOutput", "create_model", "list_models", "register_model", "VGG32", "SmallNet", "DHRNet", "WideResNet", "ResNet18"]
