"""Plots for analyses: known vs unknown distributions of a per-sample quantity."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_known_vs_unknown(known: np.ndarray, unknown: np.ndarray, path: str | Path, xlabel: str, title: str) -> Path:
    """Overlaid density histograms of known-test and unknown-test values, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lo, hi = float(min(known.min(), unknown.min())), float(max(known.max(), unknown.max()))
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 50)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(known, bins=bins, alpha=0.6, density=True, label=f"known (n={len(known)}, mean {known.mean():.3g})")
    ax.hist(unknown, bins=bins, alpha=0.6, density=True, label=f"unknown (n={len(unknown)}, mean {unknown.mean():.3g})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
