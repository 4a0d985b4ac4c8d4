"""Analysis tools: per-sample Jacobian norms of a representation (m-OvR's explanatory factor)."""

from osrkit.analysis.jacobian import JacobianNorms, jacobian_norm

__all__ = ["JacobianNorms", "jacobian_norm"]
