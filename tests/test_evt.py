"""libMR-compatible Weibull tail fitting (osrkit.evt) against libMR's own numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import weibull_min

from osrkit.evt import WeibullTail, fit_high, fit_high_many
from conftest import SHARED

REFERENCE = SHARED / "spec" / "reference"


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    path = REFERENCE / "weibull_libmr.json"
    if not path.exists():
        pytest.skip(f"reference file missing: {path}")
    return json.loads(path.read_text())["cases"]


@pytest.mark.parametrize("method, tol", [("libmr", 1e-9), ("mle", 1e-4)])
def test_fit_high_matches_libmr(cases, method, tol):
    for case in cases:
        tail, ref = np.array(case["tail"]), case["libmr_params"]
        fit = fit_high(tail, method=method)
        assert fit.small_score == ref["small_score"] == tail.min()
        assert fit.translate_amount == ref["translate_amount"] == 1
        assert fit.shape == pytest.approx(ref["shape"], abs=tol)
        assert fit.scale == pytest.approx(ref["scale"], abs=tol)
        np.testing.assert_allclose(fit.w_score(np.array(case["query"])), case["w_score"], atol=tol, rtol=0)


def test_mle_is_the_exact_maximum_likelihood_fit(cases):
    for case in cases:
        x = np.array(case["tail"]) - min(case["tail"]) + 1
        fit = fit_high(x + 5.0, method="mle")  # translation invariant
        k, loc, s = weibull_min.fit(x, floc=0)
        assert loc == 0 and fit.shape == pytest.approx(k, abs=1e-4) and fit.scale == pytest.approx(s, abs=1e-4)
        lx, xk = np.log(x), x**fit.shape  # the Weibull MLE shape equation holds to rounding
        assert (xk * lx).sum() / xk.sum() - 1 / fit.shape - lx.mean() == pytest.approx(0, abs=1e-12)
        assert np.mean(xk) ** (1 / fit.shape) == pytest.approx(fit.scale, rel=1e-12)


def test_w_score_definition_and_array_types():
    tail = WeibullTail(shape=2.0, scale=3.0, small_score=10.0)
    x = np.array([5.0, 9.0, 9.5, 10.0, 12.0])
    t = x - 10.0 + 1.0
    expected = np.where(t > 0, 1 - np.exp(-((np.clip(t, 0, None) / 3.0) ** 2)), 0.0)
    np.testing.assert_allclose(tail.w_score(x), expected, rtol=1e-14, atol=0)
    np.testing.assert_allclose(tail.w_score(list(x)), expected, rtol=1e-14)
    out = tail.w_score(torch.tensor(x))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-14)
    assert tail.w_score(np.array([9.0]))[0] == 0.0  # x - m + 1 == 0


@pytest.mark.parametrize("method", ["libmr", "mle"])
def test_fit_high_many_equals_loop(cases, method):
    tails = [c["tail"] for c in cases]  # ragged lengths
    many = fit_high_many(tails, method=method)
    assert len(many) == len(tails)
    for i, tail in enumerate(tails):
        one = fit_high(tail, method=method)
        assert many[i].shape == pytest.approx(one.shape, rel=1e-12)
        assert many[i].scale == pytest.approx(one.scale, rel=1e-12)
        assert many[i].small_score == one.small_score
    square = np.random.default_rng(0).weibull(1.5, (7, 20)) * 4 + 10
    batch = fit_high_many(torch.tensor(square), method=method)
    x = np.random.default_rng(1).uniform(8, 25, (5, 7))
    per_column = np.stack([fit_high(square[c], method=method).w_score(x[:, c]) for c in range(7)], 1)
    np.testing.assert_allclose(batch.w_score(x), per_column, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(batch.w_score(torch.tensor(x)).numpy(), per_column, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "empty"),
        ([1.0, float("nan"), 2.0], "NaN or infinite"),
        ([1.0, float("inf")], "NaN or infinite"),
        ([[1.0, 2.0], [3.0, 4.0]], "1-D"),
        ([3.0, 3.0, 3.0], "2 distinct values"),
        ([3.0], "2 distinct values"),
    ],
)
def test_fit_high_rejects_bad_tails(bad, message):
    with pytest.raises(ValueError, match=message):
        fit_high(bad)


def test_fit_high_many_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        fit_high_many([])
    with pytest.raises(ValueError, match=r"\(C, T\)"):
        fit_high_many(np.zeros(4))
    with pytest.raises(ValueError, match=r"tail\(s\) \[1\]"):
        fit_high_many([[1.0, 2.0], [5.0, 5.0]])
    with pytest.raises(ValueError, match="method"):
        fit_high([1.0, 2.0], method="matlab")
