"""Results: SQLite or PostgreSQL store of benchmark runs, the grid runner, paper tables with published numbers.

`store` imports no torch, so processes that only read or write results start fast; `run_grid` and
the table functions are imported lazily from their modules.
"""

from osrkit.results.store import ResultsStore, RunRecord, config_hash, git_commit, open_store, run_key

__all__ = ["ResultsStore", "RunRecord", "config_hash", "git_commit", "open_store", "run_key", "run_grid", "GridConfig", "render",
           "load_published"]


def __getattr__(name: str):
    if name in ("run_grid", "GridConfig"):
        from osrkit.results import grid

        return getattr(grid, name)
    if name in ("render", "load_published"):
        from osrkit.results import tables

        return getattr(tables, name)
    raise AttributeError(f"module 'osrkit.results' has no attribute {name!r}")
