"""Jacobian-norm study of a trained checkpoint: known-test vs unknown-test norms, summary, plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import track

from osrkit import metrics as M
from osrkit.analysis.jacobian import jacobian_norm
from osrkit.analysis.plots import plot_known_vs_unknown
from osrkit.data.transforms import normalize
from osrkit.engine.checkpoint import atomic_write_bytes, atomic_write_text


def representation_fn(model: torch.nn.Module, part: str = "embedding", unit: bool = False):
    """x (normalised input) → the chosen representation: "embedding" (optionally f/||f||) or "logits"."""
    if part not in ("embedding", "logits"):
        raise ValueError(f"representation must be embedding or logits, got {part!r}")

    def fn(x: torch.Tensor) -> torch.Tensor:
        out = getattr(model(x), part)
        return torch.nn.functional.normalize(out, dim=1) if unit else out

    return fn


def norms_of(model, images: torch.Tensor, mean, std, part: str = "embedding", method: str = "exact",
             probes: int = 8, batch_size: int = 64, unit: bool = False, progress: bool = True,
             label: str = "") -> np.ndarray:
    """Per-sample Jacobian norms of uint8 images, in batches (model in eval mode)."""
    model.eval()
    fn = representation_fn(model, part, unit)
    starts = range(0, len(images), batch_size)
    out = []
    for i in track(starts, description=f"jacobian {label}", disable=not progress):
        x = normalize(images[i:i + batch_size], mean, std)
        out.append(jacobian_norm(fn, x, method=method, probes=probes).norms.detach().cpu())
    return torch.cat(out).numpy()


def summarize_norms(known: np.ndarray, unknown: np.ndarray) -> dict[str, Any]:
    """Means, medians, the paper's "Jacobian norm difference" and the AUROC of the norm as an unknown score."""
    return {"known_mean": float(known.mean()), "known_median": float(np.median(known)),
            "unknown_mean": float(unknown.mean()), "unknown_median": float(np.median(unknown)),
            "difference": float(unknown.mean() - known.mean()), "auroc_of_norm": M.auroc(known, unknown),
            "n_known": int(len(known)), "n_unknown": int(len(unknown))}


def jacobian_study(trained, task, out_dir: str | Path, n: int = 500, part: str = "embedding",
                   method: str = "exact", probes: int = 8, seed: int = 0, unit: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """Norms for up to `n` known-test and `n` unknown-test samples; writes NPZ, JSON and PNG to out_dir."""
    out_dir = Path(out_dir)
    g = torch.Generator().manual_seed(seed)
    pick = lambda x: x[torch.randperm(len(x), generator=g)[:n]]  # noqa: E731
    known = norms_of(trained.model, pick(task.test_x), task.mean, task.std, part, method, probes,
                     unit=unit, progress=progress, label="known")
    unknown = norms_of(trained.model, pick(task.unknown_x), task.mean, task.std, part, method, probes,
                       unit=unit, progress=progress, label="unknown")
    summary = {"method": trained.meta.get("method"), "task": trained.meta.get("task"), "representation": part,
               "unit_normalised": unit, "jacobian": method, "probes": probes if method == "estimate" else None,
               **summarize_norms(known, unknown)}
    atomic_write_bytes(out_dir / "jacobian_norms.npz", lambda f: np.savez(f, known=known, unknown=unknown))
    atomic_write_text(out_dir / "jacobian_summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    plot_known_vs_unknown(known, unknown, out_dir / "jacobian_norms.png", f"||∂f/∂x||_F ({part})",
                          f"{summary['method']}: Jacobian norm, known vs unknown")
    return summary
