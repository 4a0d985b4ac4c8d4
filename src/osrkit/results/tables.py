"""Paper tables from the results store: mean ± std per method × task, published numbers beside ours.

Rows are grouped by (method, task, split family, config hash): runs with different settings are never
pooled. Mean ± std is over every stored split and seed of a group (std with ddof=1; a single run shows
its value alone). Each published number is printed with a footnote (Markdown, LaTeX) or extra columns
(CSV) naming its source, its split family and its provenance, as shared/spec/PAPERS.md asks.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Mapping, Sequence

DEFAULT_METRICS = ("auroc", "oscr", "accuracy")
FORMATS = ("markdown", "csv", "latex")
TASK_ORDER = ("mnist", "svhn", "cifar10", "cifar+10", "cifar+50", "tinyimagenet")
METRIC_LABELS = {"auroc": "AUROC", "oscr": "OSCR", "oscr_arpl": "OSCR (ARPL)", "accuracy": "Accuracy",
                 "fpr95": "FPR95", "aupr_in": "AUPR-in", "aupr_out": "AUPR-out", "f1": "macro-F1"}
PUBLISHED_METRIC = {"auroc": "auroc", "f1": "macro-f1"}  # our metric name -> published.json's
CLASS_SPLIT = "class-split"


@lru_cache(maxsize=1)
def _published_doc() -> dict[str, Any]:
    with resources.files("osrkit.results").joinpath("published.json").open(encoding="utf-8") as f:
        return json.load(f)


def load_published() -> list[dict[str, Any]]:
    """Every published number (see published.json: protocol, task, metric, method, value, source, ...)."""
    return [dict(r) for r in _published_doc()["rows"]]


def published_for(method: str, task: str, metric: str, protocol: str = CLASS_SPLIT,
                  published: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Published numbers for the osrkit `method` on `task` under `protocol` for our `metric`."""
    pm = PUBLISHED_METRIC.get(metric)
    if pm is None:
        return []
    rows = load_published() if published is None else published
    return [dict(r) for r in rows if r.get("osrkit_method") == method and r["task"] == task
            and r["metric"] == pm and r["protocol"] == protocol]


@dataclass
class Stat:
    """Mean and sample std (ddof=1; None for a single value) of one metric over a group's runs."""

    mean: float
    std: float | None
    n: int


@dataclass
class Group:
    """One table row: the runs of a method on a task with one config."""

    method: str
    task: str
    family: str
    config_hash: str
    model: str
    epochs: int
    runs: int
    splits: list[int]
    seeds: list[int]
    stats: dict[str, Stat | None] = field(default_factory=dict)
    published: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ambiguous: bool = False  # another config exists for the same method/task/family


def mean_std(values: Iterable[float]) -> Stat | None:
    """Mean ± sample std; None when there are no finite values."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None
    m = sum(v) / len(v)
    std = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None
    return Stat(m, std, len(v))


def _numeric_metrics(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names = dict.fromkeys(k for r in rows for k, v in (r["metrics"] or {}).items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool))
    return list(names)


def _task_rank(task: str) -> tuple:
    return (TASK_ORDER.index(task), "") if task in TASK_ORDER else (len(TASK_ORDER), task)


def summarize(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = DEFAULT_METRICS,
              published: Sequence[Mapping[str, Any]] | None = None) -> list[Group]:
    """Group stored rows and compute mean ± std of each metric, with the matching published numbers."""
    available = _numeric_metrics(rows)
    unknown = [m for m in metrics if rows and m not in available]
    if unknown:
        raise ValueError(f"metric(s) {', '.join(unknown)} not in the stored rows; available: {', '.join(available)}")
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        h = r["key"].rsplit("|", 1)[1]
        groups.setdefault((r["method"], r["task"], r["family"], h), []).append(r)
    method_order = list(dict.fromkeys(r["method"] for r in rows))
    out = []
    for (method, task, family, h), sel in groups.items():
        cfg = sel[0]["config"] or {}
        g = Group(method, task, family, h, str(cfg.get("model", "?")), int(cfg.get("epochs", 0)), len(sel),
                  sorted({int(r["split"]) for r in sel}), sorted({int(r["seed"]) for r in sel}))
        for m in metrics:
            g.stats[m] = mean_std(r["metrics"].get(m) for r in sel)
            g.published[m] = published_for(method, task, m, published=published)
        out.append(g)
    seen: dict[tuple, int] = {}
    for g in out:
        seen[(g.method, g.task, g.family)] = seen.get((g.method, g.task, g.family), 0) + 1
    for g in out:
        g.ambiguous = seen[(g.method, g.task, g.family)] > 1
    out.sort(key=lambda g: (_task_rank(g.task), g.family, method_order.index(g.method), g.epochs, g.config_hash))
    return out


# -- formatting helpers ---------------------------------------------------------------------------------
def fmt_stat(s: Stat | None, digits: int = 4, pm: str = " ± ") -> str:
    if s is None:
        return "—"
    return f"{s.mean:.{digits}f}" if s.std is None else f"{s.mean:.{digits}f}{pm}{s.std:.{digits}f}"


def _schedule(g: Group) -> str:
    return f"{g.model}, {g.epochs} ep" + (f" (cfg {g.config_hash[:6]})" if g.ambiguous else "")


def _note_text(p: Mapping[str, Any]) -> str:
    """Footnote for a published number: what, source, split family, provenance (with the file's wording)."""
    extra = f" (value: {p['value_note']})" if p.get("value_note") else ""
    prov = p["provenance"]
    if p.get("provenance_note") and p["provenance_note"] != prov:
        prov = f"{prov} — PAPERS.md: \"{p['provenance_note']}\""
    return (f"{p['method']}: {p['value']}{extra}; source {p['source']}; split family {p['split_family']}; "
            f"provenance {prov}")


class _Notes:
    """Numbered footnotes, one per distinct published number, in order of first use."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def mark(self, p: Mapping[str, Any]) -> int:
        text = _note_text(p)
        if text not in self.items:
            self.items.append(text)
        return self.items.index(text) + 1


def _published_cell(ps: Sequence[Mapping[str, Any]], notes: _Notes, mark) -> str:
    if not ps:
        return "—"
    return "; ".join(f"{p['value']:.3f}{mark(notes.mark(p))}" for p in ps)


def _published_metrics(groups: Sequence[Group], metrics: Sequence[str]) -> list[str]:
    """Metrics that get a 'published' column (those with a published counterpart)."""
    return [m for m in metrics if m in PUBLISHED_METRIC]


# -- Markdown ---------------------------------------------------------------------------------------------
def to_markdown(groups: Sequence[Group], metrics: Sequence[str] = DEFAULT_METRICS) -> str:
    """A Markdown table; published numbers carry [n] marks explained below the table."""
    pub = _published_metrics(groups, metrics)
    head = (["method", "task", "split family", "schedule", "runs"] + [METRIC_LABELS.get(m, m) for m in metrics]
            + [f"published {METRIC_LABELS.get(m, m)}" for m in pub])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = _Notes()
    for g in groups:
        cells = [g.method, g.task, g.family, _schedule(g), str(g.runs)] + [fmt_stat(g.stats[m]) for m in metrics]
        cells += [_published_cell(g.published[m], notes, lambda i: f" [{i}]") for m in pub]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Ours: mean ± std (sample std) over the stored splits and seeds of each row.")
    if notes.items:
        lines.append("Published numbers (class-split protocol, mean over 5 splits):")
        lines += [f"[{i}] {t}" for i, t in enumerate(notes.items, 1)]
    return "\n".join(lines) + "\n"


# -- CSV --------------------------------------------------------------------------------------------------
def to_csv(groups: Sequence[Group], metrics: Sequence[str] = DEFAULT_METRICS) -> str:
    """One CSV row per group; numbers unformatted; published source/family/provenance as columns."""
    pub = _published_metrics(groups, metrics)
    head = ["method", "task", "family", "model", "epochs", "config_hash", "runs", "splits", "seeds"]
    for m in metrics:
        head += [f"{m}_mean", f"{m}_std", f"{m}_n"]
    for m in pub:
        head += [f"published_{m}", f"published_{m}_method", f"published_{m}_source",
                 f"published_{m}_split_family", f"published_{m}_provenance"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for g in groups:
        row: list[Any] = [g.method, g.task, g.family, g.model, g.epochs, g.config_hash, g.runs,
                          " ".join(map(str, g.splits)), " ".join(map(str, g.seeds))]
        for m in metrics:
            s = g.stats[m]
            row += ["", "", 0] if s is None else [repr(s.mean), "" if s.std is None else repr(s.std), s.n]
        for m in pub:
            ps = g.published[m]
            row += ["; ".join(str(p["value"]) for p in ps), "; ".join(p["method"] for p in ps),
                    "; ".join(p["source"] for p in ps), "; ".join(p["split_family"] for p in ps),
                    "; ".join(_prov(p) for p in ps)]
        w.writerow(row)
    return buf.getvalue()


def _prov(p: Mapping[str, Any]) -> str:
    note = p.get("provenance_note")
    return p["provenance"] if not note or note == p["provenance"] else f"{p['provenance']} ({note})"


# -- LaTeX ------------------------------------------------------------------------------------------------
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "—": "--", "–": "--", "`": "", '"': "''"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX_ESCAPES.get(c, c) for c in str(s))


def to_latex(groups: Sequence[Group], metrics: Sequence[str] = DEFAULT_METRICS,
             caption: str = "Open-set results: ours (mean $\\pm$ std) beside published numbers.") -> str:
    """A booktabs table; published numbers carry superscript marks explained in the table notes."""
    pub = _published_metrics(groups, metrics)
    head = (["method", "task", "split family", "schedule", "runs"] + [METRIC_LABELS.get(m, m) for m in metrics]
            + [f"published {METRIC_LABELS.get(m, m)}" for m in pub])
    notes = _Notes()
    body = []
    for g in groups:
        cells = [latex_escape(c) for c in (g.method, g.task, g.family, _schedule(g), str(g.runs))]
        cells += [fmt_stat(g.stats[m], pm=r" $\pm$ ").replace("—", "--") for m in metrics]
        cells += [_published_cell(g.published[m], notes, lambda i: f"$^{{{i}}}$").replace("—", "--") for m in pub]
        body.append(" & ".join(cells) + r" \\")
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{" + "llllr" + "l" * (len(metrics) + len(pub)) + "}", r"\toprule",
             " & ".join(latex_escape(h) for h in head) + r" \\", r"\midrule", *body, r"\bottomrule",
             r"\end{tabular}", r"\par\smallskip\footnotesize",
             r"Ours: mean $\pm$ sample std over the stored splits and seeds of each row.\\"]
    lines += [f"$^{{{i}}}$ {latex_escape(t)}\\\\" for i, t in enumerate(notes.items, 1)]
    lines += [rf"\caption{{{caption}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def render(rows: Sequence[Mapping[str, Any]], fmt: str = "markdown", metrics: Sequence[str] = DEFAULT_METRICS) -> str:
    """Stored rows → a table in `fmt` (markdown, csv or latex)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose {', '.join(FORMATS)}")
    groups = summarize(rows, metrics)
    return {"markdown": to_markdown, "csv": to_csv, "latex": to_latex}[fmt](groups, metrics)
