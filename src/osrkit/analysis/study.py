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
from osrkit.analysis.plots import plot_dynamics, plot_known_vs_unknown
from osrkit.analysis.separation import class_separation
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
             label: str = "", estimator: str = "hutchpp") -> np.ndarray:
    """Per-sample Jacobian norms of uint8 images, in batches (model in eval mode). The estimate defaults to
    Hutch++, the accurate one on trained networks (see `osrkit.analysis.jacobian`)."""
    model.eval()
    fn = representation_fn(model, part, unit)
    starts = range(0, len(images), batch_size)
    out = []
    for i in track(starts, description=f"jacobian {label}", disable=not progress):
        x = normalize(images[i:i + batch_size].to(next(model.parameters()).device), mean, std)
        out.append(jacobian_norm(fn, x, method=method, probes=probes, estimator=estimator).norms.detach().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def features_of(model, images: torch.Tensor, mean, std, part: str = "embedding", unit: bool = False,
                batch_size: int = 256) -> np.ndarray:
    """The representation (the one whose Jacobian is measured) of uint8 images, in batches, as float64."""
    model.eval()
    fn = representation_fn(model, part, unit)
    device = next(model.parameters()).device
    return torch.cat([fn(normalize(images[i:i + batch_size].to(device), mean, std)).double().cpu()
                      for i in range(0, len(images), batch_size)]).numpy()


def summarize_norms(known: np.ndarray, unknown: np.ndarray) -> dict[str, Any]:
    """Means, medians, the paper's "Jacobian norm difference" and the AUROC of the norm as an unknown score."""
    return {"known_mean": float(known.mean()), "known_median": float(np.median(known)),
            "unknown_mean": float(unknown.mean()), "unknown_median": float(np.median(unknown)),
            "difference": float(unknown.mean() - known.mean()), "auroc_of_norm": M.auroc(known, unknown),
            "n_known": int(len(known)), "n_unknown": int(len(unknown))}


def jacobian_study(trained, task, out_dir: str | Path, n: int = 500, part: str = "embedding",
                   method: str = "exact", probes: int = 8, seed: int = 0, unit: bool = False,
                   progress: bool = True, estimator: str = "hutchpp") -> dict[str, Any]:
    """Norms for up to `n` known-test and `n` unknown-test samples; writes NPZ, JSON and PNG to out_dir."""
    out_dir = Path(out_dir)
    g = torch.Generator().manual_seed(seed)
    pick = lambda x: x[torch.randperm(len(x), generator=g)[:n]]  # noqa: E731
    known_idx = pick(torch.arange(len(task.test_x)))
    known_x = task.test_x[known_idx]
    known = norms_of(trained.model, known_x, task.mean, task.std, part, method, probes,
                     unit=unit, progress=progress, label="known", estimator=estimator)
    unknown = norms_of(trained.model, pick(task.unknown_x), task.mean, task.std, part, method, probes,
                       unit=unit, progress=progress, label="unknown", estimator=estimator)
    summary = {"method": trained.meta.get("method"), "task": trained.meta.get("task"), "representation": part,
               "unit_normalised": unit, "jacobian": method, "probes": probes if method == "estimate" else None,
               "estimator": estimator if method == "estimate" else None,
               **summarize_norms(known, unknown),
               **class_separation(features_of(trained.model, known_x, task.mean, task.std, part, unit),
                                  task.test_y[known_idx].numpy())}
    atomic_write_bytes(out_dir / "jacobian_norms.npz", lambda f: np.savez(f, known=known, unknown=unknown))
    atomic_write_text(out_dir / "jacobian_summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    plot_known_vs_unknown(known, unknown, out_dir / "jacobian_norms.png", f"||∂f/∂x||_F ({part})",
                          f"{summary['method']}: Jacobian norm, known vs unknown")
    return summary


def jacobian_dynamics(method: str, task, cfg, out_dir: str | Path, n: int = 200, part: str = "embedding",
                      jacobian: str = "exact", probes: int = 8, seed: int = 0, unit: bool = False,
                      resume: bool = False, device: str = "cpu", progress: bool = True,
                      estimator: str = "hutchpp") -> list[dict[str, Any]]:
    """Train `method` and measure known-test vs unknown-test Jacobian norms before training and after every epoch.

    The same `n` known and `n` unknown test images are used at every epoch. Writes (atomically, after each
    epoch) dynamics.json, dynamics.csv and dynamics.png to out_dir; the model checkpoint is out_dir/model.pt,
    and `resume=True` continues an interrupted run with the records already written.
    """
    from osrkit.engine.pipeline import fit_method

    out_dir = Path(out_dir)
    g = torch.Generator().manual_seed(seed)
    known_x = task.test_x[torch.randperm(len(task.test_x), generator=g)[:n]]
    unknown_x = task.unknown_x[torch.randperm(len(task.unknown_x), generator=g)[:n]]
    json_path = out_dir / "dynamics.json"
    records: list[dict[str, Any]] = []
    if resume and json_path.exists() and (out_dir / "model.pt").exists():
        records = json.loads(json_path.read_text())["epochs"]

    def measure(epoch: int, rec: dict | None, model: torch.nn.Module) -> None:
        was_training = model.training
        kn = norms_of(model, known_x, task.mean, task.std, part, jacobian, probes, unit=unit, progress=False,
                      estimator=estimator)
        un = norms_of(model, unknown_x, task.mean, task.std, part, jacobian, probes, unit=unit, progress=False,
                      estimator=estimator)
        model.train(was_training)
        row = {"epoch": epoch + 1, **summarize_norms(kn, un),
               "known_q25": float(np.quantile(kn, 0.25)), "known_q75": float(np.quantile(kn, 0.75)),
               "unknown_q25": float(np.quantile(un, 0.25)), "unknown_q75": float(np.quantile(un, 0.75)),
               "val_accuracy": None if rec is None else rec["val_accuracy"],
               "train_loss": None if rec is None else rec["train_loss"]}
        records[:] = [r for r in records if r["epoch"] != row["epoch"]] + [row]
        records.sort(key=lambda r: r["epoch"])
        _write_dynamics(out_dir, method, part, records)

    if records:  # an interruption between a checkpoint and its measurement: measure the checkpointed network
        _measure_checkpoint(out_dir / "model.pt", records, measure, task, cfg, device)
    fit_method(method, task, cfg, checkpoint=out_dir / "model.pt", resume=resume, device=device, progress=progress,
               on_model_epoch=measure)
    return records


def _measure_checkpoint(path: Path, records: list[dict[str, Any]], measure, task, cfg, device: str) -> None:
    """Fill in the record of the checkpoint's last finished epoch if the run stopped before measuring it."""
    from osrkit.engine.checkpoint import load_checkpoint, load_model_weights
    from osrkit.engine.pipeline import build_model

    state = load_checkpoint(path)
    ts = state.get("train_state") or {}
    done = ts.get("epoch")
    if done is None or any(r["epoch"] == done + 1 for r in records):
        return
    model = build_model(cfg, task.num_classes, task.in_channels, task.image_size).to(device)
    load_model_weights(model, state["model"], str(path))
    hist = ts.get("history") or []
    measure(done, hist[-1] if hist else None, model)


def _write_dynamics(out_dir: Path, method: str, part: str, records: list[dict[str, Any]]) -> None:
    cols = list(records[0])
    csv = ",".join(cols) + "\n" + "".join(",".join("" if r[c] is None else f"{r[c]}" for c in cols) + "\n" for r in records)
    atomic_write_text(out_dir / "dynamics.json", json.dumps({"method": method, "representation": part,
                                                             "epochs": records}, indent=2) + "\n")
    atomic_write_text(out_dir / "dynamics.csv", csv)
    plot_dynamics(records, out_dir / "dynamics.png", f"{method}: Jacobian norm ({part}) during training")
