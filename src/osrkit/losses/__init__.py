"""Training losses. Each is `loss_fn(logits, labels)` → scalar, with its terms in `last_terms`."""

from osrkit.losses.cac import CACLoss, class_means_of_correct
from osrkit.losses.cross_entropy import CrossEntropyLoss
from osrkit.losses.ovr import MOvRLoss, OvRLoss

__all__ = ["CACLoss", "CrossEntropyLoss", "class_means_of_correct", "MOvRLoss", "OvRLoss"]
