"""Unknown scorers as traceable torch modules, for exported graphs (ONNX, TorchScript).

Each module maps (logits (N, K), embedding (N, D), latents (N, L) or None) to (unknown_score (N,), class
index (N,)) with the fitted state as buffers, using only operators ONNX and TorchScript express (no
cdist, one_hot, argsort or expm1). They compute in float32, as the exported network does; tests check them
against the float64 scorers they mirror (`Scorer.graph()` builds them).
"""

from __future__ import annotations

import torch
from torch import nn


def _onehot(pred: torch.Tensor, k: int) -> torch.Tensor:
    return torch.arange(k, device=pred.device).unsqueeze(0) == pred.unsqueeze(1)


def neg_log_sigmoid(s: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(s) = max(-s, 0) + log(1 + exp(-|s|)), stable for large |s| (ONNX runtimes' lowering of
    logsigmoid is not: about -log(2^-23) instead of 16.08 at s = -16.08, and inf below -30)."""
    return torch.relu(-s) + torch.log(1.0 + torch.exp(-s.abs()))


def euclidean(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(N, D) × (K, D) → (N, K) Euclidean distances, by broadcasting."""
    return (x.unsqueeze(1) - centres.unsqueeze(0)).pow(2).sum(-1).clamp_min(0).sqrt()


class ScoreGraph(nn.Module):
    """Base: `needs_latents` says whether forward reads the DHRNet latents."""

    needs_latents = False

    def forward(self, logits: torch.Tensor, embedding: torch.Tensor, latents: torch.Tensor | None = None):
        raise NotImplementedError


class MSPGraph(ScoreGraph):
    def forward(self, logits, embedding, latents=None):
        conf, pred = torch.softmax(logits, dim=1).max(dim=1)
        return 1.0 - conf, pred


class MLSGraph(ScoreGraph):
    def forward(self, logits, embedding, latents=None):
        top, pred = logits.max(dim=1)
        return -top, pred


class EnergyGraph(ScoreGraph):
    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, logits, embedding, latents=None):
        t = self.temperature
        return -t * torch.logsumexp(logits / t, dim=1), logits.argmax(dim=1)


class CACGraph(ScoreGraph):
    def __init__(self, anchors: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("anchors", anchors.float().clone())

    def forward(self, logits, embedding, latents=None):
        d = euclidean(logits, self.anchors)
        score, pred = (d * (1.0 - torch.softmax(-d, dim=1))).min(dim=1)
        return score, pred


class OvRGraph(ScoreGraph):
    """OvR and m-OvR readings (see osrkit.scores.ovr); margin 0 means none."""

    def __init__(self, kind: str, temperature: float, margin: float = 0.0, margin_on: str = "all",
                 embedding_norm: bool = True) -> None:
        super().__init__()
        from osrkit.losses.ovr import MARGIN_ON

        if margin_on not in MARGIN_ON:  # (the eager scorer refuses it too: never export a silent fallback)
            raise ValueError(f"margin_on must be one of {', '.join(MARGIN_ON)}, got {margin_on!r}")
        self.kind, self.temperature, self.margin, self.margin_on = kind, float(temperature), float(margin), margin_on
        self.embedding_norm = bool(embedding_norm)  # off: the scale is each sample's ||f||, as in training

    def _margin(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from osrkit.losses.ovr import apply_margin

        return apply_margin(z, target, self.margin, self.margin_on)

    def forward(self, logits, embedding, latents=None):
        z = logits
        pred = z.argmax(dim=1)
        target = _onehot(pred, z.shape[1])
        t = self.temperature if self.embedding_norm else embedding.norm(dim=1, keepdim=True)
        if self.kind in ("loss", "loss_margin", "target"):
            s = t * (self._margin(z, target) if self.kind != "loss" else z)
            pos = neg_log_sigmoid(s)
            if self.kind == "target":
                score = (pos * target).sum(1)
            else:
                score = torch.where(target, pos, neg_log_sigmoid(-s)).sum(1)
        elif self.kind == "max_cos":
            score = -z.max(dim=1).values
        elif self.kind == "max_projection":
            score = -z.max(dim=1).values * embedding.norm(dim=1)
        else:  # max_sigmoid
            score = -torch.sigmoid(t * z).max(dim=1).values
        return score, pred


class OpenMaxGraph(ScoreGraph):
    """OpenMax / CROSR: Weibull w-scores of distances to class means, rank-weighted recalibration.

    With `joint` (CROSR) the distances are on [logits, latents], rescaled by the fitted (shift, scale)."""

    def __init__(self, means: torch.Tensor, shape: torch.Tensor, scale: torch.Tensor, small_score: torch.Tensor,
                 alpha: int, distance: str, score: str, translate: float, joint: tuple[torch.Tensor, torch.Tensor] | None = None,
                 eucos_divisor: float = 200.0) -> None:
        super().__init__()
        for name, v in (("means", means), ("shape", shape), ("scale", scale), ("small_score", small_score)):
            self.register_buffer(name, torch.as_tensor(v).float().clone())
        self.alpha, self.distance, self.score_kind = int(alpha), distance, score
        self.translate, self.eucos_divisor = float(translate), float(eucos_divisor)
        self.needs_latents = joint is not None
        if joint is not None:
            self.register_buffer("shift", torch.as_tensor(joint[0]).float().clone())
            self.register_buffer("spread", torch.as_tensor(joint[1]).float().clone())

    def _distances(self, x: torch.Tensor) -> torch.Tensor:
        if self.distance == "euclidean":
            return euclidean(x, self.means)
        xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-30)
        mn = self.means / self.means.norm(dim=1, keepdim=True).clamp_min(1e-30)
        cosine = 1.0 - xn @ mn.T
        return cosine if self.distance == "cosine" else euclidean(x, self.means) / self.eucos_divisor + cosine

    def _rank_weights(self, logits: torch.Tensor) -> torch.Tensor:
        order = torch.topk(logits, self.alpha, dim=1).indices
        r = torch.arange(1, self.alpha + 1, dtype=logits.dtype, device=logits.device)
        w = ((self.alpha - r + 1) / self.alpha).unsqueeze(0).expand(logits.shape[0], self.alpha)
        return torch.zeros_like(logits).scatter(1, order, w)

    def forward(self, logits, embedding, latents=None):
        feats = logits if not self.needs_latents else (torch.cat([logits, latents], dim=1) - self.shift) / self.spread
        t = self._distances(feats) - self.small_score + self.translate
        pos = t > 0
        z = torch.where(pos, t, torch.ones_like(t)) / self.scale
        cdf = torch.where(pos, 1.0 - torch.exp(-z.pow(self.shape)), torch.zeros_like(t))
        w = self._rank_weights(logits) * cdf
        probs = torch.softmax(torch.cat([logits * (1.0 - w), (logits * w).sum(1, keepdim=True)], dim=1), dim=1)
        known = probs[:, :-1]
        conf, pred = known.max(dim=1)
        score = probs[:, -1] if self.score_kind == "unknown_prob" else 1.0 - conf
        return score, pred
