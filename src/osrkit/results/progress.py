"""Live progress of a benchmark grid: runs done out of the total, the current run's epoch, time left."""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from osrkit.results.plan import RunSpec


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class GridProgress:
    """Runs done/total, the current run's epoch and throughput, and an estimate of the time left.

    The estimate is (seconds per epoch measured in this session) × (epochs left in the grid).
    Disabled: one plain line per finished run instead of a live display.
    """

    def __init__(self, specs: Sequence[RunSpec], enabled: bool = True, console=None):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.total_runs = len(specs)
        self.runs_done = 0
        self.epochs_left = sum(s.epochs for s in specs)
        self.epochs_timed, self.seconds_timed = 0, 0.0
        self._epoch_t0 = 0.0
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.fields[info]}"), console=self.console, disable=not enabled)
        self.grid_id = self.bar.add_task("grid", total=max(1, self.total_runs), info="")
        self.run_id = self.bar.add_task("run", total=1, info="", visible=False)
        self._refresh()

    def __enter__(self) -> "GridProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def eta(self) -> float | None:
        if self.epochs_timed == 0:
            return None
        return self.seconds_timed / self.epochs_timed * self.epochs_left

    def _refresh(self) -> None:
        self.bar.update(self.grid_id, completed=self.runs_done,
                        info=f"{self.runs_done}/{self.total_runs} runs, time left ~{_fmt_seconds(self.eta())}")

    def skip(self, spec: RunSpec, why: str) -> None:
        self.runs_done += 1
        self.epochs_left -= spec.epochs
        self._refresh()
        if not self.enabled:
            self.console.print(f"{spec.label}: {why}", highlight=False)

    def defer(self, spec: RunSpec, why: str) -> None:
        """A run put off for later in this pass (not counted as done)."""
        if not self.enabled:
            self.console.print(f"{spec.label}: {why}", highlight=False)

    def start(self, spec: RunSpec, done_epochs: int = 0) -> None:
        self.epochs_left -= done_epochs
        self._epoch_t0 = time.perf_counter()
        self.bar.update(self.run_id, description=spec.label, total=spec.epochs, completed=done_epochs, visible=True,
                        info=f"epoch {done_epochs}/{spec.epochs}" + (" (resumed)" if done_epochs else ""))
        self._refresh()

    def epoch(self, spec: RunSpec, epoch: int, rec: Mapping[str, Any]) -> None:
        now = time.perf_counter()
        self.epochs_timed += 1
        self.seconds_timed += now - self._epoch_t0
        self._epoch_t0 = now
        self.epochs_left -= 1
        ips = rec.get("images_per_second", float("nan"))
        self.bar.update(self.run_id, completed=epoch + 1,
                        info=f"epoch {epoch + 1}/{spec.epochs}, {ips:.0f} img/s, loss {rec.get('train_loss', float('nan')):.4f}")
        self._refresh()

    def remote(self, done: int, running: int) -> None:
        """Runs finished elsewhere (Ray workers): the bar shows done / total across the cluster."""
        self.bar.update(self.grid_id, completed=done,
                        info=f"{done}/{self.total_runs} runs, {running} running on the cluster")

    def finish(self, spec: RunSpec, metrics: Mapping[str, Any], seconds: float) -> None:
        self.runs_done += 1
        self.bar.update(self.run_id, visible=False)
        self._refresh()
        msg = (f"{spec.label}: AUROC {metrics.get('auroc', float('nan')):.4f}, "
               f"accuracy {metrics.get('accuracy', float('nan')):.4f} ({seconds:.1f} s)")
        self.console.print(msg, highlight=False)
