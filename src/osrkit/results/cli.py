"""`osrkit bench` (run a grid into the results database) and `osrkit table` (paper tables from it).

Register with `add_bench_parser(subparsers)` and `add_table_parser(subparsers)`; each sets `func`, which
returns an exit code and raises ValueError / FileNotFoundError with a clear message on bad input.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from osrkit.results.grid import DEFAULT_DB, GridConfig, grid_kwargs, run_grid
from osrkit.results.tables import DEFAULT_METRICS, FORMATS, render


def _csv_or_none(s: str | None) -> list[str] | None:
    return None if s is None else [p.strip() for p in s.split(",") if p.strip()]


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """`osrkit bench`: train + evaluate method × task × split × seed, one database row each."""
    from osrkit.methods import list_methods
    from osrkit.results.grid import grid_tasks

    p = subparsers.add_parser(
        "bench", help="run a benchmark grid into a results database (skips stored runs, resumes interrupted ones)",
        description="Every method × task × split × seed not yet in --db is trained, evaluated and stored. "
                    "Flags override the values of a --config grid file.")
    p.add_argument("--methods", help=f"comma-separated methods (default softmax): {', '.join(list_methods())}")
    p.add_argument("--tasks", help=f"comma-separated tasks (default digits): {', '.join(grid_tasks())}")
    p.add_argument("--splits", help="comma-separated split indices (default: every split of the family)")
    p.add_argument("--seeds", help="comma-separated seeds (default 0)")
    p.add_argument("--epochs", type=int, help="epochs for every run (default: each method's data-set default)")
    p.add_argument("--db", help=f"results database: a SQLite file (default ./{DEFAULT_DB}) or "
                                "postgresql://USER@HOST:PORT/DB")
    p.add_argument("--family", help="split family: neal or arpl (default neal)")
    p.add_argument("--data-root", help="data folder (default $OSRKIT_DATA, else ~/.cache/osrkit)")
    p.add_argument("--download", action="store_true", default=None, help="download data sets where torchvision can")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--config", help="YAML grid file with the same keys (methods, tasks, splits, seeds, family, "
                                     "epochs, db, data_root, device, checkpoint_dir, threads) plus `config:` "
                                     "TrainConfig overrides for every run and `method_config:` {method: "
                                     "overrides} for one method's runs")
    p.add_argument("--checkpoint-dir", help="per-run checkpoints, resumed after an interruption "
                                            "(default <db name>-checkpoints beside the db)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--executor", choices=("local", "ray"), help="local (default): runs in this process; ray: each "
                   "run a Ray task (needs osrkit[cluster], a --checkpoint-dir every worker sees)")
    p.add_argument("--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local one)")
    p.add_argument("--cpus-per-run", type=float, help="Ray: CPUs each run reserves (default 1)")
    p.add_argument("--gpus-per-run", type=float, help="Ray: GPUs each run reserves (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no live progress display")
    p.set_defaults(func=cmd_bench)
    return p


def add_table_parser(subparsers) -> argparse.ArgumentParser:
    """`osrkit table`: mean ± std per method × task from the database, published numbers beside."""
    p = subparsers.add_parser("table", help="mean ± std tables (Markdown, CSV, LaTeX) from a results database",
                              description="Our mean ± std per method × task (per config), with the published "
                                          "numbers for the same protocol, their source, split family and provenance.")
    p.add_argument("--db", default=DEFAULT_DB, help=f"results database: a SQLite file (default ./{DEFAULT_DB}) or "
                                                     "postgresql://USER@HOST:PORT/DB")
    p.add_argument("--format", default="markdown", choices=FORMATS)
    p.add_argument("--out", help="write the table to this file (default: standard output)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated metrics (default {','.join(DEFAULT_METRICS)})")
    p.add_argument("--methods", help="only these methods (comma-separated)")
    p.add_argument("--tasks", help="only these tasks (comma-separated)")
    p.add_argument("--family", help="only this split family")
    p.set_defaults(func=cmd_table)
    return p


def add_db_parser(subparsers) -> argparse.ArgumentParser:
    """`osrkit db copy SRC DST`: move rows between results stores (SQLite file ↔ PostgreSQL)."""
    p = subparsers.add_parser("db", help="results database tools: copy rows between SQLite and PostgreSQL")
    sub = p.add_subparsers(dest="db_command", required=True)
    c = sub.add_parser("copy", help="copy every run of SRC into DST (keys DST holds are left alone)")
    c.add_argument("src", help="a SQLite file or postgresql://USER@HOST:PORT/DB")
    c.add_argument("dst", help="a SQLite file or postgresql://USER@HOST:PORT/DB (created when missing)")
    c.set_defaults(func=cmd_db_copy)
    return p


def bench_config(args: argparse.Namespace) -> GridConfig:
    """The grid from parsed flags and the optional YAML grid file, with defaults."""
    flags = {"methods": args.methods, "tasks": args.tasks, "splits": args.splits, "seeds": args.seeds,
             "epochs": args.epochs, "db": args.db, "family": args.family, "data_root": args.data_root,
             "download": args.download, "device": args.device, "checkpoint_dir": args.checkpoint_dir,
             "threads": args.threads, "executor": args.executor, "ray_address": args.ray_address,
             "cpus_per_run": args.cpus_per_run, "gpus_per_run": args.gpus_per_run}
    kw = grid_kwargs(flags, args.config)
    defaults = {"methods": ["softmax"], "tasks": ["digits"], "seeds": [0], "family": "neal", "db": DEFAULT_DB,
                "device": "cpu", "download": False}
    return GridConfig.from_mapping({**defaults, **{k: v for k, v in kw.items() if v is not None}})


def cmd_bench(args: argparse.Namespace) -> int:
    from osrkit.results.store import open_store

    grid = bench_config(args)
    res = run_grid(grid, progress=not args.no_progress)
    store = open_store(grid.db)
    print(f"{res.total} runs: {len(res.trained)} trained, {len(res.skipped)} already stored"
          + (f", {len(res.claimed_elsewhere)} being run by another process" if res.claimed_elsewhere else "")
          + f" ({res.seconds:.1f} s); results in {store}", file=sys.stderr)
    rows = store.rows(method=list(grid.methods), task=list(grid.tasks), family=grid.family)
    if rows:
        sys.stdout.write(render(rows, "markdown"))
    return 0


def cmd_db_copy(args: argparse.Namespace) -> int:
    from osrkit.results.store import copy_rows, open_store

    src = open_store(args.src, create=False)
    dst = open_store(args.dst)
    copied, skipped = copy_rows(src, dst)
    print(f"copied {copied} runs from {src} to {dst}" + (f"; {skipped} already there" if skipped else ""),
          file=sys.stderr)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from osrkit.engine.checkpoint import atomic_write_text
    from osrkit.results.store import open_store

    store = open_store(args.db, create=False)
    rows = store.rows(method=_csv_or_none(args.methods), task=_csv_or_none(args.tasks), family=args.family)
    if not rows:
        raise ValueError(f"no stored runs in {store} match (methods={args.methods}, tasks={args.tasks}, "
                         f"family={args.family}); run `osrkit bench --db {store}` first")
    text = render(rows, args.format, _csv_or_none(args.metrics) or list(DEFAULT_METRICS))
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out} ({len(rows)} runs)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
