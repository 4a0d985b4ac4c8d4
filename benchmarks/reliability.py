"""Fault injection: kill training and the grid at random moments, damage every kind of file, fill the disk.

    python benchmarks/reliability.py [--kills 10] [--seed 0]

1. SIGKILL during `osrkit train` (digits, 12 epochs) at `--kills` random moments; each killed run is resumed
   with `--resume` (again and again if it is killed before finishing); its final weights must equal an
   uninterrupted run's, tensor for tensor.
2. SIGKILL during `osrkit bench` (2 methods × 2 splits) at `--kills` random moments, each followed by a rerun;
   the database must end with exactly one row per key, with the same metrics as an uninterrupted grid.
3. Damaged files (truncated, one bit flipped, another format) for each kind osrkit reads: checkpoints, the
   splits JSON, the IDX data files, the outlier .npz, the SQLite results database: each must give one error
   line naming the file, with status 2, and leave every other file as it was.
4. A full disk during a checkpoint write (an injected ENOSPC in the middle of the write): the previous
   checkpoint must stay intact and resumable.
5. A malicious checkpoint (pickled code): refused, never run.
Writes benchmarks/results/reliability.{json,md}.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
CLI = [sys.executable, "-m", "osrkit.cli"]


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True, timeout=timeout)


def kill_after(args: list[str], delay: float) -> int:
    """Start the command, SIGKILL it after `delay` s (if still running); returns its exit code."""
    p = subprocess.Popen([*CLI, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
    return p.returncode


def weights(path: Path) -> dict:
    from osrkit.engine.checkpoint import load_checkpoint

    return load_checkpoint(path)["model"]


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_kills(work: Path, kills: int, rng: random.Random) -> dict:
    base = ["train", "--task", "digits", "--method", "cac", "--epochs", "12", "--no-progress"]
    t0 = time.perf_counter()
    ref = run([*base, "--out", str(work / "ref.pt")])
    assert ref.returncode == 0, ref.stderr
    wall = time.perf_counter() - t0
    reference = weights(work / "ref.pt")
    trials = []
    for i in range(kills):
        out = work / f"k{i}.pt"
        delay = rng.uniform(0.3, wall)
        code = kill_after([*base, "--out", str(out)], delay)
        resumes = 0
        while True:
            r = run([*base, "--out", str(out), "--resume"])
            resumes += 1
            if r.returncode == 0:
                break
            assert resumes < 5, r.stderr
        trials.append({"delay_s": round(delay, 2), "killed": code == -signal.SIGKILL, "resumes": resumes,
                       "identical": same_weights(weights(out), reference)})
    return {"reference_wall_s": wall, "trials": trials}


def bench_kills(work: Path, kills: int, rng: random.Random) -> dict:
    from osrkit.results.store import ResultsStore

    def grid(db: Path) -> list[str]:
        return ["bench", "--methods", "softmax,cac", "--tasks", "digits", "--splits", "0,1", "--epochs", "8",
                "--db", str(db), "--no-progress"]

    t0 = time.perf_counter()
    ref = run(grid(work / "ref.db"))
    assert ref.returncode == 0, ref.stderr
    wall = time.perf_counter() - t0
    want = {r["key"]: r["metrics"]["auroc"] for r in ResultsStore(work / "ref.db").rows()}
    trials = []
    for i in range(kills):
        db = work / f"g{i}.db"
        delay = rng.uniform(0.3, wall)
        code = kill_after(grid(db), delay)
        r = run(grid(db))
        assert r.returncode == 0, r.stderr
        rows = ResultsStore(db).rows()
        keys = [x["key"] for x in rows]
        trials.append({"delay_s": round(delay, 2), "killed": code == -signal.SIGKILL, "rows": len(rows),
                       "one_row_per_key": sorted(keys) == sorted(want),
                       "same_metrics": {x["key"]: x["metrics"]["auroc"] for x in rows} == want})
    return {"reference_wall_s": wall, "keys": len(want), "trials": trials}


def damage(path: Path, how: str, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[:len(data) // 3]
    elif how == "bit-flipped":
        data[len(data) // 2 if offset is None else offset] ^= 0x10
    else:
        data = bytearray(b"a text file, not the expected format\n" * 3)
    path.write_bytes(bytes(data))


def _digest(folder: Path, skip: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and p != skip and not p.is_symlink()}


def file_faults(work: Path) -> list[dict]:
    """(kind, how) → the command's status, its error line, whether it names the file, other files kept."""
    ck = work / "ck.pt"
    assert run(["train", "--task", "digits", "--epochs", "2", "--no-progress", "--out", str(ck)]).returncode == 0
    db = work / "r.db"
    assert run(["bench", "--methods", "softmax", "--tasks", "digits", "--splits", "0", "--epochs", "1",
                "--db", str(db), "--no-progress"]).returncode == 0
    root = work / "data"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for f in (DATA / "MNIST" / "raw").iterdir():
        shutil.copy(f, root / "MNIST" / "raw" / f.name)
    shutil.copy(DATA / "omniglot.npz", root / "omniglot.npz")
    from importlib import resources

    splits = work / "splits.json"
    splits.write_bytes(resources.files("osrkit.data").joinpath("splits.json").read_bytes())
    cases = {
        "checkpoint": (ck, None, ["eval", str(ck)]),
        "splits JSON": (splits, 0, ["run", "--task", "digits", "--splits", "0", "--epochs", "1", "--no-progress"]),
        "IDX images": (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte", None,
                       ["run", "--task", "mnist", "--splits", "0", "--epochs", "1", "--model", "small",
                        "--data-root", str(root), "--no-progress"]),
        "IDX labels": (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", None,
                       ["run", "--task", "mnist", "--splits", "0", "--epochs", "1", "--model", "small",
                        "--data-root", str(root), "--no-progress"]),
        "outlier .npz": (root / "omniglot.npz", None, ["run", "--task", "mnist", "--outlier", "omniglot", "--epochs",
                                                       "1", "--model", "small", "--data-root", str(root), "--no-progress"]),
        "SQLite database": (db, 20, ["table", "--db", str(db)]),
    }
    out = []
    for kind, (path, offset, argv) in cases.items():
        for how in ("truncated", "bit-flipped", "wrong format"):
            keep = path.read_bytes()
            before = _digest(work, path)
            damage(path, how, offset)
            env = {**ENV, "OSRKIT_SPLITS": str(splits)} if kind == "splits JSON" else ENV
            t0 = time.perf_counter()
            r = subprocess.run([*CLI, *argv], env=env, capture_output=True, text=True, timeout=300)
            errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
            out.append({"file": kind, "damage": how, "status": r.returncode, "seconds": round(time.perf_counter() - t0, 1),
                        "one_error_line": len(errors) == 1, "names_file": bool(errors) and str(path) in errors[0],
                        "others_kept": _digest(work, path) == before, "message": errors[0][:220] if errors else r.stderr[-300:]})
            path.write_bytes(keep)
    return out


def full_disk(work: Path) -> dict:
    """An ENOSPC injected in the middle of the third epoch's checkpoint write (in-process)."""
    from osrkit.data.tasks import make_task
    from osrkit.engine import checkpoint as C
    from osrkit.engine.pipeline import fit_method
    from osrkit.methods import default_config

    ck = work / "disk.pt"
    task = make_task("digits", split=0)
    cfg = default_config("softmax", "digits").replace(epochs=4)
    real = C.atomic_write_bytes
    calls = {"n": 0}

    def failing(path, writer):
        calls["n"] += 1
        if calls["n"] == 3:
            def half(f):
                f.write(b"\0" * 1000)
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return real(path, half)
        return real(path, writer)

    C.atomic_write_bytes = failing
    try:
        fit_method("softmax", task, cfg, checkpoint=ck, progress=False)
        raised = False
    except OSError:
        raised = True
    finally:
        C.atomic_write_bytes = real
    state = C.load_checkpoint(ck)
    intact_epoch = int(state["train_state"]["epoch"])
    fit_method("softmax", task, cfg, checkpoint=ck, resume=True, progress=False)
    ref = work / "disk_ref.pt"
    fit_method("softmax", task, cfg, checkpoint=ref, progress=False)
    leftovers = [p.name for p in work.iterdir() if p.name.startswith(".disk.pt.")]
    return {"write_failed": raised, "previous_checkpoint_epoch": intact_epoch + 1, "resumed_identical":
            same_weights(weights(ck), weights(ref)), "temporary_files_left": leftovers}


def malicious(work: Path) -> dict:
    import torch

    marker = work / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = work / "evil.pt"
    torch.save({"format": "osrkit-checkpoint", "model": Payload()}, evil)
    r = run(["eval", str(evil)])
    return {"status": r.returncode, "payload_ran": marker.exists(), "message": r.stderr.strip().splitlines()[-1][:200]}


def render(res: dict, h: dict) -> str:
    tk, bk, ff, fd, mal = res["train_kills"], res["bench_kills"], res["file_faults"], res["full_disk"], res["malicious"]
    t_ok = sum(t["identical"] for t in tk["trials"])
    b_ok = sum(t["one_row_per_key"] and t["same_metrics"] for t in bk["trials"])
    f_ok = sum(f["status"] == 2 and f["one_error_line"] and f["names_file"] and f["others_kept"] for f in ff)
    lines = [
        "# Fault injection: kills, damaged files, a full disk, a malicious checkpoint", "",
        "| fault | injected | survived | lost |", "|---|---|---|---|",
        f"| SIGKILL during `osrkit train` (digits, CAC, 12 epochs), then `--resume` | {len(tk['trials'])} | {t_ok} "
        f"(final weights identical to an uninterrupted run) | {len(tk['trials']) - t_ok} |",
        f"| SIGKILL during `osrkit bench` (softmax, cac × 2 splits), then a rerun | {len(bk['trials'])} | {b_ok} "
        f"(exactly one row per key, metrics equal to an uninterrupted grid) | {len(bk['trials']) - b_ok} |",
        f"| damaged files (5 kinds × truncated, bit-flipped, wrong format) | {len(ff)} | {f_ok} (one error line naming "
        f"the file, status 2, every other file unchanged) | {len(ff) - f_ok} |",
        f"| disk full during a checkpoint write (injected ENOSPC) | 1 | {int(fd['write_failed'] and fd['resumed_identical'] and not fd['temporary_files_left'])} "
        f"(previous checkpoint, epoch {fd['previous_checkpoint_epoch']}, intact; resume identical) | 0 |",
        f"| malicious checkpoint (pickled `os.system`) | 1 | {int(mal['status'] == 2 and not mal['payload_ran'])} "
        f"(refused, never run) | 0 |", "",
        "Kill moments (s after start): train " + ", ".join(str(t["delay_s"]) for t in tk["trials"])
        + f" (an uninterrupted run takes {tk['reference_wall_s']:.1f} s, process start included); bench "
        + ", ".join(str(t["delay_s"]) for t in bk["trials"]) + f" (uninterrupted {bk['reference_wall_s']:.1f} s). "
        "A kill before the first checkpoint leaves nothing, and the rerun starts over; later kills resume.", "",
        "## Damaged files", "", "| file | damage | status | error line |", "|---|---|---|---|"]
    for f in ff:
        lines.append(f"| {f['file']} | {f['damage']} | {f['status']} | {f['message'].replace('|', '/')} |")
    lines += ["", "Detection: checkpoints carry a SHA-256 of their content (any flipped bit); MNIST's IDX files are "
              "checked against their header, size and canonical md5; .npz members against their CRC-32; SQLite "
              "reports a malformed file; the splits JSON is parsed and checked for its schema. A flipped bit inside "
              "a number of a user's own splits JSON that leaves valid JSON cannot be detected (no checksum there).",
              "", f"Command: `{h['command']}`; date {h['date']}; {h['machine']['platform']}, {h['machine']['cpu_count']} "
              f"cores, torch {h['machine']['torch']}; commit {h['git_commit']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10, help="kills per command (train and bench)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="osrkit-faults-") as tmp:
        work = Path(tmp)
        res = {}
        for name, fn in (("train_kills", lambda: train_kills(work / "t", args.kills, rng)),
                         ("bench_kills", lambda: bench_kills(work / "b", args.kills, rng)),
                         ("file_faults", lambda: file_faults(work / "f")), ("full_disk", lambda: full_disk(work / "d")),
                         ("malicious", lambda: malicious(work / "m"))):
            d = {"t": work / "t", "b": work / "b", "f": work / "f", "d": work / "d", "m": work / "m"}
            for p in d.values():
                p.mkdir(exist_ok=True)
            t0 = time.perf_counter()
            res[name] = fn()
            print(f"{name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    h = header()
    write("reliability", h | res, render(res, h))
    print(render(res, h))


if __name__ == "__main__":
    main()
