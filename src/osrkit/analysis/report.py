"""Self-contained HTML reports: one checkpoint on its task's test data, or the methods of a results database.

Everything is in one file that opens offline: figures are PNGs embedded as base64, styles inline, no script.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from osrkit import metrics as M

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.figs{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figcaption{font-size:.85em;color:#555}pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}
.note{color:#555;font-size:.9em}"""


def _png(fig) -> str:
    """A matplotlib figure as an <img> with a base64 PNG (closed after)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _figure(img: str, caption: str) -> str:
    return f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if v != v else f"{v:.4f}"
    return str(v)


def _page(title: str, sections: Sequence[str]) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1><p class=\"note\">osrkit report, {when}</p>"
            + "".join(sections) + "</body></html>\n")


def _axes(w: float = 4.6, h: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def _roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], point: tuple[float, float] | None = None) -> str:
    fig, ax = _axes()
    for label, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, label=label, lw=1.5)
    if point is not None:
        ax.plot(*point, "o", color="k", label="operating point")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    ax.set(xlabel="FPR (knowns flagged unknown)", ylabel="TPR (unknowns flagged unknown)", title="ROC, unknown = positive")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def _oscr_figure(fpr: np.ndarray, ccr: np.ndarray) -> str:
    fig, ax = _axes()
    ax.plot(fpr, ccr, lw=1.5)
    ax.set(xlabel="FPR (unknowns accepted)", ylabel="CCR (knowns accepted and correct)", title="OSCR curve",
           xscale="symlog", xlim=(0, 1))
    ax.set_xscale("symlog", linthresh=1e-3)
    return _png(fig)


def _histogram_figure(known: np.ndarray, unknown: np.ndarray, threshold: float | None) -> str:
    fig, ax = _axes(5.2, 3.6)
    lo, hi = np.percentile(np.concatenate([known, unknown]), [0.5, 99.5])
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
    ax.hist(np.clip(known, lo, hi), bins=bins, alpha=0.6, density=True, label=f"known test (n={len(known)})")
    ax.hist(np.clip(unknown, lo, hi), bins=bins, alpha=0.6, density=True, label=f"unknown test (n={len(unknown)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.4g}")
    ax.set(xlabel="unknown score (higher = more likely unknown)", ylabel="density", title="Unknown scores")
    ax.legend(fontsize=8)
    return _png(fig)


def _confusion_figure(cm: np.ndarray, names: Sequence[str]) -> str:
    fig, ax = _axes(1.2 + 0.55 * len(names), 1.0 + 0.5 * len(names))
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion at the operating point")
    return _png(fig)


def open_set_confusion(known_labels: np.ndarray, known_pred: np.ndarray, known_rejected: np.ndarray,
                       unknown_pred: np.ndarray, unknown_rejected: np.ndarray, num_classes: int) -> np.ndarray:
    """(K+1, K+1) counts, true rows × predicted columns, index K = "unknown": an input is predicted unknown
    when rejected, else its nearest known class; unknown inputs are true "unknown"."""
    from sklearn.metrics import confusion_matrix

    true = np.concatenate([known_labels, np.full(len(unknown_pred), num_classes)])
    pred = np.concatenate([np.where(known_rejected, num_classes, known_pred),
                           np.where(unknown_rejected, num_classes, unknown_pred)])
    return confusion_matrix(true, pred, labels=list(range(num_classes + 1)))


def checkpoint_report(trained, task, title: str, device: str = "cpu") -> str:
    """HTML for one trained model on its task's test data: curves, histograms, confusion, per class, config."""
    from osrkit.engine.config import TrainConfig
    from osrkit.engine.pipeline import compute_metrics, predict_with

    cfg = TrainConfig.from_dict(trained.meta["osrkit_config"])
    known = predict_with(trained.model, task.test_x, task, cfg, labels=task.test_y, device=device)
    unknown = predict_with(trained.model, task.unknown_x, task, cfg, device=device)
    ks, kp = (t.double().numpy() if t.is_floating_point() else t.numpy() for t in trained.scorer.score(known))
    us, up = (t.double().numpy() if t.is_floating_point() else t.numpy() for t in trained.scorer.score(unknown))
    labels = task.test_y.numpy()
    metrics = compute_metrics(known, unknown, trained.scorer, trained.meta.get("f1_threshold"),
                              trained.meta.get("f1_reject", 0.1))
    op = trained.meta.get("operating_point") or {}
    thr = op.get("threshold")
    k = task.num_classes
    names = list(task.class_names) + ["unknown"]
    sections = []
    rows = [(n, metrics[key]) for n, key in (("AUROC", "auroc"), ("OSCR", "oscr"), ("closed-set accuracy", "accuracy"),
                                             ("FPR at 95% TPR", "fpr95"), ("AUPR-in", "aupr_in"),
                                             ("AUPR-out", "aupr_out"))]
    if "f1" in metrics:
        rows.append((f"open-set macro-F1 ({metrics['f1_rule']})", metrics["f1"]))
    point = None
    if thr is not None:
        k_rej, u_rej = ks > thr, us > thr
        rows += [(f"operating point: threshold ({op.get('rule', '')})", float(thr)),
                 ("known test kept (TPR)", float(1 - k_rej.mean())), ("unknown test rejected", float(u_rej.mean())),
                 ("known test kept and correct", float(((~k_rej) & (kp == labels)).mean()))]
        point = (float(k_rej.mean()), float(u_rej.mean()))
    sections.append("<h2>Metrics</h2>" + _table(("metric", "value"), rows)
                    + f"<p class=\"note\">{len(ks)} known-test and {len(us)} unknown-test samples; task "
                    f"{html.escape(task.name)} (known {html.escape(', '.join(task.class_names))}).</p>")
    y, s = np.concatenate([np.zeros(len(ks)), np.ones(len(us))]), np.concatenate([ks, us])
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    ofpr, occr = M.oscr_curve(ks, kp == labels, us)
    figs = [_figure(_roc_figure({trained.meta["method"]: (fpr, tpr)}, point), "ROC: unknown test vs known test"),
            _figure(_oscr_figure(ofpr, occr), "OSCR: correct-classification rate of knowns against FPR of unknowns"),
            _figure(_histogram_figure(ks, us, thr), "Unknown-score histograms, threshold dashed")]
    if thr is not None:
        cm = open_set_confusion(labels, kp, ks > thr, up, us > thr, k)
        figs.append(_figure(_confusion_figure(cm, names), "Confusion matrix with an 'unknown' row and column (counts)"))
        per_class = []
        for c in range(k):
            m = labels == c
            per_class.append((task.class_names[c], int(m.sum()), float((kp[m] == c).mean()) if m.any() else float("nan"),
                              float((ks[m] > thr).mean()) if m.any() else float("nan"),
                              float(((kp[m] == c) & (ks[m] <= thr)).mean()) if m.any() else float("nan")))
        per_class.append(("unknown (test)", len(us), float("nan"), float((us > thr).mean()), float((us > thr).mean())))
        sections.append("<h2>Figures</h2><div class=\"figs\">" + "".join(figs) + "</div>")
        sections.append("<h2>Per class, at the operating point</h2>" + _table(
            ("class", "test samples", "closed-set accuracy", "rejection rate", "open-set accuracy"), per_class))
    else:
        sections.append("<h2>Figures</h2><div class=\"figs\">" + "".join(figs) + "</div>"
                        "<p class=\"note\">No calibrated threshold in this checkpoint: run `osrkit calibrate` for the "
                        "confusion matrix and per-class rejection.</p>")
    config = {k2: v for k2, v in trained.meta.items() if k2 in ("method", "task", "osrkit_config", "operating_point",
                                                                  "train_seconds", "normalization")}
    sections.append("<h2>Configuration</h2><pre>" + html.escape(json.dumps(config, indent=1, default=str)) + "</pre>")
    return _page(title, sections)


def _mean_roc(curves: Sequence[Mapping[str, Sequence[float]]], grid: np.ndarray) -> np.ndarray:
    """Vertical averaging: mean TPR at each FPR of `grid` over the runs' stored curves."""
    return np.mean([np.interp(grid, c["fpr"], c["tpr"]) for c in curves], axis=0)


def db_report(rows: Sequence[Mapping[str, Any]], title: str) -> str:
    """HTML comparing methods of a results database: the mean ± std table and their ROC curves on one plot."""
    from osrkit.results.tables import render

    by_method: dict[str, list] = {}
    missing: dict[str, int] = {}
    for r in rows:
        roc = (r.get("extra") or {}).get("roc")
        if roc:
            by_method.setdefault(f"{r['method']} ({r['task']})", []).append(roc)
        else:
            missing[r["method"]] = missing.get(r["method"], 0) + 1
    sections = ["<h2>Mean ± std over splits and seeds</h2>" + _markdown_table_html(render(rows, "markdown"))]
    if by_method:
        grid = np.linspace(0, 1, 201)
        curves = {f"{m}, {len(c)} runs": (grid, _mean_roc(c, grid)) for m, c in by_method.items()}
        sections.append("<h2>ROC curves (mean over runs)</h2>" + _figure(_roc_figure(curves), "ROC per method, "
                        "vertically averaged over its runs"))
    if missing:
        sections.append("<p class=\"note\">Runs stored before curves were recorded (no ROC): "
                        + html.escape(", ".join(f"{m} {n}" for m, n in missing.items())) + ".</p>")
    return _page(title, sections)


def _markdown_table_html(md: str) -> str:
    """The first Markdown table of `md` as HTML, with the text around it as notes."""
    lines = md.splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    rest = [ln for ln in lines if ln.strip() and not ln.startswith("|")]
    if len(table) < 2:
        return f"<pre>{html.escape(md)}</pre>"
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in table]
    head, body = cells[0], [c for c in cells[2:]]
    out = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
    out += "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body) + "</table>"
    return out + "".join(f"<p class=\"note\">{html.escape(ln)}</p>" for ln in rest)
