"""Inter-class separation of a representation, measured scale-free, to test the Jacobian-norm paper's finding 2.

Finding 2 says the known/unknown norm gap grows with inter-class separation. Rather than assume which loss
separates more, measure it on the same embedding whose Jacobian is taken.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import davies_bouldin_score, silhouette_score


def between_within_ratio(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean distance between class means over mean distance of a sample to its own class mean (scale-free)."""
    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"separation needs at least 2 classes, got {len(classes)}")
    means = np.stack([features[labels == c].mean(0) for c in classes])
    within = np.mean([np.linalg.norm(features[labels == c] - m, axis=1).mean() for c, m in zip(classes, means)])
    i, j = np.triu_indices(len(classes), k=1)
    between = np.linalg.norm(means[i] - means[j], axis=1).mean()
    return float(between / within)


def class_separation(features: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Between/within ratio, the silhouette (euclidean and cosine) and the Davies–Bouldin index (the Jacobian-norm
    paper's measure: lower = better separated; also on unit-normalised features, m-OvR's geometry)."""
    features = np.asarray(features, dtype=np.float64)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return {"between_within": between_within_ratio(features, labels),
            "davies_bouldin": float(davies_bouldin_score(features, labels)),
            "davies_bouldin_unit": float(davies_bouldin_score(unit, labels)),
            "silhouette": float(silhouette_score(features, labels, metric="euclidean")),
            "silhouette_cosine": float(silhouette_score(features, labels, metric="cosine"))}
