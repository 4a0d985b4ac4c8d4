"""Issue 11 under the paper's schedule on one lent GPU: train the grids' networks with many `osrkit bench` drivers at
once (they share each grid's database and claim runs from it), grid after grid, within a time budget; then write each
finished grid's report (benchmarks/movr_mnist.py) and pack results, logs and checkpoints into --out.

    python benchmarks/device_movr_paper.py --out "$OUT" --budget-s 540 \\
        benchmarks/grid_mnist_movr_paper.yaml benchmarks/grid_cifar10_jpeg_movr_paper.yaml

A small network leaves a big GPU mostly idle in one process (each step is a few hundred short kernel launches), so
one driver per network runs them side by side; CUDA MPS, where the driver offers it, lets their kernels overlap.
A grid starts only if the time left looks enough (from the grid before it); at the budget's end unfinished drivers
are stopped and their checkpoints still come back (another machine can resume them: `osrkit bench` resumes).
The data must be on the machine: data/mnist-gz/*.gz (gzip of ../shared/data/MNIST/raw) and
data/cifar10-jpeg.tar.gz, unpacked here into the grids' data roots.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from osrkit.engine.identity import trainer_of  # noqa: E402
from osrkit.results.grid import GridConfig, grid_kwargs, iter_missing  # noqa: E402
from osrkit.results.runner import checkpoint_state  # noqa: E402
from osrkit.results.store import open_store  # noqa: E402

TRAINED = "softmax,movr"  # the networks (--methods); mls scores softmax's (the report, or --methods, adds its runs)
PART_BYTES = 15 * 2**20  # what comes back from the machine: files under 16 MiB


def unpack_data() -> None:
    """MNIST raw files from data/mnist-gz, CIFAR-10's JPEG folder from data/cifar10-jpeg.tar.gz, where carried."""
    raw = ROOT / "data/mnist-root/MNIST/raw"
    for gz in sorted((ROOT / "data/mnist-gz").glob("*.gz")):
        target = raw / gz.stem
        if not target.exists():
            raw.mkdir(parents=True, exist_ok=True)
            with gzip.open(gz) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    tar, folder = ROOT / "data/cifar10-jpeg.tar.gz", ROOT / "data/cifar10-jpeg-root"
    if tar.exists() and not (folder / "train").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar) as t:
            t.extractall(folder, filter="data")


def start_mps(log: dict) -> dict:
    """CUDA MPS so the drivers' kernels can overlap; the environment for the drivers ({} where MPS is not usable)."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        log["mps"] = "no nvidia-cuda-mps-control"
        return {}
    env = {"CUDA_MPS_PIPE_DIRECTORY": "/tmp/mps-pipe", "CUDA_MPS_LOG_DIRECTORY": "/tmp/mps-log"}
    for d in env.values():
        Path(d).mkdir(parents=True, exist_ok=True)
    full = {**os.environ, **env}
    try:
        started = subprocess.run([control, "-d"], env=full, timeout=20, capture_output=True, text=True)
        if started.returncode != 0 and "already running" not in started.stdout + started.stderr:
            raise RuntimeError(f"nvidia-cuda-mps-control -d: {(started.stdout + started.stderr).strip()}")
        probe = "import torch; x = torch.randn(256, 256, device='cuda'); print(float((x @ x).sum()))"
        subprocess.run([sys.executable, "-c", probe], env=full, check=True, timeout=60, capture_output=True)
    except Exception as e:  # noqa: BLE001 - any failure: run without MPS
        log["mps"] = f"not used: {type(e).__name__}: {e}"
        try:
            subprocess.run([control], input="quit\n", text=True, env=full, timeout=10)
        except Exception:  # noqa: BLE001
            pass
        return {}
    log["mps"] = "on"
    return env


def pending_runs(grid: dict, methods: list[str]) -> int:
    """The grid's runs of `methods` not yet stored in its database."""
    own = {m: v for m, v in (grid.get("method_config") or {}).items() if m in methods}  # plan_grid refuses others
    specs = GridConfig.from_mapping({**grid, "methods": methods, "method_config": own or None}).plan()
    db = str(grid["db"]) if "://" in str(grid["db"]) else ROOT / grid["db"]  # a PostgreSQL URL or a SQLite file
    if isinstance(db, Path) and not db.exists():
        return len(specs)
    return len(iter_missing(specs, open_store(str(db), create=False)))


def grid_progress(grid: dict, networks: int, since: float) -> float:
    """Share of the grid's training epochs done, read from the checkpoints written since its drivers started
    (grids may share a checkpoint folder)."""
    done = 0
    for ck in (ROOT / grid["checkpoint_dir"]).glob("*.pt"):
        try:
            if ck.stat().st_mtime >= since:
                done += min(checkpoint_state(ck)[0], grid["epochs"])
        except Exception:  # noqa: BLE001 - a file being replaced: counted next time
            pass
    return done / (networks * grid["epochs"])


def gpu_busy() -> str | None:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        return None


def run_grid_drivers(path: str, grid: dict, methods: list[str], env: dict, end: float, logs: Path,
                     summary: dict) -> bool:
    """One `osrkit bench` driver per run of `methods` not yet stored (a run scoring another's network waits for
    it, then scores it), until all finish or `end`; True where every run is stored."""
    runs, name = pending_runs(grid, methods), Path(path).stem
    total = len(grid["splits"]) * len(grid.get("seeds", [0])) * len({trainer_of(m) for m in methods})
    procs, started = [], time.time()
    for i in range(runs):
        cmd = [sys.executable, "-m", "osrkit", "bench", "--config", path, "--methods", ",".join(methods),
               "--threads", "1", "--no-progress"]
        procs.append(subprocess.Popen(cmd, stdout=open(logs / f"{name}-driver{i}.log", "w"),
                                      stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=ROOT))
        time.sleep(0.5)  # let each claim its run before the next looks
    t0, samples = time.time(), []
    while any(p.poll() is None for p in procs):
        if time.time() > end:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
            break
        time.sleep(10)
        samples.append({"s": round(time.time() - t0), "progress": round(grid_progress(grid, total, started), 4),
                        "gpu": gpu_busy()})
        print(name, samples[-1], flush=True)
    codes = [p.returncode for p in procs]
    ok = all(c == 0 for c in codes) and pending_runs(grid, methods) == 0
    summary["grids"][name] = {"seconds": round(time.time() - t0), "finished": ok, "exit_codes": codes,
                              "runs": runs, "samples": samples}
    return ok


def report(path: str, name: str, logs: Path, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "benchmarks/movr_mnist.py"), "--config", path, "--name", name, "--threads", "2"]
    return subprocess.Popen(cmd, stdout=open(logs / f"{name}-report.log", "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, **env}, cwd=ROOT)


def pack(out: Path, grids: list[tuple[str, dict]], logs: Path, summary: dict, checkpoints: bool = True) -> None:
    """results.tar.gz (databases, reports, logs, summary) and, unless not wanted, the checkpoints in parts under
    16 MiB."""
    (logs / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    files = set()  # each grid's SQLite database and the report named after it (<db stem>.json/.md), once
    for _, g in grids:
        if "://" not in str(g["db"]):
            db = ROOT / str(g["db"])
            files |= {f for f in {db, *(ROOT / "benchmarks/results").glob(f"{db.stem}.*")} if f.is_file()}
    with tarfile.open(out / "results.tar.gz", "w:gz") as t:
        for f in sorted(files):
            t.add(f, arcname=str(f.relative_to(ROOT)))
        t.add(logs, arcname="logs/device_movr_paper")
    if not checkpoints:
        return
    ckpt = out / "checkpoints.tar"
    with tarfile.open(ckpt, "w") as t:
        for d in sorted({ROOT / g["checkpoint_dir"] for _, g in grids}):  # grids may share a folder: each once
            if d.is_dir():
                t.add(d, arcname=str(d.relative_to(ROOT)))
    with open(ckpt, "rb") as src:
        for i, chunk in enumerate(iter(lambda: src.read(PART_BYTES), b"")):
            (out / f"checkpoints.tar.part{i}").write_bytes(chunk)
    ckpt.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grids", nargs="+", help="grid files, in the order to train them")
    ap.add_argument("--out", default=os.environ.get("OUT", "logs/device_movr_paper_out"))
    ap.add_argument("--budget-s", type=float, default=540.0, help="seconds for the whole script")
    ap.add_argument("--report-s", type=float, default=90.0, help="seconds kept at the end for reports and packing")
    ap.add_argument("--no-mps", action="store_true")
    ap.add_argument("--no-report", action="store_true", help="train only (write the reports later, elsewhere)")
    ap.add_argument("--methods", default=TRAINED, help=f"the grids' methods to run (default {TRAINED}); add mls to "
                                                       "score softmax's networks here too")
    ap.add_argument("--no-checkpoints", action="store_true", help="bring back databases and logs only")
    args = ap.parse_args()
    t_start = time.time()
    out, logs = Path(args.out), ROOT / "logs/device_movr_paper"
    out.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    summary: dict = {"grids": {}, "skipped": {}, "gpu": gpu_busy(), "command": " ".join(sys.argv)}
    unpack_data()
    src = str(ROOT / "src")  # the drivers and reports import osrkit from this checkout
    os.environ["PYTHONPATH"] = src + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    env = {} if args.no_mps else start_mps(summary)
    summary["setup_seconds"] = round(time.time() - t_start)
    train_end = t_start + args.budget_s - args.report_s
    grids = [(p, grid_kwargs({}, p)) for p in args.grids]
    reports, last_seconds = [], None
    for path, grid in grids:
        left = train_end - time.time()
        if last_seconds is not None and left < 0.8 * last_seconds + 30:
            summary["skipped"][path] = f"{left:.0f} s left, the grid before took {last_seconds:.0f} s"
            continue
        if run_grid_drivers(path, grid, args.methods.split(","), env, train_end, logs, summary) and not args.no_report:
            reports.append(report(path, Path(grid["db"]).stem, logs, env))
        last_seconds = summary["grids"][Path(path).stem]["seconds"]
    for p in reports:
        try:
            p.wait(timeout=max(1.0, t_start + args.budget_s - 30 - time.time()))
        except subprocess.TimeoutExpired:
            p.terminate()
    summary["report_exit_codes"] = [p.poll() for p in reports]
    summary["seconds"] = round(time.time() - t_start)
    print(json.dumps({k: v for k, v in summary.items() if k != "grids"}, indent=1), flush=True)
    for name, g in summary["grids"].items():
        print(name, {k: v for k, v in g.items() if k != "samples"}, flush=True)
    pack(out, grids, logs, summary, checkpoints=not args.no_checkpoints)


if __name__ == "__main__":
    main()
