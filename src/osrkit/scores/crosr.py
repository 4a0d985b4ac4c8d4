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
JOINT_SCALES = ("none", "block", "standardize")


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


class JointScaler:
    """Optional rescaling of the joint vector [y, z] before OpenMax's distances, fitted on training vectors.

    "none" is the paper. The raw logits can dominate the Euclidean distance (CROSR protocol A:
    ||y|| ~ 16 against ||z|| ~ 7), which turns CROSR into logits-only OpenMax; "block" divides the logits
    and the latents each by their mean training norm, "standardize" z-scores every dimension. On protocol A
    standardize lifts MNIST-noise / Noise AUROC from 0.59 / 0.70 to 1.00 / 1.00; block does not
    (benchmarks/results/crosr_diagnose.md).
    """

    def __init__(self, how: str = "none", num_logits: int | None = None) -> None:
        if how not in JOINT_SCALES:
            raise ValueError(f"joint_scale must be one of {JOINT_SCALES}, got {how!r}")
        self.how, self.num_logits = how, num_logits
        self.shift: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None

    def fit(self, joint: torch.Tensor) -> "JointScaler":
        joint = joint.double()
        d = joint.shape[1]
        self.shift, self.scale = torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)
        if self.how == "block":
            k = self.num_logits
            if k is None or not 0 < k < d:
                raise ValueError(f"block scaling needs 0 < num_logits < {d}, got {k}")
            self.scale[:k] = joint[:, :k].norm(dim=1).mean().clamp_min(1e-12)
            self.scale[k:] = joint[:, k:].norm(dim=1).mean().clamp_min(1e-12)
        elif self.how == "standardize":
            self.shift = joint.mean(0)
            self.scale = joint.std(0, correction=0).clamp_min(1e-12)
        return self

    def transform(self, joint: torch.Tensor) -> torch.Tensor:
        if self.how == "none":
            return joint.double()
        if self.scale is None:
            raise RuntimeError("JointScaler.transform before fit")
        return (joint.double() - self.shift.to(joint.device)) / self.scale.to(joint.device)

    def state_dict(self) -> dict[str, Any]:
        return {"how": self.how, "num_logits": self.num_logits, "shift": self.shift, "scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> "JointScaler":
        self.__init__(state["how"], state["num_logits"])
        self.shift, self.scale = state["shift"], state["scale"]
        return self


class CROSRScorer(Scorer):
    """OpenMax with distances on [logits, latents] and recalibration of the logits."""

    name = "crosr"

    def __init__(self, tailsize: int = 20, alpha: int | None = None, distance: str = "euclidean",
                 pool: str = "avg", score: str = "unknown_prob", fit_method: str = "libmr",
                 joint_scale: str = "none") -> None:
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        self.scaler = JointScaler(joint_scale)
        self.openmax = OpenMax(tailsize=tailsize, alpha=alpha, distance=distance, score=score,
                               fit_method=fit_method)

    def fit(self, outputs: Outputs) -> "CROSRScorer":
        """Fit OpenMax on the joint vectors of training outputs (labels required)."""
        if outputs.labels is None:
            raise ValueError("CROSRScorer.fit needs labels: the Outputs passed have labels=None")
        self.scaler.num_logits = outputs.logits.shape[1]
        joint = joint_vector(outputs, self.pool)
        joint = self.scaler.fit(joint).transform(joint)
        self.openmax.fit(outputs.logits, outputs.labels, features=joint)
        return self

    def _joint(self, outputs: Outputs) -> torch.Tensor:
        return self.scaler.transform(joint_vector(outputs, self.pool))

    def probabilities(self, outputs: Outputs) -> torch.Tensor:
        """(N, K + 1) probabilities, P(unknown) in the last column."""
        return self.openmax.probabilities(outputs.logits, self._joint(outputs))

    def score(self, outputs: Outputs) -> ScoreResult:
        """Unknown score (P(unknown) by default) and predicted known class."""
        return self.openmax.score(outputs.logits, self._joint(outputs))

    def graph(self) -> torch.nn.Module:
        """OpenMax's graph on [logits, latents] (the DHRNet's pooled latents), with the joint rescaling."""
        d = self.openmax.mean_vectors.shape[1] if self.openmax.mean_vectors is not None else 0
        shift = self.scaler.shift if self.scaler.shift is not None else torch.zeros(d, dtype=torch.float64)
        scale = self.scaler.scale if self.scaler.scale is not None else torch.ones(d, dtype=torch.float64)
        return self.openmax.graph(joint=(shift, scale))

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "openmax": self.openmax.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> "CROSRScorer":
        if state["pool"] not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {state['pool']!r}")
        self.pool = state["pool"]
        self.openmax.load_state_dict(state["openmax"])
        # checkpoints from before joint_scale existed used the raw joint vector
        self.scaler = JointScaler().load_state_dict(state["scaler"]) if "scaler" in state else JointScaler("none")
        return self
