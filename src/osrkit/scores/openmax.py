"""OpenMax (Bendale & Boult, CVPR 2016): Weibull-recalibrated logits with an explicit unknown class.

Fit: per-class mean vectors over correctly classified training samples and a libMR-style Weibull
model of each class's `tailsize` largest distances to its mean. Score: the top-`alpha` logits are
shrunk by their rank-weighted w-scores, the removed mass becomes the unknown activation, and a
softmax over [classes, unknown] gives probabilities (unknown in the last column).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from osrkit.evt import TRANSLATE_AMOUNT, WeibullTails, fit_high_many
from osrkit.outputs import Outputs
from osrkit.scores.base import Scorer, ScoreResult

DISTANCES = ("eucos", "euclidean", "cosine")
SCORES = ("unknown_prob", "one_minus_max")
EUCOS_EUCLIDEAN_DIVISOR = 200.0  # the original OSDN code: euclidean / 200 + cosine distance


def pairwise_distance(x: torch.Tensor, means: torch.Tensor, kind: str) -> torch.Tensor:
    """(N, D) x (K, D) -> (N, K) distances: "euclidean", "cosine" (1 - cos) or "eucos"."""
    if kind not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")
    if kind == "cosine":
        return _cosine(x, means)
    euclid = torch.cdist(x[None], means[None], compute_mode="donot_use_mm_for_euclid_dist")[0]
    if kind == "euclidean":
        return euclid
    return euclid / EUCOS_EUCLIDEAN_DIVISOR + _cosine(x, means)


def _cosine(x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Cosine distance 1 - <x, m> / (|x| |m|), as scipy.spatial.distance.cosine."""
    eps = torch.finfo(x.dtype).tiny
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(eps)
    mn = means / means.norm(dim=1, keepdim=True).clamp_min(eps)
    return 1.0 - xn @ mn.T


def rank_weights(logits: torch.Tensor, alpha: int) -> torch.Tensor:
    """(N, K) weights: (alpha - r + 1) / alpha for the class of rank r <= alpha by logit, else 0."""
    n, k = logits.shape
    order = logits.argsort(dim=1, descending=True, stable=True)[:, :alpha]
    r = torch.arange(1, alpha + 1, dtype=logits.dtype, device=logits.device)
    weights = torch.zeros_like(logits)
    weights.scatter_(1, order, ((alpha - r + 1) / alpha).expand(n, alpha).contiguous())
    return weights


def recalibrate(logits: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """OpenMax probabilities from logits v and weighted w-scores w: softmax([v(1-w), sum v w])."""
    revised = logits * (1.0 - w)
    unknown = (logits * w).sum(dim=1, keepdim=True)
    return torch.softmax(torch.cat([revised, unknown], dim=1), dim=1)


def _as_float64(x, what: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach()
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{what} must be a real-valued array, got dtype {t.dtype}")
    return t.to(torch.float64)


class OpenMax(Scorer):
    """OpenMax scorer; distances (and mean vectors) on `features` when given, else on the logits."""

    name = "openmax"

    def __init__(self, tailsize: int = 20, alpha: int | None = 10, distance: str = "eucos",
                 score: str = "unknown_prob", fit_method: str = "libmr") -> None:
        if int(tailsize) < 2:
            raise ValueError(f"tailsize must be >= 2 (a Weibull fit needs 2 distinct values), got {tailsize}")
        if alpha is not None and int(alpha) < 1:
            raise ValueError(f"alpha must be >= 1 or None (= number of classes), got {alpha}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        self.tailsize = int(tailsize)
        self.alpha = None if alpha is None else int(alpha)
        self.distance = distance
        self.score_kind = score
        self.fit_method = fit_method
        self.mean_vectors: torch.Tensor | None = None  # (K, D) float64
        self.weibull: WeibullTails | None = None
        self._uses_features = False

    # ------------------------------------------------------------------ fitting

    @property
    def num_classes(self) -> int:
        self._check_fitted()
        return int(self.mean_vectors.shape[0])

    @property
    def alpha_rank(self) -> int:
        """The alpha actually used: min(alpha, K), or K when alpha is None."""
        k = self.num_classes
        return k if self.alpha is None else min(self.alpha, k)

    def fit(self, train_logits: torch.Tensor | Outputs, train_labels: torch.Tensor | None = None,
            features: torch.Tensor | None = None) -> "OpenMax":
        """Fit mean vectors and Weibull tails on training logits (or an `Outputs`) and labels."""
        if isinstance(train_logits, Outputs):
            if train_logits.labels is None:
                raise ValueError("OpenMax.fit needs labels: the Outputs passed have labels=None")
            train_logits, train_labels = train_logits.logits, train_logits.labels
        if train_labels is None:
            raise ValueError("OpenMax.fit needs train_labels (or an Outputs with labels)")
        logits = self._check_logits(train_logits, "train_logits")
        labels = torch.as_tensor(train_labels).detach().cpu().long()
        if labels.shape != (logits.shape[0],):
            raise ValueError(f"train_labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}")
        k = logits.shape[1]
        if labels.numel() and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"train_labels must lie in 0..{k - 1} (logits have {k} columns)")
        feats = logits if features is None else self._check_features(features, logits.shape[0])
        correct = logits.argmax(dim=1) == labels
        means, tails = [], []
        for c in range(k):
            members = feats[correct & (labels == c)]
            if members.shape[0] == 0:
                raise ValueError(
                    f"OpenMax.fit: class {c} has no correctly classified training sample, so it has no "
                    f"mean vector; train the network better (or check the labels) before fitting OpenMax"
                )
            mean = members.mean(dim=0)
            dist = pairwise_distance(members, mean[None], self.distance)[:, 0]
            means.append(mean)
            tails.append(dist.sort().values[-self.tailsize:].numpy())
        self.weibull = self._fit_tails(tails)
        self.mean_vectors = torch.stack(means)
        self._uses_features = features is not None
        return self

    def _fit_tails(self, tails: list[np.ndarray]) -> WeibullTails:
        try:
            return fit_high_many(tails, method=self.fit_method)
        except ValueError as err:
            sizes = [t.size for t in tails]
            raise ValueError(
                f"OpenMax.fit: Weibull fit failed ({err}); tail sizes per class {sizes} (tailsize "
                f"{self.tailsize}). Each class needs at least 2 correctly classified training samples at "
                f"distinct distances from its mean: train the network better or check the labels"
            ) from err

    # ------------------------------------------------------------------ scoring

    def w_scores(self, logits: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """(N, K) weighted w-scores omega_k * wscore_k(dist(x, mu_k))."""
        feats = self._features_for(logits, features)
        means = self.mean_vectors.to(feats.device)
        dist = pairwise_distance(feats, means, self.distance)
        return rank_weights(logits, self.alpha_rank) * self.weibull.w_score(dist)

    def probabilities(self, logits: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """(N, K + 1) OpenMax probabilities, P(unknown) in the last column."""
        self._check_fitted()
        v = self._check_logits(logits, "logits", device=True)
        if v.shape[1] != self.num_classes:
            raise ValueError(f"logits have {v.shape[1]} columns, OpenMax was fitted with {self.num_classes}")
        probs = recalibrate(v, self.w_scores(v, features))
        out_dtype = logits.dtype if torch.is_tensor(logits) and logits.is_floating_point() else torch.float64
        return probs.to(out_dtype)

    def score(self, outputs: Outputs | torch.Tensor, features: torch.Tensor | None = None) -> ScoreResult:
        """Unknown score (P(unknown), or 1 - max known probability) and argmax known class."""
        logits = outputs.logits if isinstance(outputs, Outputs) else outputs
        probs = self.probabilities(logits, features)
        known = probs[:, :-1]
        unknown = probs[:, -1] if self.score_kind == "unknown_prob" else 1.0 - known.max(dim=1).values
        return ScoreResult(unknown, known.argmax(dim=1))

    def graph(self, joint: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.nn.Module:
        """A traceable module; `joint` = (shift, scale) of CROSR's joint vector when fitted on features."""
        from osrkit.scores.graph import OpenMaxGraph

        self._check_fitted()
        if self._uses_features and joint is None:
            raise ValueError("this OpenMax was fitted on features other than the logits: only CROSR's joint vector "
                             "can be exported")
        return OpenMaxGraph(self.mean_vectors, torch.from_numpy(np.asarray(self.weibull.shape)),
                            torch.from_numpy(np.asarray(self.weibull.scale)),
                            torch.from_numpy(np.asarray(self.weibull.small_score)), self.alpha_rank, self.distance,
                            self.score_kind, float(self.weibull.translate_amount), joint,
                            eucos_divisor=EUCOS_EUCLIDEAN_DIVISOR)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, mean vectors and per-class Weibull parameters (tensors and plain types)."""
        state: dict[str, Any] = {
            "tailsize": self.tailsize, "alpha": self.alpha, "distance": self.distance,
            "score": self.score_kind, "fit_method": self.fit_method, "fitted": self.mean_vectors is not None,
        }
        if self.mean_vectors is not None:
            state.update({
                "uses_features": bool(self._uses_features),
                "mean_vectors": self.mean_vectors.clone(),
                "weibull_shape": torch.from_numpy(np.array(self.weibull.shape)),
                "weibull_scale": torch.from_numpy(np.array(self.weibull.scale)),
                "weibull_small_score": torch.from_numpy(np.array(self.weibull.small_score)),
                "weibull_translate_amount": float(self.weibull.translate_amount),
            })
        return state

    def load_state_dict(self, state: dict[str, Any]) -> "OpenMax":
        """Restore what `state_dict` saved."""
        self.__init__(state["tailsize"], state["alpha"], state["distance"], state["score"], state["fit_method"])
        if state.get("fitted"):
            if float(state["weibull_translate_amount"]) != TRANSLATE_AMOUNT:
                raise ValueError(f"unsupported Weibull translate amount {state['weibull_translate_amount']}")
            self.mean_vectors = torch.as_tensor(state["mean_vectors"], dtype=torch.float64).cpu()
            self.weibull = WeibullTails(
                shape=torch.as_tensor(state["weibull_shape"], dtype=torch.float64).numpy(),
                scale=torch.as_tensor(state["weibull_scale"], dtype=torch.float64).numpy(),
                small_score=torch.as_tensor(state["weibull_small_score"], dtype=torch.float64).numpy(),
            )
            self._uses_features = bool(state["uses_features"])
        return self

    # ------------------------------------------------------------------ checks

    def _check_fitted(self) -> None:
        if self.mean_vectors is None or self.weibull is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(train outputs) before scoring")

    def _check_logits(self, logits, what: str, device: bool = False) -> torch.Tensor:
        t = _as_float64(logits, what)
        t = t if device else t.cpu()
        if t.ndim != 2 or t.shape[1] < 2:
            raise ValueError(f"{what} must be (N, K) with K >= 2 classes, got shape {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        return t

    def _check_features(self, features, n: int) -> torch.Tensor:
        f = _as_float64(features, "features").cpu()
        if f.ndim != 2 or f.shape[0] != n:
            raise ValueError(f"features must be (N, D) with N = {n}, got shape {tuple(f.shape)}")
        if not torch.isfinite(f).all():
            raise ValueError("features contain NaN or infinite values")
        return f

    def _features_for(self, logits: torch.Tensor, features) -> torch.Tensor:
        """The vectors distances are measured on at score time, checked against what fit used."""
        if features is None:
            if self._uses_features:
                raise ValueError("OpenMax was fitted on features: pass features to probabilities/score too")
            return logits
        if not self._uses_features:
            raise ValueError("OpenMax was fitted on logits (features=None): do not pass features when scoring")
        f = _as_float64(features, "features").to(logits.device)
        d = self.mean_vectors.shape[1]
        if f.ndim != 2 or f.shape != (logits.shape[0], d):
            raise ValueError(f"features must have shape ({logits.shape[0]}, {d}), got {tuple(f.shape)}")
        return f
