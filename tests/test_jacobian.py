"""jacobian_norm: exact values against closed forms and torch.autograd.functional.jacobian; the estimator's calibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from osrkit.analysis import JacobianNorms, jacobian_norm
from osrkit.analysis.jacobian import EXACT_IMPLS


def _reference(fn, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Frobenius norms from the full per-sample Jacobian (independent of the code under test)."""
    out = []
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda xi: fn(xi.unsqueeze(0))[0], x[i])
        out.append(jac.pow(2).sum().sqrt())
    return torch.stack(out)


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 5)).double().eval()


def _cnn() -> nn.Module:
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.LeakyReLU(0.2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.Dropout2d(0.5),
        nn.Softplus(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ).double()
    # non-trivial running statistics, then eval mode: samples independent, dropout off
    net.train()
    with torch.no_grad():
        net(torch.randn(32, 2, 6, 6, dtype=torch.float64))
    return net.eval()


@pytest.mark.parametrize("impl", EXACT_IMPLS)
def test_exact_linear_map_is_frobenius_of_weight(impl: str) -> None:
    torch.manual_seed(0)
    w = torch.randn(7, 12, dtype=torch.float64)
    b = torch.randn(7, dtype=torch.float64)
    x = torch.randn(5, 3, 4, dtype=torch.float64)  # flattened to 12 features inside fn
    res = jacobian_norm(lambda z: z.flatten(1) @ w.T + b, x, exact_impl=impl)
    assert isinstance(res, JacobianNorms)
    assert res.method == "exact" and res.stderr is None and res.probes is None
    assert res.norms.shape == (5,)
    expected = float(torch.linalg.matrix_norm(w))  # Frobenius
    torch.testing.assert_close(res.norms, torch.full((5,), expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", EXACT_IMPLS)
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_exact_matches_autograd_jacobian_mlp(impl: str, chunk_size: int | None) -> None:
    net = _mlp()
    torch.manual_seed(3)
    x = torch.randn(5, 6, dtype=torch.float64)
    got = jacobian_norm(net, x, exact_impl=impl, chunk_size=chunk_size).norms
    torch.testing.assert_close(got, _reference(net, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", EXACT_IMPLS)
def test_exact_matches_autograd_jacobian_cnn(impl: str) -> None:
    net = _cnn()
    torch.manual_seed(4)
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    got = jacobian_norm(net, x, exact_impl=impl).norms
    ref = _reference(net, x)
    assert bool((ref > 0).all())
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_exact_float32_and_no_grad_context() -> None:
    net = _cnn().float()
    x = torch.randn(3, 2, 6, 6)
    with torch.no_grad():
        got = jacobian_norm(net, x).norms
    torch.testing.assert_close(got, _reference(net, x), rtol=1e-5, atol=1e-5)
    assert all(p.grad is None for p in net.parameters())


def test_exact_output_not_depending_on_x_is_zero() -> None:
    x = torch.randn(3, 4)
    for impl in EXACT_IMPLS:
        res = jacobian_norm(lambda z: torch.ones(z.shape[0], 2), x, exact_impl=impl)
        assert torch.equal(res.norms, torch.zeros(3))


@pytest.mark.parametrize("estimator", ["jvp", "vjp"])
def test_estimate_within_three_standard_errors(estimator: str) -> None:
    net = _cnn()
    torch.manual_seed(5)
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    exact = jacobian_norm(net, x).norms
    gen = torch.Generator().manual_seed(6)
    est = jacobian_norm(net, x, method="estimate", probes=300, generator=gen, estimator=estimator)
    assert est.method == "estimate" and est.probes == 300
    assert est.norms.shape == (3,) and est.stderr is not None and est.stderr.shape == (3,)
    assert bool((est.stderr > 0).all())
    assert bool(((est.norms - exact).abs() <= 3 * est.stderr).all()), (est.norms, exact, est.stderr)
    # stderr shrinks like 1/sqrt(k): with 300 probes it is a few percent of the norm
    assert bool((est.stderr / exact < 0.05).all())
    few = jacobian_norm(net, x, method="estimate", probes=12, generator=gen, estimator=estimator)
    assert bool((few.stderr > est.stderr).all())


@pytest.mark.parametrize("estimator", ["jvp", "vjp"])
def test_estimate_linear_map_and_reproducible(estimator: str) -> None:
    torch.manual_seed(0)
    w = torch.randn(4, 9, dtype=torch.float64)
    x = torch.randn(6, 9, dtype=torch.float64)
    fn = lambda z: z @ w.T  # noqa: E731
    a = jacobian_norm(fn, x, method="estimate", probes=1000, generator=torch.Generator().manual_seed(1), estimator=estimator)
    b = jacobian_norm(fn, x, method="estimate", probes=1000, generator=torch.Generator().manual_seed(1), estimator=estimator)
    torch.testing.assert_close(a.norms, b.norms, rtol=0, atol=0)
    wf = float(torch.linalg.matrix_norm(w))
    assert bool(((a.norms - wf).abs() <= 4 * a.stderr).all())
    # chunking does not change the estimate's distribution; with one probe stderr is NaN
    one = jacobian_norm(fn, x, method="estimate", probes=1, chunk_size=4, estimator=estimator)
    assert one.norms.shape == (6,) and bool(torch.isnan(one.stderr).all())


def test_input_validation() -> None:
    fn = lambda z: z * 2  # noqa: E731
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="torch.Tensor"):
        jacobian_norm(fn, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="batch dim"):
        jacobian_norm(fn, torch.randn(4))
    with pytest.raises(ValueError, match="empty"):
        jacobian_norm(fn, torch.randn(0, 4))
    with pytest.raises(ValueError, match="floating"):
        jacobian_norm(fn, torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="method"):
        jacobian_norm(fn, x, method="fast")
    with pytest.raises(ValueError, match="probes"):
        jacobian_norm(fn, x, method="estimate", probes=0)
    with pytest.raises(ValueError, match="probes"):
        jacobian_norm(fn, x, method="estimate", probes=2.5)
    with pytest.raises(ValueError, match="chunk_size"):
        jacobian_norm(fn, x, chunk_size=0)
    with pytest.raises(ValueError, match="exact_impl"):
        jacobian_norm(fn, x, exact_impl="magic")
    with pytest.raises(ValueError, match="estimator"):
        jacobian_norm(fn, x, method="estimate", estimator="magic")
    with pytest.raises(ValueError, match="lambda"):
        jacobian_norm(lambda z: (z, z), x)
    with pytest.raises(ValueError, match="rows"):
        jacobian_norm(lambda z: z[:1], x, exact_impl="backward")


def test_hutchpp_is_exact_when_the_sketch_spans_the_jacobian() -> None:
    """A linear map of rank 2 (closed form ||W||_F): two sketch directions capture its whole range, so Hutch++
    returns ||W||_F exactly (the residual probes see zero), with zero standard error."""
    torch.manual_seed(3)
    w = torch.randn(10, 2, dtype=torch.float64) @ torch.randn(2, 9, dtype=torch.float64)  # rank 2, d_z = 10
    x = torch.randn(5, 9, dtype=torch.float64)
    est = jacobian_norm(lambda z: z @ w.T, x, method="estimate", estimator="hutchpp", probes=8,
                        generator=torch.Generator().manual_seed(0))  # m = 2 sketch directions, r = 2 residual probes
    torch.testing.assert_close(est.norms, torch.full((5,), float(torch.linalg.matrix_norm(w)), dtype=torch.float64))
    assert bool((est.stderr.abs() < 1e-10).all())
    # a full sketch (m >= d_z) is exact for any network
    net = _mlp()
    x2 = torch.randn(4, 6, dtype=torch.float64)
    full = jacobian_norm(net, x2, method="estimate", estimator="hutchpp", probes=21)  # m = 5 = d_z
    torch.testing.assert_close(full.norms, _reference(net, x2))


def test_hutchpp_beats_the_plain_estimator_on_a_concentrated_spectrum() -> None:
    """Trained networks put most of ||J||_F^2 in a few output directions; there, at the same number of passes,
    Hutch++ is far closer to the exact norm than the plain vjp estimate (fixed seeds: a deterministic check)."""
    torch.manual_seed(4)
    u, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(40, 40, dtype=torch.float64))
    sv = torch.tensor([10.0, 6.0, 4.0] + [0.3] * 29, dtype=torch.float64)  # 98% of ||W||_F^2 in 3 directions
    w = u @ torch.diag(sv) @ v[:32]
    x = torch.randn(64, 40, dtype=torch.float64)
    exact = float(sv.pow(2).sum().sqrt())
    err = {}
    for est in ("vjp", "hutchpp"):
        r = jacobian_norm(lambda z: z @ w.T, x, method="estimate", estimator=est, probes=12,
                          generator=torch.Generator().manual_seed(1))
        err[est] = float(((r.norms - exact).abs() / exact).mean())
    assert err["hutchpp"] < 0.02 and err["hutchpp"] < err["vjp"] / 5, err


def test_hutchpp_needs_four_probes() -> None:
    with pytest.raises(ValueError, match="hutchpp' needs probes >= 4"):
        jacobian_norm(lambda z: z * 2, torch.randn(2, 3), method="estimate", estimator="hutchpp", probes=3)


class _LinearEmbedding(nn.Module):
    """embedding = W x (flattened), logits = its first two coordinates: a model with a closed-form Jacobian."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor):
        from osrkit.models.output import ModelOutput

        f = x.flatten(1) @ self.w.T
        return ModelOutput(logits=f[:, :2], embedding=f)


def test_unit_normalised_embedding_jacobian_is_the_projected_weight_over_the_norm() -> None:
    """The `unit` reading (the Jacobian of f/||f||, what a cosine head sees) against its closed form:
    d(f/||f||)/dx = (I - u u^T) W / ||W x|| with u = W x / ||W x||; and unit=False gives ||W||_F."""
    from osrkit.analysis.study import representation_fn

    torch.manual_seed(3)
    w = torch.randn(5, 12, dtype=torch.float64)
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    model = _LinearEmbedding(w).eval()
    f = x.flatten(1) @ w.T
    expected = []
    for fi in f:
        u = fi / fi.norm()
        expected.append(torch.linalg.matrix_norm((torch.eye(5, dtype=torch.float64) - torch.outer(u, u)) @ w) / fi.norm())
    unit = jacobian_norm(representation_fn(model, "embedding", unit=True), x).norms
    torch.testing.assert_close(unit, torch.stack(expected), rtol=1e-10, atol=1e-12)
    raw = jacobian_norm(representation_fn(model, "embedding", unit=False), x).norms
    torch.testing.assert_close(raw, torch.full((4,), float(torch.linalg.matrix_norm(w)), dtype=torch.float64))
    # the unit reading is scale-free: doubling W leaves it unchanged, while the raw norm doubles
    model2 = _LinearEmbedding(2 * w).eval()
    torch.testing.assert_close(jacobian_norm(representation_fn(model2, "embedding", unit=True), x).norms, unit)
