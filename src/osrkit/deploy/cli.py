"""`osrkit predict`, `osrkit calibrate` and `osrkit export`: using a trained checkpoint outside benchmarks."""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from osrkit.engine.checkpoint import atomic_write_text

console = Console(stderr=True)
OUTPUT_SUFFIXES = (".csv", ".json")


def rows_text(rows: list[dict[str, Any]], path: Path) -> str:
    """Rows as CSV or JSON text, by the file's suffix."""
    from osrkit.deploy.predictor import COLUMNS

    if path.suffix.lower() == ".json":
        return json.dumps(rows, indent=1) + "\n"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def cmd_predict(args) -> int:
    from osrkit.deploy.images import InputError
    from osrkit.deploy.predictor import COLUMNS, OpenSetPredictor

    from osrkit.cli import refuse_overwrite

    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out {out}: the file must end in .csv or .json")
    refuse_overwrite(args, out)
    predictor = OpenSetPredictor.from_checkpoint(args.checkpoint, threshold=args.threshold, tpr=args.tpr,
                                                 device=args.device, batch_size=args.batch_size)
    t0 = time.perf_counter()
    report = predictor.predict_paths(args.inputs, progress=not args.no_progress,
                                     warn=lambda m: console.print(f"[yellow]warning:[/yellow] {m}", highlight=False,
                                                                  soft_wrap=True))
    seconds = time.perf_counter() - t0
    if not report.rows:
        if len(report.skipped) == 1:
            raise InputError(report.skipped[0])
        raise InputError(f"no image could be read: {len(report.skipped)} inputs skipped, the first: {report.skipped[0]}")
    if out is not None:
        atomic_write_text(out, rows_text(report.rows, out))
    else:
        t = Table(title=f"osrkit predict: {args.checkpoint}")
        for c in COLUMNS:
            t.add_column(c, overflow="fold")
        for r in report.rows:
            t.add_row(r["input"], r["label"], r["nearest_class"], f"{r['unknown_score']:.6g}", f"{r['threshold']:.6g}")
        Console(width=max(Console().width, 120)).print(t)
    console.print(f"{report.summary()}; threshold {predictor.threshold:.6g}; "
                  f"{len(report.rows) / max(seconds, 1e-9):.0f} images/s" + (f"; wrote {out}" if out else ""),
                  highlight=False, soft_wrap=True)
    return 0


def cmd_calibrate(args) -> int:
    from osrkit.engine.pipeline import calibrate_checkpoint

    op = calibrate_checkpoint(args.checkpoint, tpr=args.tpr, data_root=args.data_root, trainval=args.trainval,
                              device=args.device)
    console.print(f"{args.checkpoint}: threshold {op['threshold']:.6g} ({op['rule']}, n = {op['num_val_known']})",
                  highlight=False, soft_wrap=True)
    return 0


def cmd_export(args) -> int:
    from osrkit.cli import refuse_overwrite
    from osrkit.deploy.export import export_checkpoint

    refuse_overwrite(args, args.out)

    info = export_checkpoint(args.checkpoint, args.format, args.out, threshold=args.threshold, tpr=args.tpr,
                             check=not args.no_check)
    console.print(f"wrote {args.out} ({args.format}): input 'images' uint8 {info['input_shape']}, outputs "
                  f"logits, unknown_score, label; threshold {info['threshold']:.6g}"
                  + (f"; max |difference| to PyTorch {info['max_abs_diff']:.2e}" if "max_abs_diff" in info else ""),
                  highlight=False, soft_wrap=True)
    return 0


def cmd_report(args) -> int:
    from osrkit.analysis.report import checkpoint_report, db_report

    from osrkit.cli import _csv, refuse_overwrite

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {out}: the report is one HTML file, name it .html")
    refuse_overwrite(args, out)
    if (args.checkpoint is None) == (args.db is None):
        raise ValueError("give a CHECKPOINT, or --db RESULTS for a comparison of methods (not both)")
    if args.db is not None:
        from osrkit.results.store import open_store

        store = open_store(args.db, create=False)  # a missing file or an unreachable server: a clear error
        rows = store.rows(method=_csv(args.methods), task=_csv(args.tasks))
        if not rows:
            raise ValueError(f"no stored runs in {store} match (methods={args.methods}, tasks={args.tasks})")
        page = db_report(rows, f"osrkit results: {store}")
    else:
        from osrkit.engine.pipeline import load_trained, task_from_checkpoint

        trained = load_trained(args.checkpoint)
        task = task_from_checkpoint(trained.meta, data_root=args.data_root)
        spec = trained.meta["task"]
        where = task.name + (f" ({spec['family']} split {spec['index']})" if spec.get("family") else "")
        page = checkpoint_report(trained, task, f"osrkit report: {trained.meta['method']} on {where}",
                                 device=args.device)
    atomic_write_text(out, page)
    console.print(f"wrote {out} ({len(page) / 1e3:.0f} kB, self-contained)", highlight=False, soft_wrap=True)
    return 0


def _threshold_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, help="reject above this unknown score (default: the checkpoint's "
                                                   "calibrated operating point)")
    g.add_argument("--tpr", type=float, help="operating point keeping this share of validation knowns, e.g. 0.99")


def add_deploy_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="label new images with a known class or 'unknown' (CSV, JSON or a table)")
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or .npy uint8 arrays")
    p.add_argument("--out", help="write the rows to this .csv or .json file (default: a table on stdout)")
    _threshold_args(p)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.set_defaults(func=cmd_predict)

    c = sub.add_parser("calibrate", help="recompute a checkpoint's threshold on its validation knowns (in place)")
    c.add_argument("checkpoint")
    c.add_argument("--tpr", type=float, default=0.95, help="share of validation knowns kept (default 0.95)")
    c.add_argument("--data-root", help="the task's data folder")
    c.add_argument("--trainval", help="the train/val partition file, for a run trained on one")
    c.add_argument("--device", default="cpu")
    c.set_defaults(func=cmd_calibrate)

    e = sub.add_parser("export", help="one ONNX or TorchScript graph: uint8 images → logits, unknown_score, label")
    e.add_argument("checkpoint")
    e.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    e.add_argument("--out", required=True, help="the graph file to write")
    _threshold_args(e)
    e.add_argument("--no-check", action="store_true", help="skip comparing the exported graph with PyTorch")
    e.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="one self-contained HTML report: a checkpoint on its test data, or --db methods")
    r.add_argument("checkpoint", nargs="?")
    r.add_argument("--db", help="a results database (osrkit bench) instead of a checkpoint: compare its methods")
    r.add_argument("--methods", help="with --db: only these methods (comma-separated)")
    r.add_argument("--tasks", help="with --db: only these tasks (comma-separated)")
    r.add_argument("--data-root", help="the task's data folder")
    r.add_argument("--out", required=True, help="the HTML file to write")
    r.add_argument("--device", default="cpu")
    r.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    r.set_defaults(func=cmd_report)
