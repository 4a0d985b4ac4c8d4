"""osrkit: open-set recognition toolkit (CROSR, CAC, m-OvR, baselines, metrics, benchmarks)."""

__version__ = "0.1.0"
__all__ = ["OpenSetClassifier"]


def __getattr__(name: str):
    """`osrkit.OpenSetClassifier` without importing torch at `import osrkit` time."""
    if name == "OpenSetClassifier":
        from osrkit.estimator import OpenSetClassifier

        return OpenSetClassifier
    raise AttributeError(f"module 'osrkit' has no attribute {name!r}")
