"""`OpenSetClassifier`: an open-set classifier in scikit-learn's conventions (fit, predict, score_samples).

    clf = OpenSetClassifier(method="cac", model="small", epochs=10).fit(X, y)
    clf.predict(X_new)        # labels from y, or clf.unknown_label for rejected inputs
    clf.score_samples(X_new)  # the unknown score: higher = more likely unknown (osrkit's one convention)
    clf.save("model.pt")      # an ordinary osrkit checkpoint: `osrkit predict model.pt images/` reads it

X is a uint8 array (N, H, W) or (N, C, H, W), or a list of image paths; y holds labels of any hashable type.
A share `val_fraction` of X is held out to calibrate the threshold (keeping `tpr` of those knowns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np
import torch

from osrkit.data.tasks import OpenSetTask, _holdout, channel_stats
from osrkit.deploy.images import InputError, read_file, to_model_input
from osrkit.engine.calibration import DEFAULT_TPR
from osrkit.engine.checkpoint import save_checkpoint
from osrkit.engine.pipeline import Trained, fit_method, load_trained
from osrkit.methods import default_config, get_method


def _check_fitted(clf: "OpenSetClassifier") -> None:
    if getattr(clf, "trained_", None) is None:
        raise RuntimeError("this OpenSetClassifier is not fitted yet: call fit(X, y) or OpenSetClassifier.load(path)")


class OpenSetClassifier:
    """Train any osrkit method on arrays or image files, then predict known labels or `unknown_label`."""

    def __init__(self, method: str = "softmax", model: str | None = None, epochs: int | None = None,
                 image_size: int | None = None, channels: int | None = None, val_fraction: float = 0.2,
                 tpr: float = DEFAULT_TPR, unknown_label: Any = None, seed: int = 0, device: str = "cpu",
                 progress: bool = False, **params: Any) -> None:
        get_method(method)  # an unknown name fails here, naming the choices
        self.method, self.model, self.epochs = method, model, epochs
        self.image_size, self.channels, self.val_fraction, self.tpr = image_size, channels, val_fraction, tpr
        self.unknown_label, self.seed, self.device, self.progress = unknown_label, seed, device, progress
        self.params = params

    # ------------------------------------------------------------------ inputs

    def _images(self, X, channels: int, size: int) -> torch.Tensor:
        """X as uint8 (N, channels, size, size)."""
        if isinstance(X, (str, Path)):
            raise InputError("X must be an array of images or a list of image paths, not one path")
        if isinstance(X, (list, tuple)) and (len(X) == 0 or isinstance(X[0], (str, Path))):
            out = []
            for p in X:
                out.extend(x for _, x in read_file(Path(p), channels, size))
            if not out:
                raise InputError("X is an empty list of image paths")
            return torch.stack(out)
        a = np.asarray(X.numpy() if isinstance(X, torch.Tensor) else X)
        if a.dtype != np.uint8:
            raise InputError(f"X must hold uint8 pixels, got {a.dtype} (scale to 0..255 and cast to uint8)")
        if a.ndim == 3:
            a = a[:, None]
        if a.ndim != 4 or a.shape[1] not in (1, 3, 4):
            raise InputError(f"X must be (N, H, W) or (N, C, H, W) with C = 1, 3 or 4, got shape {a.shape}")
        if a.shape[1] == channels and a.shape[2] == a.shape[3] == size:
            return torch.from_numpy(np.ascontiguousarray(a))
        return torch.stack([to_model_input(np.moveaxis(im, 0, 2), channels, size) for im in a])

    def _input_shape(self, X) -> tuple[int, int]:
        if isinstance(X, (list, tuple)) and X and isinstance(X[0], (str, Path)):
            return self.channels or 3, self.image_size or 32
        a = np.asarray(X.numpy() if isinstance(X, torch.Tensor) else X)
        c = 1 if a.ndim == 3 else int(a.shape[1]) if a.ndim == 4 else 0
        c = 3 if c == 4 else c
        square = a.ndim >= 3 and a.shape[-1] == a.shape[-2]
        return self.channels or c or 1, self.image_size or (int(a.shape[-1]) if square else 32)

    # ------------------------------------------------------------------ fit

    def _config(self, size: int):
        base = "digits" if size < 32 else "folder"
        cfg = default_config(self.method, base)
        over = {"seed": self.seed, "method_params": self.params or None}
        if self.model is not None:
            over["model"] = self.model
        if self.epochs is not None:
            over["epochs"] = int(self.epochs)
        if get_method(self.method).model is not None:
            over.pop("model", None)
        return cfg.replace(**over)

    def fit(self, X, y: Sequence[Hashable]) -> "OpenSetClassifier":
        """Train on X, y (every label a known class); hold out `val_fraction` to set the threshold."""
        channels, size = self._input_shape(X)
        images = self._images(X, channels, size)
        y = list(y.tolist() if hasattr(y, "tolist") else y)
        if len(y) != len(images):
            raise InputError(f"X has {len(images)} images but y has {len(y)} labels")
        classes = list(dict.fromkeys(y))
        try:
            classes = sorted(classes)
        except TypeError:
            pass  # labels of mixed types keep their order of first appearance
        if len(classes) < 2:
            raise InputError(f"y must hold at least 2 classes, got {classes}")
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[v] for v in y], dtype=torch.int64)
        tr, va = _holdout(len(labels), self.val_fraction, self.seed)
        mean, std = channel_stats(images[tr])
        empty = images[:0]
        task = OpenSetTask(
            name="arrays", dataset="arrays", known_classes=list(range(len(classes))), unknown_classes=[],
            class_names=[str(c) for c in classes], train_x=images[tr], train_y=labels[tr], val_x=images[va],
            val_y=labels[va], test_x=empty, test_y=labels[:0], unknown_x=empty, mean=mean, std=std,
            spec={"dataset": "arrays", "known": list(range(len(classes))), "unknown": [], "image_size": size,
                  "val_fraction": self.val_fraction, "seed": self.seed, "family": None, "index": None})
        trained = fit_method(self.method, task, self._config(size), device=self.device, progress=self.progress,
                             tpr=self.tpr)
        trained.meta["class_labels"] = [c.item() if isinstance(c, np.generic) else c for c in classes]
        self._set_trained(trained)
        return self

    def _set_trained(self, trained: Trained) -> None:
        from osrkit.deploy.predictor import OpenSetPredictor

        self.trained_ = trained
        self.classes_ = np.array(trained.meta.get("class_labels", trained.meta["class_names"]), dtype=object)
        if all(isinstance(c, (int, np.integer)) for c in self.classes_):
            self.classes_ = self.classes_.astype(np.int64)
        self.unknown_label_ = (self.unknown_label if self.unknown_label is not None
                               else "unknown" if any(isinstance(c, str) for c in self.classes_) else -1)
        self.predictor_ = OpenSetPredictor(trained, device=self.device)
        self.threshold_ = self.predictor_.threshold

    # ------------------------------------------------------------------ predict

    def score_samples(self, X) -> np.ndarray:
        """The unknown score of each input (higher = more likely unknown; rejected above `threshold_`)."""
        _check_fitted(self)
        images = self._images(X, self.predictor_.channels, self.predictor_.size)
        return self.predictor_.score(images)[0].numpy()

    def predict(self, X) -> np.ndarray:
        """Labels from y, or `unknown_label_` where the unknown score is above the threshold."""
        _check_fitted(self)
        images = self._images(X, self.predictor_.channels, self.predictor_.size)
        idx = self.predictor_.predict_indices(images).numpy()
        out = np.empty(len(idx), dtype=object)
        for i, k in enumerate(idx):
            out[i] = self.unknown_label_ if k < 0 else self.classes_[k]
        if self.classes_.dtype != object and isinstance(self.unknown_label_, (int, np.integer)):
            return out.astype(np.int64)
        return out

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        """An ordinary osrkit checkpoint (atomic), which `osrkit predict` reads too."""
        _check_fitted(self)
        t = self.trained_
        save_checkpoint(path, {**t.meta, "model": t.model.state_dict(), "scorer": t.scorer.state_dict(),
                               "estimator": {"unknown_label": self.unknown_label}})

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "OpenSetClassifier":
        trained = load_trained(path)
        clf = cls(method=trained.meta["method"], device=device,
                  unknown_label=(trained.meta.get("estimator") or {}).get("unknown_label"))
        clf._set_trained(trained)
        return clf

    def __repr__(self) -> str:
        return f"OpenSetClassifier(method={self.method!r}, model={self.model!r}, epochs={self.epochs!r})"
