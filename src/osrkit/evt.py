"""Weibull tail fitting as libMR's `FitHigh` does it, without libMR (OpenMax, CROSR).

libMR fits a two-parameter Weibull by maximum likelihood to `tail - min(tail) + 1` and scores a
value x by the Weibull CDF at `x - min(tail) + 1`. Its solver works on the log data (a Gumbel
fit): it brackets the root of the scale-likelihood equation, then runs a Brent-style search with
tolerance 1e-6 (its `wdfzero`). `method="libmr"` reproduces that search step for step (vectorised
over classes), so the parameters equal libMR's to rounding; `method="mle"` solves the same
equation to full precision by Newton's method (equal to `scipy.stats.weibull_min.fit(...,
floc=0)`; within about 1e-4 of libMR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

TRANSLATE_AMOUNT = 1.0  # what libMR's FitHigh effectively adds (the spec, ../shared/spec/METHODS.md, "OpenMax")
LIBMR_TOL = 1e-6  # libMR's weibull_fit tolerance
METHODS = ("libmr", "mle")


def _weibull_cdf(x: ArrayT, small_score, scale, shape) -> ArrayT:
    """Weibull CDF at x - small_score + 1, 0 where that is <= 0 (libMR's w-score)."""
    t = x - small_score + TRANSLATE_AMOUNT
    if isinstance(t, torch.Tensor):
        pos = t > 0
        z = torch.where(pos, t, torch.ones_like(t)) / scale
        return torch.where(pos, -torch.expm1(-(z**shape)), torch.zeros_like(t))
    t = np.asarray(t, dtype=np.float64)
    pos = t > 0
    z = np.where(pos, t, 1.0) / scale
    return np.where(pos, -np.expm1(-(z**shape)), 0.0)


def _as_float_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class WeibullTail:
    """One libMR-style Weibull tail model: CDF at x - small_score + translate_amount."""

    shape: float
    scale: float
    small_score: float
    translate_amount: float = TRANSLATE_AMOUNT

    def w_score(self, x: ArrayT) -> ArrayT:
        """Probability that x lies beyond the fitted tail (array in, same-type array out)."""
        if not isinstance(x, torch.Tensor):
            x = _as_float_array(x)
        return _weibull_cdf(x, self.small_score, self.scale, self.shape)


@dataclass(frozen=True)
class WeibullTails:
    """C tail models fitted at once (one per class); arrays of shape (C,)."""

    shape: np.ndarray
    scale: np.ndarray
    small_score: np.ndarray
    translate_amount: float = TRANSLATE_AMOUNT

    def __len__(self) -> int:
        return int(self.shape.shape[0])

    def __getitem__(self, i: int) -> WeibullTail:
        return WeibullTail(float(self.shape[i]), float(self.scale[i]), float(self.small_score[i]))

    def w_score(self, x: ArrayT) -> ArrayT:
        """W-scores of x (..., C): column c is scored by tail model c."""
        if isinstance(x, torch.Tensor):
            p = {k: torch.as_tensor(getattr(self, k), dtype=x.dtype, device=x.device)
                 for k in ("small_score", "scale", "shape")}
            return _weibull_cdf(x, p["small_score"], p["scale"], p["shape"])
        return _weibull_cdf(_as_float_array(x), self.small_score, self.scale, self.shape)


# ----------------------------------------------------------------------------- validation


def _check_tail(tail, where: str = "tail") -> np.ndarray:
    """A non-empty, finite, 1-D float64 array, or a ValueError saying what is wrong."""
    t = _as_float_array(tail)
    if t.ndim != 1:
        raise ValueError(f"{where} must be 1-D, got shape {tuple(t.shape)}")
    if t.size == 0:
        raise ValueError(f"{where} is empty: a Weibull fit needs at least 2 distinct values")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{where} contains NaN or infinite values")
    return t


def _pad(tails: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged tails -> (C, T) values padded with 0 and a (C, T) validity mask."""
    width = max(t.size for t in tails)
    values = np.zeros((len(tails), width))
    mask = np.zeros((len(tails), width), dtype=bool)
    for i, t in enumerate(tails):
        values[i, : t.size] = t
        mask[i, : t.size] = True
    return values, mask


# ----------------------------------------------------------------------------- the solver


def _likelihood_eq(sigma: np.ndarray, x0: np.ndarray, w: np.ndarray, xbar: np.ndarray) -> np.ndarray:
    """libMR's `weibull_scale_likelihood`: zero at the MLE of the Gumbel scale sigma."""
    wl = w * np.exp(x0 / sigma[:, None])
    return sigma + xbar - (wl * x0).sum(1) / wl.sum(1)


def _likelihood_eq_deriv(sigma: np.ndarray, x0: np.ndarray, w: np.ndarray) -> np.ndarray:
    """d/dsigma of `_likelihood_eq` = 1 + weighted variance of x0 / sigma^2 (> 0)."""
    wl = w * np.exp(x0 / sigma[:, None])
    p = wl / wl.sum(1, keepdims=True)
    mean = (p * x0).sum(1)
    var = (p * (x0 - mean[:, None]) ** 2).sum(1)
    return 1.0 + var / sigma**2


def _bracket(x0: np.ndarray, w: np.ndarray, xbar: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """libMR's search band: start at the moment estimate, halve or double until the sign flips."""
    mean = (w * x0).sum(1) / n
    std = np.sqrt((w * (x0 - mean[:, None]) ** 2).sum(1) / (n - 1))
    sigmahat = math.sqrt(6.0) * std / math.pi
    f = _likelihood_eq(sigmahat, x0, w, xbar)
    pos = f > 0
    lower = np.where(pos, 0.5 * sigmahat, sigmahat)
    upper = np.where(pos, sigmahat, 2.0 * sigmahat)
    todo = pos.copy()  # halve lower while f(lower) > 0
    while todo.any():
        todo &= _likelihood_eq(lower, x0, w, xbar) > 0
        upper = np.where(todo, lower, upper)
        lower = np.where(todo, 0.5 * lower, lower)
        if np.any(lower < 2.2250738585072014e-308):
            raise ValueError("Weibull fit failed: root search underflowed (degenerate tail)")
    todo = ~pos  # double upper while f(upper) < 0
    while todo.any():
        todo &= _likelihood_eq(upper, x0, w, xbar) < 0
        lower = np.where(todo, upper, lower)
        upper = np.where(todo, 2.0 * upper, upper)
        if np.any(~np.isfinite(upper)):
            raise ValueError("Weibull fit failed: root search overflowed (degenerate tail)")
    return lower, upper


def _libmr_zero(lo: np.ndarray, hi: np.ndarray, x0, w, xbar, tol: float = LIBMR_TOL) -> np.ndarray:
    """libMR's `wdfzero` (a Brent search, quirks included), run for all rows at once.

    libMR tests whether an interpolated step is acceptable even after choosing bisection, using the
    p, q of the previous interpolation (0 before the first one); that is reproduced here.
    """
    f = lambda s: _likelihood_eq(s, x0, w, xbar)  # noqa: E731
    a, b = lo.copy(), hi.copy()
    fa, fb = f(a), f(b)
    out = np.where(fa == 0, a, b)
    act = (fa != 0) & (fb != 0)
    c, fc = np.zeros_like(a), fb.copy()
    d, e, p, q = (np.zeros_like(a) for _ in range(4))
    for _ in range(10_000):
        if not act.any():
            break
        same = act & ((fb > 0) == (fc > 0))
        c, fc = np.where(same, a, c), np.where(same, fa, fc)
        d = np.where(same, b - a, d)
        e = np.where(same, d, e)
        swap = act & (np.abs(fc) < np.abs(fb))
        a, fa = np.where(swap, b, a), np.where(swap, fb, fa)
        b, fb = np.where(swap, c, b), np.where(swap, fc, fb)
        c, fc = np.where(swap, a, c), np.where(swap, fa, fc)
        m = 0.5 * (c - b)
        toler = 2.0 * tol * np.maximum(np.abs(b), 1.0)
        done = act & ((np.abs(m) <= toler) | (fb == 0))
        out = np.where(done, b, out)
        act = act & ~done
        bisect = (np.abs(e) < toler) | (np.abs(fa) <= np.abs(fb))
        interp = act & ~bisect
        d = np.where(act & bisect, m, d)
        e = np.where(act & bisect, m, e)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = fb / fa
            linear = a == c
            qq, rr = fa / fc, fb / fc
            p_new = np.where(linear, 2.0 * m * s, s * (2.0 * m * qq * (qq - rr) - (b - a) * (rr - 1.0)))
            q_new = np.where(linear, 1.0 - s, (qq - 1.0) * (rr - 1.0) * (s - 1.0))
        q_new = np.where(p_new > 0, -q_new, q_new)
        p_new = np.where(p_new > 0, p_new, -p_new)
        p, q = np.where(interp, p_new, p), np.where(interp, q_new, q)
        with np.errstate(divide="ignore", invalid="ignore"):
            accept = (2.0 * p < 3.0 * m * q - np.abs(toler * q)) & (p < np.abs(0.5 * e * q))
            e, d = np.where(act & accept, d, e), np.where(act & accept, p / q, d)
        d = np.where(act & ~accept, m, d)
        e = np.where(act & ~accept, m, e)
        a, fa = np.where(act, b, a), np.where(act, fb, fa)
        step = np.where(np.abs(d) > toler, d, np.where(b > c, -toler, toler))
        b = np.where(act, b + step, b)
        fb = np.where(act, f(b), fb)
        stop = act & (fb == 0)  # libMR's `while (fb != 0)`
        out = np.where(stop, b, out)
        act = act & ~stop
    return out


def _newton_zero(lo: np.ndarray, hi: np.ndarray, x0, w, xbar) -> np.ndarray:
    """The exact root of the likelihood equation: Newton steps kept inside the bracket."""
    s = 0.5 * (lo + hi)
    for _ in range(200):
        fs = _likelihood_eq(s, x0, w, xbar)
        lo, hi = np.where(fs < 0, s, lo), np.where(fs > 0, s, hi)
        new = s - fs / _likelihood_eq_deriv(s, x0, w)
        outside = ~((new > lo) & (new < hi))
        new = np.where(outside, 0.5 * (lo + hi), new)
        if np.all(np.abs(new - s) <= 1e-15 * np.abs(s)):
            return new
        s = new
    return s


def _fit_padded(values: np.ndarray, mask: np.ndarray, method: str) -> WeibullTails:
    """Fit every row of (C, T) `values` where `mask` marks the real entries."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    w = mask.astype(np.float64)
    small = np.where(mask, values, np.inf).min(1)
    logs = np.log(np.where(mask, values - small[:, None] + TRANSLATE_AMOUNT, 1.0))
    maxx = np.where(mask, logs, -np.inf).max(1)  # min of logs is log(1) = 0
    rng = maxx - np.where(mask, logs, np.inf).min(1)
    bad = np.flatnonzero(rng <= 0)
    if bad.size:
        raise ValueError(
            f"Weibull fit needs at least 2 distinct values per tail; tail(s) {bad.tolist()} "
            "have a single distinct value (too few samples, or a tail size of 1)"
        )
    x0 = np.where(mask, (logs - maxx[:, None]) / rng[:, None], 0.0)
    n = w.sum(1)
    xbar = (w * x0).sum(1) / n
    lo, hi = _bracket(x0, w, xbar, n)
    zero = _libmr_zero if method == "libmr" else _newton_zero
    sigma = zero(lo, hi, x0, w, xbar)
    mu = sigma * np.log((w * np.exp(x0 / sigma[:, None])).sum(1) / n)
    scale = np.exp(rng * mu + maxx)
    shape = 1.0 / (rng * sigma)
    return WeibullTails(shape=shape, scale=scale, small_score=small)


# ----------------------------------------------------------------------------- public API


def fit_high(tail, method: str = "libmr") -> WeibullTail:
    """Fit libMR's FitHigh model to the values of `tail` (the largest distances of a class)."""
    t = _check_tail(tail)
    return _fit_padded(t[None, :], np.ones((1, t.size), dtype=bool), method)[0]


def fit_high_many(tails, method: str = "libmr") -> WeibullTails:
    """Fit one FitHigh model per row of a (C, T) array, or per array of a list of ragged tails.

    All classes are solved together with array operations, so it is much faster than a loop.
    """
    if isinstance(tails, (np.ndarray, torch.Tensor)):
        arr = _as_float_array(tails)
        if arr.ndim != 2:
            raise ValueError(f"tails must be a (C, T) array or a list of 1-D arrays, got shape {arr.shape}")
        tails = list(arr)
    if len(tails) == 0:
        raise ValueError("tails is empty: need at least one tail to fit")
    checked = [_check_tail(t, f"tail {i}") for i, t in enumerate(tails)]
    values, mask = _pad(checked)
    return _fit_padded(values, mask, method)
