"""osrkit.evt checked value by value against a scalar port of libMR's C code (weibull.c) written here,
plus closed forms and edge cases (exact zeros of the likelihood equation, ties, degenerate inputs).

The private solver pieces (_bracket, _libmr_zero, _newton_zero, _likelihood_eq_deriv) are called
directly where the public API cannot reach a branch (an exact zero at a bracket end, say).
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from osrkit import evt
from osrkit.evt import WeibullTail, WeibullTails, fit_high, fit_high_many
from conftest import SHARED

FULL_PRECISION_MIN = 2.225073858507201e-308  # libMR's underflow limit


# ----------------------------------------------------------------------------- scalar libMR port


def _row_f(x0, xbar, w=None):
    """libMR's weibull_scale_likelihood for one row (w: libMR's frequencies, 1 by default)."""
    x0 = np.asarray(x0, dtype=np.float64)
    w = np.ones_like(x0) if w is None else np.asarray(w, dtype=np.float64)

    def f(sigma):
        wl = w * np.exp(x0 / sigma)
        return sigma + xbar - (wl * x0).sum() / wl.sum()

    return f


def _ref_prepare(tail):
    """libMR's FitHigh preprocessing: translate so the min is 1, log, scale to [-1, 0]."""
    t = np.asarray(tail, dtype=np.float64)
    logs = np.log(t - t.min() + 1.0)
    maxx, rng = logs.max(), logs.max() - logs.min()
    x0 = (logs - maxx) / rng
    return x0, x0.sum() / x0.size, maxx, rng


def _ref_bracket(x0, xbar):
    f = _row_f(x0, xbar)
    n = x0.size
    mean = x0.sum() / n
    std = math.sqrt(((x0 - mean) ** 2).sum() / (n - 1))
    sigmahat = math.sqrt(6.0) * std / math.pi
    if f(sigmahat) > 0:
        upper, lower = sigmahat, 0.5 * sigmahat
        while f(lower) > 0:
            upper, lower = lower, 0.5 * lower
            if lower < FULL_PRECISION_MIN:
                raise ValueError("underflow")
    else:
        lower, upper = sigmahat, 2.0 * sigmahat
        while f(upper) < 0:
            lower, upper = upper, 2.0 * upper
            if not math.isfinite(upper):
                raise ValueError("overflow")
    return lower, upper


def _ref_wdfzero(f, a, b, tol=1e-6):
    """libMR's wdfzero, line by line (its stale p, q in the acceptance test included; p = q = 0 at first)."""
    fa, fb = f(a), f(b)
    if fa == 0:
        return a
    if fb == 0:
        return b
    c = d = e = p = q = 0.0
    fc = fb
    while fb != 0:
        if (fb > 0) == (fc > 0):
            c, fc = a, fa
            d = b - a
            e = d
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        m = 0.5 * (c - b)
        toler = 2.0 * tol * max(abs(b), 1.0)
        if abs(m) <= toler or fb == 0.0:
            break
        if abs(e) < toler or abs(fa) <= abs(fb):
            d = e = m
        else:
            s = fb / fa
            if a == c:
                p, q = 2.0 * m * s, 1.0 - s
            else:
                qq, r = fa / fc, fb / fc
                p = s * (2.0 * m * qq * (qq - r) - (b - a) * (r - 1.0))
                q = (qq - 1.0) * (r - 1.0) * (s - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
        if 2.0 * p < 3.0 * m * q - abs(toler * q) and p < abs(0.5 * e * q):
            e, d = d, p / q
        else:
            d = e = m
        a, fa = b, fb
        if abs(d) > toler:
            b = b + d
        elif b > c:
            b = b - toler
        else:
            b = b + toler
        fb = f(b)
    return b


def _ref_fit(tail):
    """(shape, scale, small_score) as libMR's FitHigh computes them."""
    x0, xbar, maxx, rng = _ref_prepare(tail)
    lo, hi = _ref_bracket(x0, xbar)
    sigma = _ref_wdfzero(_row_f(x0, xbar), lo, hi)
    mu = sigma * math.log(np.exp(x0 / sigma).sum() / x0.size)
    return 1.0 / (rng * sigma), math.exp(rng * mu + maxx), float(np.min(tail))


def _padded(rows):
    """(C, T) x0 padded with 0, weights, xbar, n, as the module lays them out."""
    width = max(len(r) for r in rows)
    x0 = np.zeros((len(rows), width))
    w = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        x0[i, : len(r)] = r
        w[i, : len(r)] = 1.0
    n = w.sum(1)
    return x0, w, (w * x0).sum(1) / n, n


# Tails chosen to walk every branch of libMR's bracket search: one outlier below many ties needs
# two halvings, one outlier above many ties two doublings, tiny tails, ties, a near-degenerate one.
SPECIAL_TAILS = [
    [0.0] + [10.0] * 40,  # 2 halvings
    [0.0] + [10.0] * 19,  # 1 halving
    [0.0] * 155 + [1.5],  # 2 doublings
    [0.0] * 15 + [1.5],  # 1 doubling
    [1.0, 2.0],
    [1.0, 2.0, 3.0],
    [1.0, 1.0, 2.0],
    [1.0, 2.0, 2.0],
    [0.0, 10.0, 10.001, 10.002, 10.003],
    [5.0, 5.5, 7.0, 7.0, 9.0, 30.0],
]


@pytest.fixture(scope="module")
def reference_tails() -> list[list[float]]:
    cases = json.loads((SHARED / "spec" / "reference" / "weibull_libmr.json").read_text())["cases"]
    return [c["tail"] for c in cases]


@pytest.fixture(scope="module")
def all_tails(reference_tails):
    rng = np.random.default_rng(7)
    random = [list(rng.weibull(k, size) * 3 + 2) for k, size in [(0.7, 9), (3.0, 4), (8.0, 25), (1.2, 60)]]
    return reference_tails + SPECIAL_TAILS + random


# ----------------------------------------------------------------------------- the bracket


def test_bracket_matches_libmr_search_band(all_tails):
    rows = [_ref_prepare(t)[0] for t in all_tails]
    x0, w, xbar, n = _padded(rows)
    lo, hi = evt._bracket(x0, w, xbar, n)
    for i, r in enumerate(rows):
        ref = _ref_bracket(r, r.sum() / r.size)
        assert lo[i] == pytest.approx(ref[0], rel=1e-12), i
        assert hi[i] == pytest.approx(ref[1], rel=1e-12), i
        f = _row_f(r, r.sum() / r.size)
        assert f(lo[i]) <= 0 < f(hi[i]) and hi[i] == pytest.approx(2 * lo[i], rel=1e-15)


def _sigmahat(x0row):
    n = len(x0row)
    return math.sqrt(6.0) * math.sqrt(((x0row - x0row.mean()) ** 2).sum() / (n - 1)) / math.pi


def _row_with_exact_zero(factor):
    """x0 = [-1, c, 0] and an xbar that make the likelihood equation exactly 0 at factor * sigmahat.

    Not every row allows it (s + xbar is rounded on a coarser grid than the weighted mean), so c and
    xbar are stepped until the computed f is exactly 0."""
    for c in np.linspace(-0.9, -0.1, 81):
        r = np.array([-1.0, c, 0.0])
        sigma = factor * _sigmahat(r)
        wl = np.exp(r / sigma)
        ratio = (wl * r).sum() / wl.sum()
        xb = ratio - sigma
        for _ in range(8):
            v = sigma + xb - ratio
            if v == 0:
                return r, xb
            xb = np.nextafter(xb, -np.inf if v > 0 else np.inf)
    raise AssertionError("no exact zero found")


def _bracket1(r, xb):
    lo, hi = evt._bracket(r[None], np.ones((1, r.size)), np.array([xb]), np.array([float(r.size)]))
    return lo[0], hi[0]


def test_bracket_when_f_is_exactly_zero_at_the_moment_estimate():
    """libMR tests f(sigmahat) > 0: an exact 0 takes the doubling branch, giving [sigmahat, 2 sigmahat]."""
    r, xb = _row_with_exact_zero(1.0)
    s = _sigmahat(r)
    assert _bracket1(r, xb) == (s, 2 * s)


def test_bracket_stops_halving_at_an_exact_zero():
    """The halving loop runs while f(lower) > 0, so an exact 0 at sigmahat/2 ends it: [sigmahat/2, sigmahat]."""
    r, xb = _row_with_exact_zero(0.5)
    s = _sigmahat(r)
    assert _row_f(r, xb)(s) > 0
    assert _bracket1(r, xb) == (0.5 * s, s)


def test_bracket_stops_doubling_at_an_exact_zero():
    """The doubling loop runs while f(upper) < 0, so an exact 0 at 2 sigmahat ends it: [sigmahat, 2 sigmahat]."""
    r, xb = _row_with_exact_zero(2.0)
    s = _sigmahat(r)
    assert _row_f(r, xb)(s) < 0
    assert _bracket1(r, xb) == (s, 2 * s)


def test_bracket_rows_are_searched_independently():
    """A row that needs two halvings next to rows needing none or two doublings: each gets its own band."""
    tails = [[0.0] + [10.0] * 40, [1.0, 2.0, 3.0], [0.0] * 155 + [1.5], [0.0] * 15 + [1.5]]
    rows = [_ref_prepare(t)[0] for t in tails]
    x0, w, xbar, n = _padded(rows)
    lo, hi = evt._bracket(x0, w, xbar, n)
    for i, r in enumerate(rows):
        ref = _ref_bracket(r, r.sum() / r.size)
        np.testing.assert_allclose([lo[i], hi[i]], ref, rtol=1e-12)
    s = [_sigmahat(r) for r in rows]
    np.testing.assert_allclose([hi[0] / s[0], hi[2] / s[2]], [0.25, 8.0], rtol=1e-12)  # 2 halvings, 2 doublings


def test_bracket_underflow_and_overflow_are_reported():
    """Only reachable with an inconsistent xbar: f > 0 for every sigma, or f < 0 for every sigma."""
    r = np.array([[-1.0, 0.0]])
    with pytest.raises(ValueError, match=r"^Weibull fit failed: root search underflowed \(degenerate tail\)$"):
        evt._bracket(r, np.ones((1, 2)), np.array([0.5]), np.array([2.0]))
    with pytest.raises(ValueError, match=r"^Weibull fit failed: root search overflowed \(degenerate tail\)$"):
        with np.errstate(over="ignore"):  # upper doubles past the largest float
            evt._bracket(r, np.ones((1, 2)), np.array([-np.inf]), np.array([2.0]))


def test_bracket_halving_may_end_exactly_at_the_smallest_normal_number():
    """lower == 2**-1022 is not below libMR's FULL_PRECISION_MIN, so the search goes on and ends there."""
    # x0 = [-a, 0] with a chosen so that sigmahat is exactly 0.5: halving then hits 2**-1022 exactly.
    a = 0.5 / (math.sqrt(6.0) / math.pi) * math.sqrt(2.0)
    for _ in range(400):
        if _sigmahat(np.array([-a, 0.0])) == 0.5:
            break
        a = np.nextafter(a, np.inf if _sigmahat(np.array([-a, 0.0])) < 0.5 else -np.inf)
    assert _sigmahat(np.array([-a, 0.0])) == 0.5
    xb = -1.5 * 2.0**-1022  # f(s) = s + xb for tiny s: > 0 at 2**-1021, < 0 at 2**-1022
    lo, hi = evt._bracket(np.array([[-a, 0.0]]), np.ones((1, 2)), np.array([xb]), np.array([2.0]))
    assert (lo[0], hi[0]) == (2.0**-1022, 2.0**-1021)


# ----------------------------------------------------------------------------- libMR's Brent search


def test_libmr_zero_matches_scalar_wdfzero_row_by_row(all_tails):
    rows = [_ref_prepare(t)[0] for t in all_tails]
    x0, w, xbar, n = _padded(rows)
    lo, hi = evt._bracket(x0, w, xbar, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # divisions by 0 of finished rows are expected and silenced
        got = evt._libmr_zero(lo, hi, x0, w, xbar)
    for i, r in enumerate(rows):
        ref = _ref_wdfzero(_row_f(r, r.sum() / r.size), lo[i], hi[i])
        assert got[i] == pytest.approx(ref, rel=1e-13, abs=0), i


def _linear_rows(specs):
    """Rows with x0 = [0, 0]: the likelihood equation is exactly f(s) = s + xbar."""
    k = len(specs)
    lo = np.array([s[0] for s in specs], dtype=np.float64)
    hi = np.array([s[1] for s in specs], dtype=np.float64)
    xbar = np.array([s[2] for s in specs], dtype=np.float64)
    return lo, hi, np.zeros((k, 2)), np.ones((k, 2)), xbar


def test_libmr_zero_exact_zeros_at_ends_and_inside():
    specs = [
        (0.5, 2.0, -0.5),  # f(lo) == 0: lo is the answer
        (0.5, 2.0, -2.0),  # f(hi) == 0: hi is the answer
        (0.5, 2.0, -1.25),  # first bisection lands on the root exactly (stop at fb == 0)
        (0.5, 3.0, -2.0),  # f(hi) == 1.0 exactly on the way: no special meaning
        (1.0, 4.0, -3.3),  # root above 1: tolerance scales with |b|
        (2.0, 0.5, -1.0),  # f(lo) == 1.0 exactly, bracket given high end first: still searched
        (0.5, 2.0, -1.0),  # f(hi) == 1.0 exactly
        (4e-6, 8e-6, -5.5e-6),  # |m| == toler (2e-6) exactly at once: converged, b (here lo) is returned
    ]
    lo, hi, x0, w, xbar = _linear_rows(specs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0/0 and x/0 of finished rows must stay silent
        got = evt._libmr_zero(lo, hi, x0, w, xbar)
    ref = [_ref_wdfzero(lambda s, xb=xb: s + xb, a, b) for a, b, xb in specs]
    assert got.tolist() == ref
    assert got[:3].tolist() == [0.5, 2.0, 1.25]
    assert got[3] == pytest.approx(2.0, abs=4e-6) and got[4] == pytest.approx(3.3, abs=1e-5)
    assert got[5:7].tolist() == pytest.approx([1.0, 1.0], abs=4e-6)
    assert got[7] == 4e-6


# Rows whose likelihood equation bends sharply (a heavy frequency on the low value moves the weighted
# mean abruptly), so that Brent rejects some interpolated steps; x0 scaled by 10 puts roots above 1.
CURVED_ROWS = [  # (x0, w, xbar, lo, hi)
    ([-1.0, 0.0], [1e3, 1.0], -0.9, 1e-4, 100.0),
    ([-1.0, 0.0], [1e3, 1.0], -0.2, 0.01, 0.3),
    ([-1.0, 0.0], [1e6, 1.0], -0.9, 1e-3, 10.0),
    ([-1.0, 0.0], [1e6, 1.0], -0.2, 1e-4, 100.0),
    ([-1.0, 0.0], [1e12, 1.0], -0.9, 1e-3, 1.0),
    ([-1.0, 0.0], [1e12, 1.0], -0.05, 1e-3, 10.0),
    ([-1.0, 0.0], [1e12, 1.0], -0.5, 0.01, 0.3),
    ([-10.0, 0.0], [1e6, 1.0], -15.0, 1e-2, 100.0),
    ([-10.0, 0.0], [1e12, 1.0], -12.0, 1e-2, 1e3),
    ([-10.0, -4.0, 0.0], [1e9, 1e4, 1.0], -14.0, 1e-2, 50.0),
    # found by a random search where Brent's acceptance test and its bookkeeping (e, d) matter
    ([-15.531399007243838, 0.0], [1e3, 1e8], -8.393280470519464, 2.3796202618624513, 24.16224056814315),
    ([-3.4316547583089436, -2.381515359681529, 0.0], [1e11, 1e7, 1e8], -1.1809100899815876, 0.002832110989156245,
     132.2543323528429),
    ([-0.36002557023764215, 0.0], [1e8, 1e3], -0.34837240064638575, 0.0022936291781078654, 48.616820924774366),
    ([-0.8873088743608148, -0.8236100136812076, 0.0], [1e11, 1e10, 1e9], -0.29680995784614983, 0.013704204938081305,
     70.64417717064023),
    ([-3.093512197089523, -1.6776895682619908, 0.0], [1e11, 1e9, 1.0], -1.6285012214198653, 0.002142860839410054,
     462.7158123563296),
    ([-0.18188178231694546, 0.0], [1e21, 1e6], -0.004687833092883443, 0.00047307651291434946, 0.09419540869379857),
    ([-0.3145136583990981, -0.19304259356962286, 0.0], [1e30, 1e16, 1e17], -0.011004756327119591,
     4.350378769353369e-05, 1.0567481769613665),
]


def test_libmr_zero_matches_scalar_wdfzero_on_curved_equations():
    k = len(CURVED_ROWS)
    x0, w = np.zeros((k, 3)), np.zeros((k, 3))
    for i, (r, wr, *_ ) in enumerate(CURVED_ROWS):
        x0[i, : len(r)], w[i, : len(r)] = r, wr
    xbar = np.array([c[2] for c in CURVED_ROWS])
    lo, hi = np.array([c[3] for c in CURVED_ROWS]), np.array([c[4] for c in CURVED_ROWS])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = evt._libmr_zero(lo, hi, x0, w, xbar)
    for i, (r, wr, xb, a, b) in enumerate(CURVED_ROWS):
        f = _row_f(r, xb, wr)
        assert got[i] == pytest.approx(_ref_wdfzero(f, a, b), rel=1e-13, abs=0), i
        root = brentq(f, a, b, xtol=1e-14)
        assert got[i] == pytest.approx(root, abs=2e-6 * max(root, 1.0)), i  # libMR's tolerance
    assert got[7:10].min() > 1.0


def test_libmr_zero_on_a_curved_row_next_to_finished_rows(reference_tails):
    """Rows that finish at once (exact zeros) must not disturb a row that needs many steps."""
    r = _ref_prepare(reference_tails[0])[0]
    T = r.size
    xr = r.sum() / T
    rlo, rhi = _ref_bracket(r, xr)
    x0 = np.zeros((3, T))
    x0[0] = r
    w = np.zeros((3, T))
    w[0] = 1.0
    w[1:, :2] = 1.0
    lo, hi, xbar = np.array([rlo, 0.5, 0.5]), np.array([rhi, 2.0, 2.0]), np.array([xr, -0.5, -2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = evt._libmr_zero(lo, hi, x0, w, xbar)
    assert got[0] == pytest.approx(_ref_wdfzero(_row_f(r, xr), rlo, rhi), rel=1e-13)
    assert got[1:].tolist() == [0.5, 2.0]


# Negative frequencies make the equation non-monotone, so that Brent's search must fall back to
# bisection (|e| < toler or no progress); libMR never sees such rows, but its search is generic.
NON_MONOTONE_ROWS = [
    ([-0.18021868016661993, -0.08644800359252806, 0.0], [1e3, 10.0, -10.0], -0.18839465738072644,
     0.00022766554674048708, 2.7620336225935795),
    ([-11.290241498778418, -8.239333139459072, 0.0], [100.0, 1e3, -10.0], -0.8393693129484091,
     0.014920962745622676, 700.1953243836679),
]


def test_libmr_zero_matches_scalar_wdfzero_when_it_must_bisect():
    x0 = np.array([r[0] for r in NON_MONOTONE_ROWS])
    w = np.array([r[1] for r in NON_MONOTONE_ROWS])
    xbar, lo, hi = (np.array([r[k] for r in NON_MONOTONE_ROWS]) for k in (2, 3, 4))
    with np.errstate(all="ignore"):
        got = evt._libmr_zero(lo, hi, x0, w, xbar)
    for i, (r, wr, xb, a, b) in enumerate(NON_MONOTONE_ROWS):
        f = _row_f(r, xb, wr)
        with np.errstate(all="ignore"):
            assert got[i] == pytest.approx(_ref_wdfzero(f, a, b), rel=1e-13, abs=0), i
            t = 4e-6 * max(abs(got[i]), 1.0)
            assert (f(got[i] - t) > 0) != (f(got[i] + t) > 0), i  # a sign change within libMR's tolerance


def test_libmr_zero_with_end_values_of_exactly_opposite_size():
    """|f(lo)| == |f(hi)|: libMR swaps a and b only when |fc| < |fb| strictly, which decides the path."""
    r, xb, lo, hi = [-1.0, -0.4, 0.0], -0.3, 0.012372881355932203, 0.42047648912265784
    f = _row_f(r, xb)
    assert f(lo) == -f(hi)
    got = evt._libmr_zero(np.array([lo]), np.array([hi]), np.array([r]), np.ones((1, 3)), np.array([xb]))
    assert got[0] == pytest.approx(_ref_wdfzero(f, lo, hi), rel=1e-13, abs=0)
    assert got[0] == pytest.approx(brentq(f, lo, hi, xtol=1e-14), abs=2e-6)


# ----------------------------------------------------------------------------- public fits


def test_fit_high_many_libmr_equals_scalar_port(all_tails):
    many = fit_high_many(all_tails)
    for i, t in enumerate(all_tails):
        shape, scale, small = _ref_fit(t)
        assert many.shape[i] == pytest.approx(shape, rel=1e-12), i
        assert many.scale[i] == pytest.approx(scale, rel=1e-12), i
        assert many.small_score[i] == small
        one = fit_high(t)
        assert (one.shape, one.scale) == pytest.approx((shape, scale), rel=1e-12)


def _weibull_mle(x):
    """The Weibull MLE (location 0) from its shape equation, solved by scipy's brentq.

    The equation is invariant to rescaling x, so x / max(x) keeps x**k from overflowing."""
    top = x.max()
    u = x / top
    lu = np.log(u)

    def g(k):
        uk = u**k
        return (uk * lu).sum() / uk.sum() - 1.0 / k - lu.mean()

    k = brentq(g, 1e-3, 1e3, xtol=1e-15, rtol=1e-15, maxiter=500)
    return k, top * np.mean(u**k) ** (1.0 / k)


def test_fit_high_mle_equals_brentq_on_the_shape_equation(all_tails):
    tails = [t for t in all_tails if len(set(t)) > 2]
    many = fit_high_many(tails, method="mle")
    for i, t in enumerate(tails):
        x = np.asarray(t) - min(t) + 1.0
        k, lam = _weibull_mle(x)
        assert many.shape[i] == pytest.approx(k, rel=1e-9), i
        assert many.scale[i] == pytest.approx(lam, rel=1e-9), i


def test_fit_high_many_padding_does_not_leak_into_a_short_tail_with_a_tiny_scale():
    """A tail of 2000 ties and one low outlier has Gumbel scale ~1/2000: exp(x0/sigma) of a padded slot
    would overflow unless the padding is inert. Fitting it beside a longer tail must equal fitting it alone."""
    short = [0.0] + [10.0] * 2000
    long = list(np.linspace(1.0, 5.0, 2005))
    for method in ("libmr", "mle"):
        many = fit_high_many([short, long], method=method)
        alone = fit_high(short, method=method)
        assert np.isfinite(many.shape).all()
        assert many.shape[0] == pytest.approx(alone.shape, rel=1e-12)
        assert many.scale[0] == pytest.approx(alone.scale, rel=1e-12)
    shape, scale, _ = _ref_fit(short)
    assert fit_high(short).shape == pytest.approx(shape, rel=1e-12)


def test_fit_high_of_float32_data_is_computed_in_float64():
    tail32 = np.array([3.1, 3.7, 4.2, 5.9, 8.3, 9.05], dtype=np.float32)
    fit = fit_high(tail32)
    shape, scale, small = _ref_fit(tail32.astype(np.float64))
    assert (fit.shape, fit.scale) == pytest.approx((shape, scale), rel=1e-13)
    assert fit.small_score == small
    fit_mle = fit_high(tail32, method="mle")
    k, lam = _weibull_mle(tail32.astype(np.float64) - float(tail32.min()) + 1.0)
    assert (fit_mle.shape, fit_mle.scale) == pytest.approx((k, lam), rel=1e-9)


def test_fit_high_many_of_a_single_tail():
    t = [1.0, 2.5, 2.0, 4.0]
    many = fit_high_many([t])
    assert len(many) == 1
    shape, scale, _ = _ref_fit(t)
    assert (many.shape[0], many.scale[0]) == pytest.approx((shape, scale), rel=1e-12)


# ----------------------------------------------------------------------------- messages


def test_fit_high_error_messages_name_the_tail():
    with pytest.raises(ValueError, match=r"^tail must be 1-D, got shape \(2, 2\)$"):
        fit_high([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match=r"^tail is empty: a Weibull fit needs at least 2 distinct values$"):
        fit_high([])
    with pytest.raises(ValueError, match=r"^tail contains NaN or infinite values$"):
        fit_high([1.0, np.nan])
    with pytest.raises(
        ValueError,
        match=r"^Weibull fit needs at least 2 distinct values per tail; tail\(s\) \[0\] have a single "
        r"distinct value \(too few samples, or a tail size of 1\)$",
    ):
        fit_high([2.0, 2.0])


def test_fit_high_many_error_messages_name_the_tail_index():
    with pytest.raises(ValueError, match=r"^tails is empty: need at least one tail to fit$"):
        fit_high_many([])
    with pytest.raises(ValueError, match=r"^tail 1 contains NaN or infinite values$"):
        fit_high_many([[1.0, 2.0], [1.0, np.inf]])
    with pytest.raises(ValueError, match=r"^tail 0 must be 1-D"):
        fit_high_many([[[1.0, 2.0]], [1.0, 3.0]])
    with pytest.raises(ValueError, match=r"tail\(s\) \[0, 2\] have a single distinct value"):
        fit_high_many([[4.0], [1.0, 2.0], [3.0, 3.0, 3.0]])


# ----------------------------------------------------------------------------- the Newton solver


def test_likelihood_eq_deriv_matches_finite_differences():
    rows = [np.array([-1.0, -0.6, -0.2, 0.0]), np.array([-1.0, -0.1, 0.0, 0.0])]
    x0, w, xbar, _ = _padded(rows)
    x0[1, 3], w[1, 3] = 0.7, 0.0  # a padded slot with a non-zero value must carry no weight
    sigma = np.array([0.3, 0.45])
    got = evt._likelihood_eq_deriv(sigma, x0, w)
    h = 1e-6
    for i, r in enumerate(rows):
        r = r[: int(w[i].sum())]
        f = _row_f(r, xbar[i])
        fd = (f(sigma[i] + h) - f(sigma[i] - h)) / (2 * h)
        assert got[i] == pytest.approx(fd, rel=1e-7)
        p = np.exp(r / sigma[i]) / np.exp(r / sigma[i]).sum()  # closed form: 1 + Var_p(x0) / sigma^2
        assert got[i] == pytest.approx(1 + (p * (r - (p * r).sum()) ** 2).sum() / sigma[i] ** 2, rel=1e-13)


def _counting(monkeypatch):
    calls = []
    inner = evt._likelihood_eq

    def counted(sigma, *args):
        calls.append(1)
        return inner(sigma, *args)

    monkeypatch.setattr(evt, "_likelihood_eq", counted)
    return calls


def test_newton_zero_converges_quadratically_to_the_root(monkeypatch, reference_tails):
    """Newton's method from the bracket midpoint: the exact root in a handful of steps (bisection needs ~50)."""
    rows = [_ref_prepare(t)[0] for t in reference_tails[:3]]
    x0, w, xbar, n = _padded(rows)
    lo, hi = evt._bracket(x0, w, xbar, n)
    calls = _counting(monkeypatch)
    got = evt._newton_zero(lo, hi, x0, w, xbar)
    assert len(calls) <= 8
    for i, r in enumerate(rows):
        root = brentq(_row_f(r, xbar[i]), lo[i], hi[i], xtol=1e-300, rtol=1e-15)
        assert got[i] == pytest.approx(root, rel=1e-14)


def test_newton_zero_stays_inside_a_wide_bracket(reference_tails):
    """From a far-off midpoint a raw Newton step leaves the bracket; the safeguard bisects instead."""
    r = _ref_prepare(reference_tails[1])[0]
    xb = r.sum() / r.size
    root = brentq(_row_f(r, xb), 1e-3, 100.0, xtol=1e-300, rtol=1e-15)
    for lo, hi in [(1e-3, 100.0), (1e-3, 1e4), (0.5 * root, 1.0001 * root), (0.999 * root, 50 * root)]:
        got = evt._newton_zero(np.array([lo]), np.array([hi]), r[None], np.ones((1, r.size)), np.array([xb]))
        assert got[0] == pytest.approx(root, rel=1e-14), (lo, hi)


@pytest.mark.parametrize("scale", [1e-8, 1e-3, 1e3, 1e8])
def test_newton_zero_is_scale_free(reference_tails, scale):
    """Scaling x0 by c scales the root by c; the solver's relative stopping rule keeps full precision."""
    r = _ref_prepare(reference_tails[0])[0] * scale
    xb = r.sum() / r.size
    lo, hi = _ref_bracket(r, xb)
    got = evt._newton_zero(np.array([lo]), np.array([hi]), r[None], np.ones((1, r.size)), np.array([xb]))
    root = brentq(_row_f(r, xb), lo, hi, xtol=1e-300, rtol=1e-15)
    assert got[0] == pytest.approx(root, rel=1e-13)


def test_newton_zero_returns_an_exact_root_at_the_midpoint():
    """f(s) = s + xbar with its root at the bracket midpoint: found at once, exactly."""
    lo, hi, x0, w, xbar = _linear_rows([(0.5, 1.5, -1.0), (2.0, 6.0, -4.0)])
    assert evt._newton_zero(lo, hi, x0, w, xbar).tolist() == [1.0, 4.0]


def test_newton_zero_root_at_the_bracket_end_is_approached_from_inside():
    """Root exactly at lo: the Newton step lands on lo, which is outside the open bracket, so the result
    is bisected towards it and ends within 1e-15 of it but strictly inside."""
    lo, hi, x0, w, xbar = _linear_rows([(0.5, 1.5, -0.5), (0.5, 1.5, -1.5)])
    got = evt._newton_zero(lo, hi, x0, w, xbar)
    assert got[0] == pytest.approx(0.5, rel=1e-14) and got[0] > 0.5
    assert got[1] == pytest.approx(1.5, rel=1e-14) and got[1] < 1.5


# ----------------------------------------------------------------------------- w-scores


def test_w_score_gradient_is_zero_at_and_below_the_tail_origin():
    """The CDF is flat (0) for x - small_score + 1 <= 0; with shape < 1 a naive power would give inf/NaN."""
    tail = WeibullTail(shape=0.5, scale=2.0, small_score=3.0)
    x = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64, requires_grad=True)  # t = -1, 0, 2
    y = tail.w_score(x)
    y.sum().backward()
    assert y[:2].tolist() == [0.0, 0.0]
    g = x.grad.tolist()
    assert g[:2] == [0.0, 0.0]
    z = 2.0 / 2.0
    assert g[2] == pytest.approx(math.exp(-(z**0.5)) * 0.5 * z**-0.5 / 2.0, rel=1e-12)


def test_w_score_is_zero_at_the_origin_even_for_a_degenerate_shape():
    """0 where x - small_score + 1 <= 0, whatever the parameters (shape 0 makes 0**0 == 1 elsewhere)."""
    tail = WeibullTail(shape=0.0, scale=1.0, small_score=3.0)
    got = tail.w_score(np.array([2.0, 3.0]))
    assert got[0] == 0.0 and got[1] == pytest.approx(1 - math.exp(-1), rel=1e-14)
    tails = WeibullTails(np.array([0.0]), np.array([1.0]), np.array([3.0]))
    assert tails.w_score(np.array([[2.0]]))[0, 0] == 0.0
    assert tails.w_score(torch.tensor([[2.0]], dtype=torch.float64))[0, 0].item() == 0.0


def test_w_score_below_the_origin_raises_no_overflow_warning():
    """A steep tail (shape 1100): values below the origin must not be pushed through a power that overflows."""
    tail = WeibullTail(shape=1100.0, scale=1.0, small_score=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = tail.w_score(np.array([1.0, 3.0, 4.0, 4.5]))
        got_many = WeibullTails(np.array([1100.0]), np.array([1.0]), np.array([5.0])).w_score(np.array([[1.0]]))
    assert got[:3].tolist() == [0.0, 0.0, 0.0]
    assert got[3] == pytest.approx(-math.expm1(-(0.5**1100.0)), rel=1e-14)
    assert got_many[0, 0] == 0.0


def test_w_score_of_float32_input_is_float64_and_exact():
    """numpy input is scored in float64: x - small_score + 1 is not rounded to float32 first."""
    tail = WeibullTail(shape=1.0, scale=1e7, small_score=0.5)
    x = np.array([1e7], dtype=np.float32)
    got = tail.w_score(x)
    assert got.dtype == np.float64
    assert got[0] == pytest.approx(-math.expm1(-(1e7 - 0.5 + 1.0) / 1e7), rel=1e-15)
    many = WeibullTails(np.array([1.0]), np.array([1e7]), np.array([0.5]))
    assert many.w_score(x[None]).dtype == np.float64


def test_w_score_output_is_float64_for_extended_precision_parameters():
    tails = WeibullTails(np.array([2.0]), np.array([3.0]), np.array([10.0], dtype=np.longdouble))
    got = tails.w_score(np.array([[12.0]]))
    assert got.dtype == np.float64
    assert got[0, 0] == pytest.approx(1 - math.exp(-1.0), rel=1e-15)


def test_w_score_of_a_tensor_keeps_its_dtype_and_device():
    tails = WeibullTails(np.array([2.0, 1.0]), np.array([3.0, 1.5]), np.array([10.0, 0.0]))
    x = torch.tensor([[12.0, 0.5], [9.0, 1.0]], dtype=torch.float32)
    got = tails.w_score(x)
    assert got.dtype == torch.float32
    expected = [[1 - math.exp(-1.0), 1 - math.exp(-1.5 / 1.5)], [0.0, 1 - math.exp(-2.0 / 1.5)]]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    meta = tails.w_score(torch.zeros(4, 2, device="meta"))  # parameters follow x to its device
    assert meta.device.type == "meta" and meta.shape == (4, 2)
