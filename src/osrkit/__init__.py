"""osrkit: open-set recognition toolkit (CROSR, CAC, m-OvR, baselines, metrics, benchmarks)."""

__version__ = "0.1.0"
