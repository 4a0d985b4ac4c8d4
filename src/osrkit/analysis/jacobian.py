"""Per-sample Frobenius norm of a representation's input Jacobian, ||df(x_i)/dx_i||_F.

Used by m-OvR (Park et al. 2024) to explain open-set behaviour: known samples should have low
Jacobian norms and unknowns higher ones. Two ways to get it:

* ``method="exact"``: the full Jacobian, batched over samples. Samples are independent, so the
  gradient of sum_i f_a(x_i) w.r.t. the batch holds row a of every sample's Jacobian at once.
  ``exact_impl`` picks how the d_z rows are produced:
  ``"backward"`` (default; one forward pass, then d_z ordinary backward passes, one per output
  dimension), ``"batched_grad"`` (one forward pass, then one vmapped backward pass with all d_z
  unit cotangents, ``autograd.grad(..., is_grads_batched=True)``) or ``"vmap"``
  (``torch.func.vmap(jacrev(f))`` over samples). ``benchmarks/jacobian_speed.py`` compares them
  (and the estimator) on vgg32: on CPU "backward" was the fastest (all three do the same
  arithmetic, d_z input-gradient passes per sample; the vmapped ones pay for huge batches).
* ``method="estimate"``: an unbiased random-projection estimate with k probes,
  ||J||_F^2 = d_z E_u ||u^T J||^2 for u uniform on the unit sphere of R^{d_z}
  (reverse mode, vector-Jacobian products; ``estimator="vjp"``, the default: on vgg32 it was
  faster than jvp and, the sphere having lower variance than a Gaussian, slightly more accurate)
  or ||J||_F^2 = E_v ||J v||^2 for v ~ N(0, I_d) (forward mode, ``torch.func.jvp``; ``estimator="jvp"``). The norm estimate is
  sqrt(mean of the k squared-norm samples) (the squared norm is unbiased, its root slightly biased
  low by Jensen); its standard error comes from the sample variance by the delta method.
  Both share one primal forward pass among the k probes (jvp: vmap over the tangents; vjp: k
  backward passes through one graph).
  ``estimator="hutchpp"`` (Hutch++, Meyer et al. 2021) spends the k passes differently: m = k // 4
  random cotangents s give the sketch J J^T s (a vjp then a jvp each), Q = orth(sketch) holds the
  Jacobian's dominant output directions, ||Q^T J||_F^2 is computed exactly (m vjps) and only the rest,
  ||(I - Q Q^T) J||_F^2, is estimated with r = k - 3m Gaussian probes. Trained networks concentrate
  ||J||_F^2 in a few directions (MNIST vgg32-lite: the top 4 of 64 hold 86-96%), where the plain
  estimator's error is large (k = 8: 9-14%) and Hutch++ removes most of it at the same number of passes.

``fn`` must treat samples independently: put the model in eval mode first (BatchNorm in train mode
mixes the samples of a batch, and Dropout makes f random). This module never changes the mode.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

__all__ = ["JacobianNorms", "jacobian_norm", "EXACT_IMPLS", "ESTIMATORS"]

EXACT_IMPLS = ("backward", "batched_grad", "vmap")
ESTIMATORS = ("vjp", "jvp", "hutchpp")
_METHODS = ("exact", "estimate")

# Default chunking (chunk_size=None). Graph-holding passes (exact "backward", vjp estimate) keep
# the activations of _GRAPH_SAMPLES samples; vmapped passes (exact "batched_grad"/"vmap": samples
# x d_z cotangents; jvp estimate: samples x probes tangents) hold _VMAP_ROWS copies of each
# activation. Throughput is flat beyond a few samples per pass on CPU, so these cost nothing.
_GRAPH_SAMPLES = 256
_VMAP_ROWS = 2048


class JacobianNorms(NamedTuple):
    """Per-sample Jacobian Frobenius norms.

    norms: (N,) the norms (exact, or the estimate sqrt(mean_j ||J v_j||^2));
    stderr: (N,) standard errors of the estimated norms (delta method; NaN when probes == 1),
    None for the exact method; method: "exact" or "estimate"; probes: k for the estimate, None for exact.
    """

    norms: torch.Tensor
    stderr: torch.Tensor | None
    method: str
    probes: int | None


def _as_2d(out: object, n: int) -> torch.Tensor:
    """Check fn's output is a tensor with n rows and flatten it to (n, d_z)."""
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"fn must return a tensor (N, d_z), got {type(out).__name__}; if it returns a tuple or "
            "NamedTuple pass a lambda picking the representation, e.g. lambda x: model(x).embedding"
        )
    if out.dim() < 1 or out.shape[0] != n:
        raise ValueError(f"fn must return a tensor with the batch dim first ({n} rows), got shape {tuple(out.shape)}")
    return out.reshape(n, -1)


def _chunks(x: torch.Tensor, size: int | None) -> list[torch.Tensor]:
    if size is None or size >= x.shape[0]:
        return [x]
    return list(torch.split(x, size))


def _exact_backward(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """Squared norms by one backward pass per output dimension over the whole chunk."""
    n = x.shape[0]
    xr = x.detach().requires_grad_(True)
    out = _as_2d(fn(xr), n)
    d_z = out.shape[1]
    sq = torch.zeros(n, dtype=x.dtype, device=x.device)
    for a in range(d_z):
        if not out.requires_grad:
            break  # f does not depend on x: zero Jacobian
        (g,) = torch.autograd.grad(out[:, a].sum(), xr, retain_graph=a < d_z - 1, allow_unused=True)
        if g is not None:
            sq += g.reshape(n, -1).pow(2).sum(1)
    return sq


def _exact_batched_grad(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """Squared norms by one forward pass and one vmapped backward pass over all d_z unit cotangents."""
    n = x.shape[0]
    xr = x.detach().requires_grad_(True)
    out = _as_2d(fn(xr), n)
    d_z = out.shape[1]
    if not out.requires_grad:
        return torch.zeros(n, dtype=x.dtype, device=x.device)
    # cotangent a: ones at output column a for every sample -> batched grad row a = J_i[a, :]
    eye = torch.eye(d_z, dtype=out.dtype, device=out.device).unsqueeze(1).expand(d_z, n, d_z)
    (g,) = torch.autograd.grad(out, xr, grad_outputs=eye, is_grads_batched=True, allow_unused=True)
    if g is None:
        return torch.zeros(n, dtype=x.dtype, device=x.device)
    return g.reshape(d_z, n, -1).pow(2).sum(dim=(0, 2))


def _exact_vmap(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """Squared norms by torch.func.vmap(jacrev(f)) over samples."""
    from torch.func import jacrev, vmap

    def single(xi: torch.Tensor) -> torch.Tensor:
        return _as_2d(fn(xi.unsqueeze(0)), 1)[0]

    jac = vmap(jacrev(single))(x.detach())  # (n, d_z, *x.shape[1:])
    return jac.reshape(x.shape[0], -1).pow(2).sum(1)


def _probe_samples(
    fn: Callable, x: torch.Tensor, probes: int, generator: torch.Generator | None, estimator: str
) -> torch.Tensor:
    """(probes, n) unbiased samples of ||J_i||_F^2; the primal forward pass is shared by all probes."""
    n = x.shape[0]
    if estimator == "jvp":
        from torch.func import jvp, vmap

        v = torch.randn((probes, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
        x0 = x.detach()

        def one(t: torch.Tensor) -> torch.Tensor:
            return jvp(lambda inp: _as_2d(fn(inp), n), (x0,), (t,))[1]

        # vmap over the tangents: the primal is computed once, the k tangents as one batch
        jv = vmap(one)(v)  # (k, n, d_z)
        return jv.reshape(probes, n, -1).pow(2).sum(2)
    # vjp: one forward pass, then one backward pass per probe with u uniform on the unit sphere of
    # R^{d_z}; d_z * ||u^T J||^2 is unbiased for ||J||_F^2
    xr = x.detach().requires_grad_(True)
    out = _as_2d(fn(xr), n)
    d_z = out.shape[1]
    samples = torch.zeros(probes, n, dtype=x.dtype, device=x.device)
    for j in range(probes):
        u = torch.randn(out.shape, generator=generator, dtype=out.dtype, device=out.device)
        u = u / u.norm(dim=1, keepdim=True).clamp_min(torch.finfo(u.dtype).tiny)
        if not out.requires_grad:
            continue  # f does not depend on x
        (g,) = torch.autograd.grad(out, xr, grad_outputs=u, retain_graph=j < probes - 1, allow_unused=True)
        if g is not None:
            samples[j] = d_z * g.reshape(n, -1).pow(2).sum(1)
    return samples


def _hutchpp_samples(fn: Callable, x: torch.Tensor, probes: int,
                     generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(exact part (n,), residual samples (r, n)) of Hutch++ with m = probes // 4 sketch directions."""
    from torch.func import jvp

    n = x.shape[0]
    m = probes // 4
    r = probes - 3 * m
    xr = x.detach().requires_grad_(True)
    out = _as_2d(fn(xr), n)
    d_z = out.shape[1]
    exact = torch.zeros(n, dtype=x.dtype, device=x.device)
    residual = torch.zeros(r, n, dtype=x.dtype, device=x.device)
    if not out.requires_grad:
        return exact, residual  # f does not depend on x
    m = min(m, d_z)

    def vjp_of(u: torch.Tensor, keep: bool = True) -> torch.Tensor:
        (g,) = torch.autograd.grad(out, xr, grad_outputs=u, retain_graph=keep, allow_unused=True)
        return torch.zeros_like(x) if g is None else g

    q = None
    if m > 0:
        sketch = []
        for _ in range(m):  # J J^T s for m random cotangents s, per sample
            s = torch.randn(out.shape, generator=generator, dtype=out.dtype, device=out.device)
            g = vjp_of(s)
            sketch.append(jvp(lambda inp: _as_2d(fn(inp), n), (x.detach(),), (g.detach(),))[1])
        q = torch.linalg.qr(torch.stack(sketch, 2)).Q  # (n, d_z, m): the dominant output directions
        for j in range(m):
            exact += vjp_of(q[:, :, j]).reshape(n, -1).pow(2).sum(1)
    for j in range(r):  # E ||(I - QQ^T) u)^T J||^2 over u ~ N(0, I) = ||(I - QQ^T) J||_F^2
        u = torch.randn(out.shape, generator=generator, dtype=out.dtype, device=out.device)
        if q is not None:
            u = u - torch.einsum("nkm,nm->nk", q, torch.einsum("nkm,nk->nm", q, u))
        residual[j] = vjp_of(u, keep=j < r - 1).reshape(n, -1).pow(2).sum(1)
    return exact, residual


def jacobian_norm(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    method: str = "exact",
    probes: int = 8,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    exact_impl: str = "backward",
    estimator: str = "vjp",
) -> JacobianNorms:
    """Per-sample Frobenius norms ||df(x_i)/dx_i||_F of a batch x (N, ...).

    fn maps a batch (N, ...) to a representation (N, d_z) (extra trailing dims are flattened); it
    must process samples independently (eval mode: see the module docstring). If the model returns
    a tuple/NamedTuple, pass e.g. ``lambda x: model(x).embedding``.
    method: "exact" or "estimate" (k = ``probes`` random projections or, for "hutchpp", k passes, at
    least 4; see ``estimator``).
    generator: torch.Generator for the probes (reproducibility). chunk_size: at most this many
    samples per pass (bounds memory; the jvp estimate carries chunk_size * probes tangents at once);
    None = automatic: 256 samples for exact "backward" and the vjp estimate, 2048 // d_z for exact
    "batched_grad"/"vmap", 2048 // probes for the jvp estimate.
    Gradients are enabled internally, so this works under ``torch.no_grad()``; no .grad is touched.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"x must have a batch dim and at least one feature dim (N, ...), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch")
    if not torch.is_floating_point(x):
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if exact_impl not in EXACT_IMPLS:
        raise ValueError(f"exact_impl must be one of {EXACT_IMPLS}, got {exact_impl!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes must be an int >= 1, got {probes!r}")
    if method == "estimate" and estimator == "hutchpp" and probes < 4:
        raise ValueError(f"estimator 'hutchpp' needs probes >= 4 (one sketch direction costs 3 passes, plus one "
                         f"residual probe), got {probes}; use estimator 'vjp' below that")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
    if not callable(fn):
        raise ValueError("fn must be callable")

    with torch.enable_grad():
        if method == "exact":
            size = chunk_size
            if size is None:
                if exact_impl == "backward":
                    size = _GRAPH_SAMPLES
                else:
                    with torch.no_grad():
                        d_z = _as_2d(fn(x[:1]), 1).shape[1]
                    size = max(1, _VMAP_ROWS // max(d_z, 1))
            impl = {"backward": _exact_backward, "batched_grad": _exact_batched_grad, "vmap": _exact_vmap}[exact_impl]
            sq = torch.cat([impl(fn, c) for c in _chunks(x, size)])
            return JacobianNorms(sq.clamp_min(0).sqrt().detach(), None, "exact", None)

        size = chunk_size
        if size is None:
            size = _GRAPH_SAMPLES if estimator in ("vjp", "hutchpp") else max(1, _VMAP_ROWS // probes)
        if estimator == "hutchpp":
            parts = [_hutchpp_samples(fn, c, probes, generator) for c in _chunks(x, size)]
            exact = torch.cat([p[0] for p in parts]).detach()
            res = torch.cat([p[1] for p in parts], dim=1).detach()  # (r, N)
            norms = (exact + res.mean(0)).clamp_min(0).sqrt()
            if res.shape[0] > 1:
                se_sq = res.std(0, unbiased=True) / math.sqrt(res.shape[0])
                stderr = torch.where(norms > 0, se_sq / (2 * norms.clamp_min(torch.finfo(norms.dtype).tiny)),
                                     torch.zeros_like(norms))
            else:
                stderr = torch.full_like(norms, float("nan"))
            return JacobianNorms(norms, stderr, "estimate", probes)
        samples = torch.cat(
            [_probe_samples(fn, c, probes, generator, estimator) for c in _chunks(x, size)], dim=1
        ).detach()  # (k, N)
        mean = samples.mean(0)
        norms = mean.clamp_min(0).sqrt()
        if probes > 1:
            se_sq = samples.std(0, unbiased=True) / math.sqrt(probes)  # stderr of the squared norm
            # delta method: d sqrt(m) = dm / (2 sqrt(m)); 0/0 (zero Jacobian) -> 0
            stderr = torch.where(norms > 0, se_sq / (2 * norms.clamp_min(torch.finfo(norms.dtype).tiny)), torch.zeros_like(norms))
        else:
            stderr = torch.full_like(norms, float("nan"))
        return JacobianNorms(norms, stderr, "estimate", probes)
