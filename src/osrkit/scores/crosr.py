"""CROSR detector (Yoshihashi et al., CVPR 2019): OpenMax on the joint vector [logits, latents].

Mean vectors, distances and Weibull tails live on [y, z_1, ..., z_L]; the recalibrated
activations are still the logits y. Latents come from a DHRNet in `Outputs.extras`.
"""

from __future__ import annotations

from typing import Any

import torch

from osrkit.outputs import Outputs
from osrkit.scores.base import Scorer, ScoreResult
from osrkit.scores.openmax import OpenMax

POOLS = ("avg", "max")


def pool_map(m: torch.Tensor, pool: str) -> torch.Tensor:
    """(N, C, ...) latent map -> (N, C) by global average or max pooling over spatial dims."""
    if m.ndim < 2:
        raise ValueError(f"a latent map must be (N, C, ...), got shape {tuple(m.shape)}")
    if m.ndim == 2:
        return m
    flat = m.flatten(2)
    return flat.mean(dim=2) if pool == "avg" else flat.amax(dim=2)


def latent_vector(outputs: Outputs, pool: str = "avg") -> torch.Tensor:
    """(N, D) latents: extras["latents"] as given, else pooled and concatenated extras["latent_maps"]."""
    extras = outputs.extras or {}
    if "latents" in extras:
        z = pool_map(torch.as_tensor(extras["latents"]), pool)
    elif "latent_maps" in extras:
        maps = extras["latent_maps"]
        maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
        if not maps:
            raise ValueError('outputs.extras["latent_maps"] is empty')
        z = torch.cat([pool_map(torch.as_tensor(m), pool) for m in maps], dim=1)
    else:
        raise ValueError(
            'CROSR needs latents: outputs.extras must hold "latents" (N, D) or "latent_maps" '
            "(a list of (N, C, H, W) maps), as a DHRNet produces"
        )
    if z.shape[0] != len(outputs):
        raise ValueError(f"latents have {z.shape[0]} rows, logits have {len(outputs)}")
    return z


def joint_vector(outputs: Outputs, pool: str = "avg") -> torch.Tensor:
    """The CROSR representation [logits, z_1, ..., z_L] of each sample, (N, K + D)."""
    z = latent_vector(outputs, pool)
    return torch.cat([outputs.logits.detach().double(), z.detach().to(outputs.logits.device).double()], dim=1)


class CROSRScorer(Scorer):
    """OpenMax with distances on [logits, latents] and recalibration of the logits."""

    name = "crosr"

    def __init__(self, tailsize: int = 20, alpha: int | None = None, distance: str = "euclidean",
                 pool: str = "avg", score: str = "unknown_prob", fit_method: str = "libmr") -> None:
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        self.openmax = OpenMax(tailsize=tailsize, alpha=alpha, distance=distance, score=score,
                               fit_method=fit_method)

    def fit(self, outputs: Outputs) -> "CROSRScorer":
        """Fit OpenMax on the joint vectors of training outputs (labels required)."""
        if outputs.labels is None:
            raise ValueError("CROSRScorer.fit needs labels: the Outputs passed have labels=None")
        self.openmax.fit(outputs.logits, outputs.labels, features=joint_vector(outputs, self.pool))
        return self

    def probabilities(self, outputs: Outputs) -> torch.Tensor:
        """(N, K + 1) probabilities, P(unknown) in the last column."""
        return self.openmax.probabilities(outputs.logits, joint_vector(outputs, self.pool))

    def score(self, outputs: Outputs) -> ScoreResult:
        """Unknown score (P(unknown) by default) and predicted known class."""
        return self.openmax.score(outputs.logits, joint_vector(outputs, self.pool))

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "openmax": self.openmax.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> "CROSRScorer":
        if state["pool"] not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {state['pool']!r}")
        self.pool = state["pool"]
        self.openmax.load_state_dict(state["openmax"])
        return self
