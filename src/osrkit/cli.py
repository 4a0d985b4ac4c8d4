"""The `osrkit` command line: datasets, train, eval, run, import-cac."""

from __future__ import annotations

import argparse
import json
import pickle
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.table import Table

from osrkit.data.datasets import DATASETS, default_data_root
from osrkit.data.splits import SPLIT_ALIASES, num_splits, split_families
from osrkit.data.tasks import PLUS_TASKS, make_task, read_trainval
from osrkit.engine.checkpoint import atomic_write_text
from osrkit.engine.config import TrainConfig
from osrkit.methods import default_config, get_method, list_methods

console = Console(stderr=True)
TASKS = sorted(set(DATASETS) - {"cifar100"} | PLUS_TASKS)
TABLE_METRICS = ("auroc", "oscr", "accuracy")


def _csv(s: str | None) -> list[str] | None:
    return None if s is None else [p.strip() for p in s.split(",") if p.strip()]


def _int_list(s: str, what: str) -> list[int]:
    try:
        return [int(p) for p in _csv(s) or []]
    except ValueError:
        raise SystemExit(f"error: {what} must be comma-separated integers, got {s!r}")


def _parse_value(v: str) -> Any:
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def _add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="digits", help=f"data set / task: {', '.join(TASKS)} (default digits)")
    p.add_argument("--family", default="neal", help=f"split family: {', '.join(split_families())}")
    p.add_argument("--known", help="explicit known classes (names or indices, comma-separated) instead of a split")
    p.add_argument("--unknown", help="explicit unknown classes (default: every other class)")
    p.add_argument("--data-root", help="data folder (default $OSRKIT_DATA, else ~/.cache/osrkit)")
    p.add_argument("--download", action="store_true", help="download the data set where torchvision can")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out share of known training data")
    p.add_argument("--trainval", help="a fixed train/val partition (JSON {\"Train\": {class: [indices]}, \"Val\": ...}, "
                                      "as the CAC authors publish) instead of the seeded --val-fraction holdout")
    p.add_argument("--outlier", help="outlier-set protocol (CROSR): all classes known, this set unknown "
                                     "(omniglot, mnist-noise, noise, imagenet-crop, imagenet-resize, lsun-crop, lsun-resize)")
    p.add_argument("--outlier-root", help="folder of the outlier set (default: the data root; LSUN: its image folder)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="softmax", help=f"method: {', '.join(list_methods())}")
    p.add_argument("--config", help="YAML file of TrainConfig fields (overridden by flags)")
    p.add_argument("--model", help="backbone (vgg32, vgg32-flatten, vgg32-lite, small, ...)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=["sgd", "adam"])
    p.add_argument("--schedule", choices=["onecycle", "cosine", "step", "constant"])
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--weight-decay-on", choices=["all", "weights"],
                   help="all (default) or weights: no decay on biases, norms and cosine prototypes")
    p.add_argument("--augment", choices=["none", "crop", "crop-flip"])
    p.add_argument("--select", choices=["last", "best-val-loss", "best-val-anchor-loss"],
                   help="which epoch's weights to keep: the last, the lowest validation loss, or (CAC) the lowest "
                        "validation anchor loss, as the CAC authors chose")
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"],
                   help="auto (default): bf16 autocast where the device runs it natively, else fp32")
    p.add_argument("--memory-format", choices=["auto", "channels_last", "contiguous"],
                   help="auto (default): channels_last where bf16 is native, else contiguous")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method hyper-parameter, e.g. --param alpha=10 (repeatable)")
    p.add_argument("--tpr", type=float, default=0.95,
                   help="the stored operating point keeps this share of validation knowns (default 0.95); "
                        "`osrkit predict` rejects above it")
    p.add_argument("--f1-reject", type=float, default=0.1,
                   help="the open-set F1 rule: its threshold rejects this share of validation knowns (default 0.1, "
                        "as CROSR's follow-ups)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, ...")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_config(args: argparse.Namespace, method: str, dataset: str) -> TrainConfig:
    """Method/data-set defaults, then the YAML file, then flags."""
    cfg = default_config(method, dataset)
    if args.config:
        path = Path(args.config)
        if not path.exists():
            raise SystemExit(f"error: config file {path} does not exist")
        try:
            overrides = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"config file {path} is not valid YAML: {e}") from e
        if not isinstance(overrides, dict):
            raise ValueError(f"config file {path} must hold a mapping of TrainConfig fields, got {type(overrides).__name__}")
        cfg = cfg.replace(**overrides)
    params = {}
    for kv in args.param:
        if "=" not in kv:
            raise SystemExit(f"error: --param expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        params[k] = _parse_value(v)
    return cfg.replace(model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       optimizer=args.optimizer, schedule=args.schedule, weight_decay=args.weight_decay,
                       augment=args.augment, select=args.select, seed=args.seed,
                       method_params=get_method(method).coerce_params(params) or None,
                       precision=args.precision, memory_format=args.memory_format,
                       weight_decay_on=args.weight_decay_on).resolved(args.device)


def _make_task(args, split: int | None, seed: int = 0):
    known = _csv(args.known)
    explicit = known is not None or args.outlier is not None
    return make_task(args.task, split=None if explicit else split, family=args.family, known=known,
                     unknown=_csv(args.unknown), data_root=args.data_root, download=args.download,
                     val_fraction=args.val_fraction, seed=seed, outlier=args.outlier, outlier_root=args.outlier_root,
                     train_indices=read_trainval(args.trainval) if getattr(args, "trainval", None) else None)


def _setup(args) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if getattr(args, "device", "cpu").startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {args.device} asked for, but no CUDA device is available; use --device cpu")


def refuse_overwrite(args, *paths: str | Path | None, resumable: bool = False) -> None:
    """Stop before any work when an output exists and neither --force (nor, for a checkpoint, --resume) was given."""
    if getattr(args, "force", False) or (resumable and getattr(args, "resume", False)):
        return
    for p in paths:
        if p is not None and Path(p).exists():
            how = "--resume to continue it or --force to train over it" if resumable else "--force to overwrite it"
            raise ValueError(f"{p} already exists: pass {how}, or choose another path")


def _write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def cmd_datasets(args) -> int:
    root = default_data_root(args.data_root)
    t = Table(title=f"osrkit data sets (data root {root})")
    for c in ("name", "files present", "download", "split families"):
        t.add_column(c)
    for name in TASKS:
        cls = DATASETS["cifar10" if name in PLUS_TASKS else name]
        fams = []
        for fam in split_families():
            try:
                fams.append(f"{fam} ({num_splits(fam, name)})")
            except ValueError:
                pass
        present = "n/a (your folder)" if name == "folder" else ("yes" if cls.files_present(root) else "no")
        if name in PLUS_TASKS:
            present = "yes" if cls.files_present(root) and DATASETS["cifar100"].files_present(root) else "no"
        alias = f" (= {SPLIT_ALIASES[name]} lists)" if name in SPLIT_ALIASES else ""
        t.add_row(name, present, "yes" if cls.downloadable else "no", ", ".join(fams) + alias or "explicit --known")
    Console().print(t)
    return 0


def cmd_train(args) -> int:
    from osrkit.engine import distributed
    from osrkit.engine.pipeline import evaluate, fit_method

    rank, world = distributed.rank_and_world()
    if args.nproc and args.nproc > 1 and world == 1:  # launch torchrun with this very command on N ranks
        argv = list(getattr(args, "argv", sys.argv[1:]))
        return distributed.launch(args.nproc, _without_option(argv, "--nproc"))
    _setup(args)
    device = distributed.setup(args.device)
    try:
        cfg = build_config(args, args.method, args.task)
        task = _make_task(args, args.split, seed=cfg.seed)
        if rank == 0:
            console.print(task.summary() + (f" ({world} DDP ranks)" if world > 1 else ""))
        out = args.out or f"runs/{_checkpoint_name(args.method, task, cfg, device, share_network=False)}"
        refuse_overwrite(args, out, resumable=True)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()  # every rank has checked --out before rank 0 writes it
        trained = fit_method(args.method, task, cfg, checkpoint=out, resume=args.resume, device=device,
                             progress=not args.no_progress, tpr=args.tpr, f1_reject=args.f1_reject,
                             sync_bn=args.sync_bn)
        if rank != 0:
            return 0
        res = evaluate(trained, task, device=device)
        console.print(f"checkpoint: {out}")
        console.print({k: round(v, 4) for k, v in res.items() if isinstance(v, float)})
        return 0
    finally:
        distributed.teardown()


def _without_option(argv: list[str], name: str) -> list[str]:
    """argv without `name VALUE` / `name=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def cmd_eval(args) -> int:
    from osrkit.engine.pipeline import evaluate, load_trained, task_from_checkpoint

    _setup(args)
    refuse_overwrite(args, args.json)
    trained = load_trained(args.checkpoint)
    task = task_from_checkpoint(trained.meta, data_root=args.data_root, download=args.download)
    res = {"checkpoint": str(args.checkpoint), "method": trained.meta["method"], "task": trained.meta["task"],
           "diverged": trained.meta.get("diverged"), **evaluate(trained, task, device=args.device)}
    if args.json:
        _write_json(args.json, res)
    print(json.dumps(res, indent=2, default=float))
    return 0


def _checkpoint_name(method: str, task, cfg: TrainConfig, device: str | None, share_network: bool = True) -> str:
    """The run identity's file name (`osrkit.engine.identity.checkpoint_name`), for the config as it will run."""
    from osrkit.engine.identity import checkpoint_name

    return checkpoint_name(method, task.name, cfg.resolved(device or "cpu").to_dict(), task.spec, share_network)


def summarize(rows: list[dict], metrics: Sequence[str] = TABLE_METRICS) -> list[dict]:
    """Mean ± std per method over rows (one row per split)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        s = {"method": method, "n": len(sel), "seconds": float(sum(r["seconds"] for r in sel)),
             "train_seconds": float(np.mean([r.get("train_seconds", np.nan) for r in sel]))}
        for m in metrics:
            vals = np.array([r[m] for r in sel], dtype=float)
            s[m] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
        out.append(s)
    return out


def markdown_table(summary: list[dict], metrics: Sequence[str] = TABLE_METRICS) -> str:
    head = ("| method | splits | " + " | ".join(m.upper() if m != "accuracy" else "Accuracy" for m in metrics)
            + " | training / split (s) | this command (s) |")
    lines = [head, "|" + "---|" * (len(metrics) + 4)]
    for s in summary:
        cells = " | ".join(f"{s[m]['mean']:.4f} ± {s[m]['std']:.4f}" for m in metrics)
        lines.append(f"| {s['method']} | {s['n']} | {cells} | {s.get('train_seconds', float('nan')):.0f} | {s['seconds']:.0f} |")
    return "\n".join(lines)


def run_provenance(args, configs: dict[str, TrainConfig]) -> dict[str, Any]:
    """Command, date, machine, commit and each method's schedule: what a results file must name."""
    import datetime as dt
    import shlex

    from osrkit.results.runner import machine_info as _machine
    from osrkit.results.store import git_commit

    return {"command": shlex.join(["osrkit", *getattr(args, "argv", sys.argv[1:])]), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": _machine(args.device or "cpu"), "git_commit": git_commit(),
            "configs": {m: c.to_dict() for m, c in configs.items()}}


def provenance_footer(prov: dict[str, Any]) -> str:
    """One Markdown paragraph: schedule per method, then command, date, machine and commit."""
    m = prov["machine"]
    sched = "; ".join(f"{name}: {c.get('model')}, {c.get('epochs')} epochs, {c.get('optimizer')} {c.get('schedule')} lr {c.get('lr')}, "
                      f"batch {c.get('batch_size')}, weight decay {c.get('weight_decay')}, augment {c.get('augment')}, select {c.get('select')}, "
                      f"seed {c.get('seed')}" + (f", method parameters {c['method_params']}" if c.get("method_params") else "")
                      for name, c in prov["configs"].items())
    where = f"{m['platform']}, {m['cpu_count']} cores, {m['threads']} threads, torch {m['torch']}" + (f", {m['gpu']}" if m.get("gpu") else "")
    return (f"Schedule: {sched}.\n\nCommand: `{prov['command']}`; date {prov['date'][:10]}; {where}; "
            f"commit {prov['git_commit'][:7]}. Training seconds come from each checkpoint: where this command "
            "resumed finished checkpoints, they were measured by the run that trained them.")


def cmd_run(args) -> int:
    from osrkit.engine.pipeline import evaluate, fit_method

    _setup(args)
    refuse_overwrite(args, args.json, args.markdown)
    methods = _csv(args.method) or ["softmax"]
    if args.known or args.outlier:
        splits = [0]  # one explicit task, no split lists
    else:
        splits = _int_list(args.splits, "--splits") if args.splits else list(range(num_splits(args.family, args.task)))
    rows = []
    configs = {}
    for method in methods:
        cfg = configs[method] = build_config(args, method, args.task)
        for split in splits:
            t0 = time.perf_counter()
            task = _make_task(args, split, seed=cfg.seed)
            ckpt = Path(args.out_dir) / _checkpoint_name(method, task, cfg, args.device) if args.out_dir else None
            console.print(f"[bold]{method}[/bold] on {task.summary()}")
            trained = fit_method(method, task, cfg, checkpoint=ckpt, resume=ckpt is not None, device=args.device,
                                 progress=not args.no_progress, tpr=args.tpr, f1_reject=args.f1_reject)
            res = evaluate(trained, task, device=args.device)
            rows.append({"method": method, "task": task.name, "split": split, "seconds": time.perf_counter() - t0,
                         "train_seconds": float(trained.meta.get("train_seconds", float("nan"))),
                         **{k: v for k, v in res.items() if isinstance(v, (int, float))}})
    summary = summarize(rows)
    where = args.task if args.known or args.outlier else f"{args.task}, {args.family} splits {','.join(map(str, splits))}"
    t = Table(title=f"{where}: mean ± std")
    for c in ("method", "splits", "AUROC", "OSCR", "accuracy", "train/split (s)", "wall (s)"):
        t.add_column(c, no_wrap=True)
    for s in summary:
        t.add_row(s["method"], str(s["n"]), *[f"{s[m]['mean']:.4f} ± {s[m]['std']:.4f}" for m in TABLE_METRICS],
                  f"{s['train_seconds']:.0f}", f"{s['seconds']:.0f}")
    Console(width=max(Console().width, 125)).print(t)
    prov = run_provenance(args, configs)
    if args.json:
        family = None if args.known or args.outlier else args.family
        _write_json(args.json, {"task": args.task, "family": family, **prov, "rows": rows, "summary": summary})
    if args.markdown:
        atomic_write_text(args.markdown, f"# {where}\n\n{markdown_table(summary)}\n\n{provenance_footer(prov)}\n")
    return 0


def cmd_jacobian(args) -> int:
    from osrkit.analysis.study import jacobian_study
    from osrkit.engine.pipeline import load_trained, task_from_checkpoint

    _setup(args)
    trained = load_trained(args.checkpoint)
    task = task_from_checkpoint(trained.meta, data_root=args.data_root)
    out_dir = args.out_dir or str(Path(args.checkpoint).with_suffix("")) + "-jacobian"
    summary = jacobian_study(trained, task, out_dir, n=args.n, part=args.representation, method=args.method,
                             probes=args.probes, unit=args.unit, progress=not args.no_progress,
                             estimator=args.estimator)
    print(json.dumps(summary, indent=2, default=float))
    console.print(f"wrote {out_dir}/jacobian_norms.npz, jacobian_summary.json, jacobian_norms.png")
    return 0


def cmd_jacobian_dynamics(args) -> int:
    from osrkit.analysis.study import jacobian_dynamics

    _setup(args)
    cfg = build_config(args, args.method, args.task)
    task = _make_task(args, args.split, seed=cfg.seed)
    console.print(task.summary())
    records = jacobian_dynamics(args.method, task, cfg, args.out_dir, n=args.n, part=args.representation,
                                jacobian=args.jacobian, probes=args.probes, unit=args.unit, resume=args.resume,
                                estimator=args.estimator,
                                device=args.device, progress=not args.no_progress)
    t = Table(title=f"{args.method}: Jacobian norm ({args.representation}) per epoch")
    for c in ("epoch", "known mean", "unknown mean", "difference", "AUROC of norm"):
        t.add_column(c)
    for r in records:
        t.add_row(str(r["epoch"]), f"{r['known_mean']:.4g}", f"{r['unknown_mean']:.4g}", f"{r['difference']:.4g}",
                  f"{r['auroc_of_norm']:.4f}")
    console.print(t)
    console.print(f"wrote {args.out_dir}/dynamics.json, dynamics.csv, dynamics.png and model.pt")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="osrkit", description="Open-set recognition toolkit",
                                epilog="Errors print one line; --debug (anywhere) shows the traceback instead.")
    sub = p.add_subparsers(dest="command")

    d = sub.add_parser("datasets", help="list data sets, their splits and whether their files are present")
    d.add_argument("--data-root")
    d.set_defaults(func=cmd_datasets)

    t = sub.add_parser("train", help="train one method on one split; writes a checkpoint")
    _add_task_args(t)
    _add_train_args(t)
    t.add_argument("--split", type=int, default=0, help="split index (default 0)")
    t.add_argument("--out", help="checkpoint path (default runs/<method>-<task>-seed<seed>-<hash>.pt)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from --out")
    t.add_argument("--force", action="store_true", help="train over an existing --out checkpoint")
    t.add_argument("--nproc", type=int, help="train with DDP on N local processes (launches torchrun; gloo on CPU, "
                                             "nccl on CUDA); `torchrun --nproc-per-node N -m osrkit train ...` too")
    t.add_argument("--sync-bn", action="store_true", help="DDP: BatchNorm statistics over all ranks (CUDA only); "
                                                          "default: per rank")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="scores and every metric for a checkpoint (JSON)")
    e.add_argument("checkpoint")
    e.add_argument("--data-root")
    e.add_argument("--download", action="store_true")
    e.add_argument("--json", help="write the metrics to this JSON file")
    e.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("run", help="train + eval over the splits of a task; prints mean ± std")
    _add_task_args(r)
    _add_train_args(r)
    r.add_argument("--splits", help="comma-separated split indices (default: all)")
    r.add_argument("--out-dir", help="keep checkpoints here (and resume from them)")
    r.add_argument("--json", help="write per-split rows and the summary to this JSON file")
    r.add_argument("--markdown", help="write the summary table to this Markdown file")
    r.add_argument("--force", action="store_true", help="overwrite existing --json/--markdown files")
    r.set_defaults(func=cmd_run)

    j = sub.add_parser("jacobian", help="Jacobian norms of known vs unknown test samples (NPZ, JSON, PNG)")
    j.add_argument("checkpoint")
    j.add_argument("--data-root")
    j.add_argument("--n", type=int, default=500, help="samples per side (default 500)")
    j.add_argument("--representation", choices=["embedding", "logits"], default="embedding")
    j.add_argument("--unit", action="store_true", help="differentiate f/||f|| instead of f")
    j.add_argument("--method", choices=["exact", "estimate"], default="exact")
    j.add_argument("--probes", type=int, default=8, help="passes (probes) for --method estimate")
    j.add_argument("--estimator", choices=["hutchpp", "vjp", "jvp"], default="hutchpp",
                   help="--method estimate: Hutch++ (default; accurate on trained networks) or plain vjp/jvp probes")
    j.add_argument("--out-dir", help="default: <checkpoint>-jacobian/")
    j.add_argument("--threads", type=int)
    j.add_argument("--no-progress", action="store_true")
    j.set_defaults(func=cmd_jacobian, device="cpu")

    jd = sub.add_parser("jacobian-dynamics", help="train a method and record known vs unknown Jacobian norms "
                                                  "after every epoch (JSON, CSV, PNG)")
    _add_task_args(jd)
    _add_train_args(jd)
    jd.add_argument("--split", type=int, default=0, help="split index (default 0)")
    jd.add_argument("--n", type=int, default=200, help="samples per side, the same at every epoch (default 200)")
    jd.add_argument("--representation", choices=["embedding", "logits"], default="embedding")
    jd.add_argument("--unit", action="store_true", help="differentiate f/||f|| instead of f")
    jd.add_argument("--jacobian", choices=["exact", "estimate"], default="exact")
    jd.add_argument("--probes", type=int, default=8, help="passes (probes) for --jacobian estimate")
    jd.add_argument("--estimator", choices=["hutchpp", "vjp", "jvp"], default="hutchpp")
    jd.add_argument("--out-dir", required=True, help="folder for model.pt, dynamics.json/.csv/.png")
    jd.add_argument("--resume", action="store_true", help="continue an interrupted run in --out-dir")
    jd.set_defaults(func=cmd_jacobian_dynamics)

    from osrkit.deploy.cli import add_deploy_parsers
    from osrkit.importers.cac import add_import_cac_parser
    from osrkit.results.cli import add_bench_parser, add_db_parser, add_table_parser

    add_deploy_parsers(sub)
    add_import_cac_parser(sub)
    add_bench_parser(sub)
    add_table_parser(sub)
    add_db_parser(sub)
    return p


# exit statuses: 2 = the command's input is wrong (a value, a file, missing data: fix the command);
# 1 = the work itself failed (training diverged, a database or disk error)
USAGE_ERRORS = (ValueError, FileNotFoundError, pickle.UnpicklingError)
RUN_ERRORS = (FloatingPointError, RuntimeError, OSError, sqlite3.Error)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    import warnings

    shown = warnings.showwarning

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("osrkit"):
            console.print(f"[yellow]warning:[/yellow] {_one_line(message)}", highlight=False, soft_wrap=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = one_line_warning
    try:
        parser = build_parser()  # reads the split lists for its help: a damaged splits file is reported too
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(["run", *argv])
        args.argv = argv
        return args.func(args)
    except (*USAGE_ERRORS, *RUN_ERRORS) as e:
        if debug:
            raise
        status = 2 if isinstance(e, USAGE_ERRORS) else 1
        console.print(f"[red]error:[/red] {_one_line(e)}", highlight=False, soft_wrap=True)  # never wrapped
        return status
    finally:
        warnings.showwarning = shown


def _one_line(e: BaseException) -> str:
    """The error's message on one line (KeyError-style quotes dropped)."""
    text = " ".join(str(e.args[0] if isinstance(e, KeyError) and e.args else e).split())
    return text or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
