"""Apply a trained open-set classifier to new images: a known class, or "unknown" above the threshold."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from osrkit.deploy.images import InputError, expand_inputs, read_file
from osrkit.engine.calibration import check_tpr, threshold_at_tpr
from osrkit.engine.config import TrainConfig
from osrkit.engine.pipeline import Trained, load_trained
from osrkit.engine.predict import predict

UNKNOWN = "unknown"
COLUMNS = ("input", "label", "nearest_class", "unknown_score", "threshold")


@dataclass
class PredictionReport:
    """One row per image that could be read, and one message per input that could not."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        n_unknown = sum(r["label"] == UNKNOWN for r in self.rows)
        return (f"{len(self.rows)} images predicted ({len(self.rows) - n_unknown} known, {n_unknown} unknown); "
                f"{len(self.skipped)} inputs skipped")


def resolve_threshold(meta: dict[str, Any], threshold: float | None = None, tpr: float | None = None) -> float:
    """The threshold to reject at: given, or keeping `tpr` of the stored validation scores, or the stored one."""
    if threshold is not None and tpr is not None:
        raise ValueError("give --threshold or --tpr, not both")
    if threshold is not None:
        t = float(threshold)
        if not np.isfinite(t):
            raise ValueError(f"--threshold must be a finite number, got {threshold}")
        return t
    if tpr is not None:
        scores = meta.get("val_known_scores")
        if scores is None:
            raise ValueError("this checkpoint stores no validation scores to set --tpr on: run "
                             "`osrkit calibrate CHECKPOINT --tpr Q` (it needs the task's data)")
        return threshold_at_tpr(scores, check_tpr(tpr))
    op = meta.get("operating_point")
    if not op:
        raise ValueError("this checkpoint has no calibrated threshold (trained before operating points, or without "
                         "validation data): run `osrkit calibrate CHECKPOINT`, or pass --threshold VALUE")
    return float(op["threshold"])


class OpenSetPredictor:
    """A trained model + scorer + threshold, applied to uint8 images at the model's channels and size."""

    def __init__(self, trained: Trained, threshold: float | None = None, tpr: float | None = None,
                 device: str = "cpu", batch_size: int = 256) -> None:
        self.trained, self.device, self.batch_size = trained, device, int(batch_size)
        self.threshold = resolve_threshold(trained.meta, threshold, tpr)
        meta = trained.meta
        self.class_names: list[str] = list(meta["class_names"])
        self.channels, self.size = int(meta["in_channels"]), int(meta["image_size"])
        self.mean, self.std = meta["normalization"]["mean"], meta["normalization"]["std"]
        self.cfg = TrainConfig.from_dict(meta["osrkit_config"]).resolved(device)
        trained.model.to(device).eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> "OpenSetPredictor":
        return cls(load_trained(path), **kwargs)

    def score(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(unknown scores, nearest known class index) for uint8 (N, C, H, W) images at the model's size."""
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (self.channels, self.size, self.size):
            raise InputError(f"images must be uint8 (N, {self.channels}, {self.size}, {self.size}), got "
                             f"{images.dtype} {tuple(images.shape)}: convert them with osrkit.deploy.images.to_model_input")
        out = predict(self.trained.model, images, self.mean, self.std, batch_size=self.batch_size, device=self.device,
                      precision=self.cfg.precision, memory_format=self.cfg.memory_format)
        scores, preds = self.trained.scorer.score(out)
        return scores.double().cpu(), preds.cpu()

    def predict_indices(self, images: torch.Tensor) -> torch.Tensor:
        """Class index per image, or -1 where the unknown score is above the threshold."""
        scores, preds = self.score(images)
        return torch.where(scores > self.threshold, torch.full_like(preds, -1), preds)

    def rows(self, names: Sequence[str], images: torch.Tensor) -> list[dict[str, Any]]:
        scores, preds = self.score(images)
        return [{"input": n, "label": UNKNOWN if s > self.threshold else self.class_names[p],
                 "nearest_class": self.class_names[p], "unknown_score": float(s), "threshold": self.threshold}
                for n, s, p in zip(names, scores.tolist(), preds.tolist())]

    def predict_paths(self, inputs: Sequence[str | Path], progress: bool = True,
                      warn: Callable[[str], None] | None = None) -> PredictionReport:
        """Rows for every image in files, folders and .npy arrays; unusable inputs are reported and skipped.

        `warn` gets one message per skipped input, from the first image read on (earlier messages are held
        until then: when nothing can be read, the caller reports one error instead of warnings)."""
        files, skipped = expand_inputs(inputs)
        report = PredictionReport(skipped=list(skipped))
        pending = list(skipped)

        def note(msg: str) -> None:
            pending.append(msg)
            if report.rows or batch:
                flush_warnings()

        def flush_warnings() -> None:
            while pending and warn is not None:
                warn(pending.pop(0))

        names: list[str] = []
        batch: list[torch.Tensor] = []
        with _progress(progress, len(files)) as advance:
            for path in files:
                try:
                    for name, x in read_file(path, self.channels, self.size):
                        names.append(name)
                        batch.append(x)
                except InputError as e:
                    report.skipped.append(str(e))
                    note(str(e))
                if batch:
                    flush_warnings()
                if len(batch) >= self.batch_size:
                    report.rows.extend(self.rows(names, torch.stack(batch)))
                    names, batch = [], []
                advance()
            if batch:
                report.rows.extend(self.rows(names, torch.stack(batch)))
        return report


class _progress:
    """A rich progress bar over files (shown only when asked and the input is long)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled and total >= 200
        self.total = total

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            transient=True, console=Console(stderr=True))
        self.bar.start()
        task = self.bar.add_task("predict", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()
