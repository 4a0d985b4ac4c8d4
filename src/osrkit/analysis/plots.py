"""Plots for analyses: known vs unknown distributions of a per-sample quantity."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _save_atomically(fig, path: Path) -> Path:
    """Save a figure as PNG with the project's atomic writer, so a crash never leaves half a file."""
    import matplotlib.pyplot as plt

    from osrkit.engine.checkpoint import atomic_write_bytes

    fig.tight_layout()
    try:
        atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", dpi=120))
    finally:
        plt.close(fig)
    return path


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
    return _save_atomically(fig, path)


def plot_dynamics(records: list[dict], path: str | Path, title: str) -> Path:
    """Mean known and unknown Jacobian norm (with interquartile bands) per epoch, and the norm's AUROC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ep = [r["epoch"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 4))
    for side, colour in (("known", "C0"), ("unknown", "C1")):
        ax.plot(ep, [r[f"{side}_mean"] for r in records], "o-", color=colour, label=f"{side} (mean)")
        ax.fill_between(ep, [r[f"{side}_q25"] for r in records], [r[f"{side}_q75"] for r in records],
                        color=colour, alpha=0.2)
    ax.set_xlabel("epoch (0 = initialisation)")
    ax.set_ylabel("||∂f/∂x||_F")
    ax2 = ax.twinx()
    ax2.plot(ep, [r["auroc_of_norm"] for r in records], "s--", color="C2", label="AUROC of norm")
    ax2.set_ylabel("AUROC of the norm", color="C2")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="best")
    ax.set_title(title)
    return _save_atomically(fig, path)
