"""Results store, benchmark grid, paper tables: round trip, skip-on-rerun, resume after SIGKILL,
concurrent writers, device plumbing, early validation, and table export with published numbers."""

from __future__ import annotations

import argparse
import csv
import io
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import osrkit
from osrkit.engine import pipeline
from osrkit.results import tables
from osrkit.results.cli import add_bench_parser, add_table_parser
from osrkit.results.grid import GridConfig, grid_kwargs, load_grid_file, plan_grid, run_grid
from osrkit.results.store import ResultsStore, RunRecord, config_hash, git_commit, rows_query, run_key

SRC = str(Path(osrkit.__file__).resolve().parents[1])


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def calls(monkeypatch):
    """Count fit_method / evaluate calls and record the device each got."""
    log = {"fit": [], "evaluate": []}
    real_fit, real_eval = pipeline.fit_method, pipeline.evaluate

    def fit(*a, **kw):
        log["fit"].append(kw.get("device"))
        return real_fit(*a, **kw)

    def evaluate(*a, **kw):
        log["evaluate"].append(kw.get("device"))
        return real_eval(*a, **kw)

    monkeypatch.setattr(pipeline, "fit_method", fit)
    monkeypatch.setattr(pipeline, "evaluate", evaluate)
    return log


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    add_bench_parser(sub)
    add_table_parser(sub)
    return p


def _record(method="softmax", task="mnist", split=0, seed=0, auroc=0.9, **kw) -> RunRecord:
    cfg = {"model": "vgg32", "epochs": 3, "seed": seed}
    return RunRecord(method=method, task=task, family="neal", split=split, seed=seed, config=cfg,
                     metrics={"auroc": auroc, "oscr": auroc - 0.1, "accuracy": 0.99, "f1_rule": "text"}, **kw)


# -- store ------------------------------------------------------------------------------------------------
def test_store_round_trip(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    rec = _record(wall_seconds=1.5, train_images_per_second=1000.0, device="cpu",
                  history=[{"epoch": 0, "val_loss": float("nan")}], extra={"note": 1})
    assert not store.has(rec.key)
    assert store.add(rec) is True
    assert store.add(_record()) is False  # same key: nothing written
    assert store.has(rec.key) and store.count() == 1
    (row,) = store.rows()
    assert row["key"] == rec.key == run_key("softmax", "mnist", "neal", 0, 0, rec.config)
    assert row["config"] == rec.config and row["metrics"] == rec.metrics
    assert row["history"] == [{"epoch": 0, "val_loss": None}]  # NaN stored as null
    assert (row["wall_seconds"], row["train_images_per_second"], row["device"]) == (1.5, 1000.0, "cpu")
    assert row["osrkit_version"] == osrkit.__version__ and row["git_commit"] == git_commit()
    assert row["created_at"] and row["extra"] == {"note": 1}
    store.add(_record(method="mls", split=1))
    assert [r["method"] for r in store.rows(method="mls")] == ["mls"]
    assert len(store.rows(method=["mls", "softmax"], split=[0, 1])) == 2
    with pytest.raises(ValueError, match="cannot filter"):
        store.rows(bogus=1)
    assert [r["split"] for r in store.rows(split="1")] == [1]  # an integer in text, as a CLI gives it
    sql, args = rows_query({"split": ["0", 1.0], "seed": "2"}, {})
    assert args == [0, 1, 2] and all(type(a) is int for a in args)  # PostgreSQL compares types strictly
    for bad in ("x", 1.5, True, object()):
        with pytest.raises(ValueError, match="filter split must be an integer"):
            store.rows(split=bad)
    with sqlite3.connect(tmp_path / "r.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_run_key_depends_on_every_part():
    cfg = {"epochs": 3, "lr": 0.1}
    base = run_key("softmax", "mnist", "neal", 0, 0, cfg)
    assert base == f"softmax|mnist|neal|0|0|{config_hash(cfg)}"
    assert config_hash({"lr": 0.1, "epochs": 3}) == config_hash(cfg)  # key order does not matter
    others = [run_key("mls", "mnist", "neal", 0, 0, cfg), run_key("softmax", "svhn", "neal", 0, 0, cfg),
              run_key("softmax", "mnist", "arpl", 0, 0, cfg), run_key("softmax", "mnist", "neal", 1, 0, cfg),
              run_key("softmax", "mnist", "neal", 0, 1, cfg), run_key("softmax", "mnist", "neal", 0, 0, {**cfg, "epochs": 4})]
    assert len({base, *others}) == 7


def test_claims(tmp_path):
    a, b = ResultsStore(tmp_path / "r.db"), ResultsStore(tmp_path / "r.db")
    assert a.claim("k") and a.claim("k")  # re-claiming one's own key is fine
    assert not b.claim("k")  # live claim of another owner
    a.release("k")
    assert b.claim("k")
    with sqlite3.connect(tmp_path / "r.db") as con:  # an owner that has exited: its claim is stale
        con.execute("UPDATE claims SET pid = ?, owner = 'gone' WHERE key = 'k'", (_dead_pid(),))
    assert a.claim("k")
    assert not b.claim("k", stale_after=3600)
    assert b.claim("k", stale_after=-1)  # silent longer than stale_after


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {src!r})
    from osrkit.results.store import ResultsStore, RunRecord
    db, who, lo, hi, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    store = ResultsStore(db, busy_timeout=30)
    while not __import__("os").path.exists(go):
        time.sleep(0.005)
    n = 0
    for i in range(lo, hi):
        rec = RunRecord(method="softmax", task="digits", family="neal", split=i, seed=0, config={{"epochs": 1}},
                        metrics={{"auroc": i / 100, "writer": who}})
        n += store.add(rec)
    print(n)
""")


def test_a_run_whose_network_another_driver_holds_is_put_off_not_waited_for(tmp_path):
    """mls of seed 0 needs the network another driver (another owner of the claim) is training: this driver
    trains seed 1 first, then comes back to seed 0 once the network's claim is free."""
    from osrkit.results.runner import TaskCache

    from rich.console import Console

    kw = dict(methods=["mls"], tasks=["digits"], splits=[0], seeds=[0, 1], epochs=1, db=tmp_path / "r.db",
              checkpoint_dir=tmp_path / "ck")
    seed0 = GridConfig(**kw).plan()[0]
    network = "network:" + seed0.checkpoint_name(TaskCache(None, False).get(seed0))
    other = ResultsStore(tmp_path / "r.db")
    assert other.claim(network)  # the other driver, training seed 0's network
    order = []

    def on_epoch(epoch, rec):
        order.append(len(order))
        other.release(network)  # it finishes while this driver trains seed 1

    import threading

    fallback = threading.Timer(20.0, other.release, [network])  # a driver that waits would not hang the test
    fallback.start()
    buf = io.StringIO()
    try:
        res = run_grid(GridConfig(**kw), progress=False, console=Console(file=buf, width=200), on_epoch=on_epoch)
    finally:
        fallback.cancel()
    rows = ResultsStore(tmp_path / "r.db").rows()
    assert res.trained == [r.key for r in reversed(GridConfig(**kw).plan())]  # seed 1, then seed 0
    assert sorted(r["seed"] for r in rows) == [0, 1] and order == [0, 1]
    assert "mls digits/neal0 seed 0: its network is being trained by another process: put off" in buf.getvalue()


def test_two_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    db, go = tmp_path / "r.db", tmp_path / "go"
    ResultsStore(db)
    script = WRITER.format(src=SRC)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(db), who, str(lo), str(hi), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who, lo, hi in (("a", 0, 60), ("b", 30, 90))]
    time.sleep(0.3)
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    inserted = [int(o[0]) for o in outs]
    rows = ResultsStore(db).rows()
    assert sum(inserted) == len(rows) == 90  # every insert attempt of an overlap key succeeded exactly once
    assert sorted(r["split"] for r in rows) == list(range(90))
    assert len({r["key"] for r in rows}) == 90
    assert all(r["metrics"]["auroc"] == r["split"] / 100 for r in rows)


# -- grid -----------------------------------------------------------------------------------------------
def test_rerun_skips_stored_runs_and_shares_training(tmp_path, calls):
    from rich.console import Console

    buf = io.StringIO()
    kw = dict(methods=["softmax", "mls"], tasks=["digits"], splits=[0, 1], seeds=[0], epochs=1,
              db=tmp_path / "r.db", checkpoint_dir=tmp_path / "ck")
    epochs_trained = []
    first = run_grid(GridConfig(**kw), progress=True, console=Console(file=buf, width=120),
                     on_epoch=lambda e, rec: epochs_trained.append(e))
    assert len(first.trained) == 4 and not first.skipped
    assert epochs_trained == [0, 0]  # softmax and mls train the identical network: trained once per split
    assert len(list((tmp_path / "ck").glob("*.pt"))) == 2 and len(calls["evaluate"]) == 4
    assert "4/4 runs" in buf.getvalue() and "AUROC" in buf.getvalue()
    rows = ResultsStore(tmp_path / "r.db").rows()
    assert len(rows) == 4 and {r["method"] for r in rows} == {"softmax", "mls"}
    mls0 = next(r for r in rows if r["method"] == "mls" and r["split"] == 0)
    assert mls0["extra"]["shared_training_with"] == "softmax"
    assert mls0["extra"]["checkpoint"] == next(r for r in rows if r["method"] == "softmax" and r["split"] == 0)["extra"]["checkpoint"]
    assert all(r["train_images_per_second"] > 0 and r["wall_seconds"] > 0 for r in rows)

    second = run_grid(GridConfig(**kw), progress=False)
    assert len(second.skipped) == 4 and not second.trained
    assert len(calls["fit"]) == 4 and len(calls["evaluate"]) == 4  # nothing trained or evaluated again
    assert ResultsStore(tmp_path / "r.db").count() == 4

    third = run_grid(GridConfig(**{**kw, "splits": [0], "epochs": 2}, share_training=False), progress=False,
                     on_epoch=lambda e, rec: epochs_trained.append(e))
    assert len(third.trained) == 2 and epochs_trained == [0, 0, 0, 1, 0, 1]  # another config; each its own network


def test_device_string_reaches_training_evaluation_and_row(tmp_path, calls):
    run_grid(GridConfig(["softmax"], ["digits"], [0], [0], epochs=1, db=tmp_path / "r.db", device="cpu:0",
                        checkpoint_dir=tmp_path / "ck"), progress=False)
    assert calls["fit"] == ["cpu:0"] and calls["evaluate"] == ["cpu:0"]
    (row,) = ResultsStore(tmp_path / "r.db").rows()
    assert row["device"] == "cpu:0"
    assert row["extra"]["machine"]["threads"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_clear_error_before_training(tmp_path, calls):
    p = _parser()
    args = p.parse_args(["bench", "--methods", "softmax", "--tasks", "digits", "--device", "cuda",
                         "--db", str(tmp_path / "r.db")])
    with pytest.raises(ValueError, match="no CUDA device is available"):
        args.func(args)
    assert calls["fit"] == [] and not (tmp_path / "r.db").exists()


@pytest.mark.parametrize("kw, msg", [
    ({"methods": ["softmax", "nope"]}, "unknown method.*nope.*available"),
    ({"tasks": ["digits", "imagenet"]}, "unknown or unsupported task.*imagenet"),
    ({"splits": [0, 7]}, r"split index.*\[7\].*0\.\.4"),
    ({"family": "bogus"}, "unknown split family"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"config": {"lrr": 0.1}}, "unknown config fields"),
])
def test_bad_grid_fails_before_any_training(tmp_path, calls, kw, msg):
    args = {"methods": ["softmax"], "tasks": ["digits"], "splits": [0], "seeds": [0], "epochs": 1, **kw}
    with pytest.raises(ValueError, match=msg):
        run_grid(GridConfig(**args, db=tmp_path / "r.db"), progress=False)
    assert calls["fit"] == []


def test_missing_data_fails_before_any_training(tmp_path, calls):
    with pytest.raises(FileNotFoundError, match="svhn"):
        run_grid(GridConfig(["softmax"], ["digits", "svhn"], [0], [0], epochs=1, db=tmp_path / "r.db",
                            data_root=tmp_path / "empty"), progress=False)
    assert calls["fit"] == []


# One epoch of 8 batches is at chance on purpose (the test is about the grid file and flags), so its divergence
# warning is expected here and silenced.
@pytest.mark.filterwarnings("ignore::osrkit.engine.train.DivergenceWarning")
def test_grid_file_and_flags(tmp_path, calls):
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent(f"""
        methods: [softmax]
        tasks: digits
        splits: [0, 1]
        seeds: 0
        epochs: 1
        db: {tmp_path / 'r.db'}
        checkpoint-dir: {tmp_path / 'ck'}
        config: {{batch_size: 128}}
    """))
    assert load_grid_file(grid)["checkpoint_dir"] == str(tmp_path / "ck")
    args = _parser().parse_args(["bench", "--config", str(grid), "--splits", "1", "--no-progress", "--threads", "1"])
    assert args.func(args) == 0
    (row,) = ResultsStore(tmp_path / "r.db").rows()
    assert row["split"] == 1 and row["config"]["batch_size"] == 128 and row["config"]["epochs"] == 1
    assert list((tmp_path / "ck").glob("*.pt"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [softmax]\nmodels: [x]\n")
    with pytest.raises(ValueError, match="unknown keys.*models"):
        load_grid_file(bad)


def test_method_config_changes_one_methods_runs_only(tmp_path):
    # a rotation head for m-OvR alone: the baseline's run (its key, its network) is the one a plain grid plans
    plain = {s.method: s for s in plan_grid(["softmax", "movr"], ["digits"], [0], [0], epochs=2)}
    extra = {s.method: s for s in plan_grid(["softmax", "movr"], ["digits"], [0], [0], epochs=2,
                                            method_config={"movr": {"method_params": {"rotation_weight": 0.1}}})}
    assert extra["softmax"].key == plain["softmax"].key
    assert extra["movr"].key != plain["movr"].key
    mp = extra["movr"].config["method_params"]
    assert mp["rotation_weight"] == 0.1 and mp["margin"] == plain["movr"].config["method_params"]["margin"]
    with pytest.raises(ValueError, match="method_config names 'cac'.*not one of the grid's methods"):
        plan_grid(["softmax"], ["digits"], [0], [0], method_config={"cac": {"lr": 0.1}})
    with pytest.raises(ValueError, match="method_config.movr must be a mapping"):
        plan_grid(["movr"], ["digits"], [0], [0], method_config={"movr": 0.1})
    grid = tmp_path / "grid.yaml"
    grid.write_text("methods: [softmax, movr]\ntasks: digits\nmethod_config: {movr: {epochs: 3}}\n")
    specs = GridConfig.from_mapping(grid_kwargs({}, grid)).plan()
    assert {s.method: s.config["epochs"] for s in specs if s.split == 0} == {"softmax": 15, "movr": 3}
    grid.write_text("methods: [movr]\ntasks: digits\nmethod_config: [movr]\n")
    with pytest.raises(ValueError, match="method_config` must map method names"):
        load_grid_file(grid)


def test_a_grid_pinning_a_later_added_parameter_at_its_default_keeps_the_old_run_key():
    # MNIST's m-OvR default has embedding_norm off; a grid pinning it on (with the target margin) plans the run that
    # a config written before the parameter existed plans: the parameter at its default is not in the config
    pinned = {"method_params": {"margin_on": "target", "embedding_norm": True, "rotation_weight": 0.0}}
    spec, = plan_grid(["movr"], ["mnist"], [0], [0], epochs=3, method_config={"movr": pinned})
    assert spec.config["method_params"] == {"temperature": 32.0, "margin": 0.5, "margin_on": "target",
                                            "score": "max_projection", "rotation_weight": 0.0}
    default, = plan_grid(["movr"], ["mnist"], [0], [0], epochs=3)
    assert default.config["method_params"]["embedding_norm"] is False and default.key != spec.key


KILLED = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {src!r})
    import torch
    torch.set_num_threads(1)
    from osrkit.results.grid import GridConfig, run_grid
    run_grid(GridConfig(["softmax"], ["digits"], [0], [0], epochs={epochs}, db={db!r}, checkpoint_dir={ck!r}),
             progress=False, on_epoch=lambda epoch, rec: time.sleep(30))  # holds after each epoch's checkpoint
""")


def test_resume_after_killed_run(tmp_path, calls):
    epochs, db, ck = 4, str(tmp_path / "r.db"), tmp_path / "ck"
    proc = subprocess.Popen([sys.executable, "-c", KILLED.format(src=SRC, epochs=epochs, db=db, ck=str(ck))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not list(ck.glob("*.pt")):
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint after 90 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (ckpt,) = ck.glob("*.pt")
    assert ResultsStore(db).count() == 0  # the killed run stored nothing (only its claim)
    from osrkit.engine.checkpoint import load_checkpoint

    assert load_checkpoint(ckpt)["train_state"]["epoch"] == 0

    epochs_here = []
    res = run_grid(GridConfig(["softmax"], ["digits"], [0], [0], epochs=epochs, db=db, checkpoint_dir=ck),
                   progress=False, on_epoch=lambda e, rec: epochs_here.append(e))
    assert len(res.trained) == 1 and calls["fit"] == ["cpu"]
    (row,) = ResultsStore(db).rows()
    assert row["extra"]["resumed_from_epoch"] == 1 and epochs_here == list(range(1, epochs))
    assert [h["epoch"] for h in row["history"]] == list(range(epochs))  # the history covers every epoch
    from osrkit.data.tasks import make_task

    spec = plan_grid(["softmax"], ["digits"], [0], [0], epochs=epochs)[0]
    assert ckpt.name == spec.checkpoint_name(make_task("digits", 0))

    fresh = run_grid(GridConfig(["softmax"], ["digits"], [0], [0], epochs=epochs, db=tmp_path / "fresh.db",
                                checkpoint_dir=tmp_path / "ck2"), progress=False)
    assert fresh.trained == res.trained  # same key
    (ref,) = ResultsStore(tmp_path / "fresh.db").rows()
    assert row["metrics"]["auroc"] == pytest.approx(ref["metrics"]["auroc"], abs=1e-12)  # resume is exact on CPU


# -- tables ---------------------------------------------------------------------------------------------
def _table_db(tmp_path) -> tuple[Path, dict]:
    store = ResultsStore(tmp_path / "r.db")
    vals = {("softmax", "mnist"): [0.91, 0.95, 0.97], ("mls", "mnist"): [0.93, 0.96], ("cac", "digits"): [0.8]}
    for (m, t), aurocs in vals.items():
        for s, a in enumerate(aurocs):
            store.add(_record(method=m, task=t, split=s, auroc=a))
    return tmp_path / "r.db", vals


def _ms(v: list[float]) -> tuple[float, float | None]:
    a = np.array(v)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else None)


def test_published_json_matches_spec_rows():
    pub = tables.load_published()
    (sm,) = [r for r in pub if r["protocol"] == "class-split" and r["task"] == "mnist" and r["osrkit_method"] == "softmax"]
    assert (sm["value"], sm["provenance"], sm["split_family"]) == (0.978, "recalled", "neal-own")
    assert len([r for r in pub if r["protocol"] == "class-split"]) == 36
    assert len([r for r in pub if r["protocol"] == "crosr-a"]) == 18
    assert len([r for r in pub if r["protocol"] == "crosr-b"]) == 24
    for r in pub:
        assert {"method", "metric", "task", "value", "source", "split_family", "provenance"} <= set(r)
        assert r["metric"] in ("auroc", "macro-f1") and 0 < r["value"] < 1
    tin = next(r for r in pub if r["task"] == "tinyimagenet" and r["osrkit_method"] == "openmax")
    assert tin["provenance"] == "recalled" and tin["value"] == 0.576


def test_table_export_markdown_csv_latex(tmp_path):
    db, vals = _table_db(tmp_path)
    rows = ResultsStore(db).rows()
    pub = tables.published_for("softmax", "mnist", "auroc")[0]
    assert pub["value"] == 0.978

    md = tables.render(rows, "markdown")
    for (m, t), v in vals.items():
        mean, std = _ms(v)
        cell = f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"
        line = next(l for l in md.splitlines() if l.startswith(f"| {m} | {t} |"))
        assert cell in line, (cell, line)
        assert f"| {len(v)} |" in line
    sm_line = next(l for l in md.splitlines() if l.startswith("| softmax | mnist |"))
    assert "0.978 [1]" in sm_line
    note = next(l for l in md.splitlines() if l.startswith("[1]"))
    assert pub["source"] in note and "split family neal-own" in note and "provenance recalled" in note
    mls_line = next(l for l in md.splitlines() if l.startswith("| mls | mnist |"))
    assert "0.993 [2]" in mls_line and "split family arpl" in md

    parsed = list(csv.DictReader(io.StringIO(tables.render(rows, "csv"))))
    for (m, t), v in vals.items():
        r = next(r for r in parsed if r["method"] == m and r["task"] == t)
        mean, std = _ms(v)
        assert float(r["auroc_mean"]) == pytest.approx(mean, abs=1e-12)
        assert (r["auroc_std"] == "") if std is None else float(r["auroc_std"]) == pytest.approx(std, abs=1e-12)
        assert int(r["runs"]) == len(v)
    sm = next(r for r in parsed if r["method"] == "softmax")
    assert float(sm["published_auroc"]) == 0.978 and sm["published_auroc_split_family"] == "neal-own"
    assert sm["published_auroc_source"] == pub["source"] and sm["published_auroc_provenance"].startswith("recalled")
    assert next(r for r in parsed if r["method"] == "cac")["published_auroc"] == ""  # no published digits numbers

    tex = tables.render(rows, "latex")
    mean, std = _ms(vals[("softmax", "mnist")])
    assert f"{mean:.4f} $\\pm$ {std:.4f}" in tex and "0.978$^{1}$" in tex
    assert r"\begin{tabular}" in tex and r"\bottomrule" in tex and "neal-own" in tex
    assert "±" not in tex and "—" not in tex


def test_table_cli(tmp_path):
    db, vals = _table_db(tmp_path)
    p = _parser()
    out = tmp_path / "t.csv"
    args = p.parse_args(["table", "--db", str(db), "--format", "csv", "--out", str(out), "--metrics", "auroc,oscr",
                         "--methods", "softmax"])
    assert args.func(args) == 0
    (r,) = list(csv.DictReader(out.open()))
    mean, _ = _ms([v - 0.1 for v in vals[("softmax", "mnist")]])
    assert float(r["oscr_mean"]) == pytest.approx(mean) and "accuracy_mean" not in r
    with pytest.raises(ValueError, match="not in the stored rows"):
        args = p.parse_args(["table", "--db", str(db), "--metrics", "auroc,nope"])
        args.func(args)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        args = p.parse_args(["table", "--db", str(tmp_path / "none.db")])
        args.func(args)
    assert not (tmp_path / "none.db").exists()


BENCH_GRIDS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("grid_*.yaml"))


@pytest.mark.parametrize("path", BENCH_GRIDS, ids=lambda p: p.name)
def test_every_benchmark_grid_file_plans(path):
    # the grid files that benchmarks/ documents must load and plan (names, splits, config fields) as shipped
    grid = GridConfig.from_mapping(grid_kwargs({"device": "cpu"}, path))
    specs = grid.plan()
    assert specs and {s.task for s in specs} == set(grid.tasks)


def test_the_cifar_gpu_grid_is_the_cpu_grid_on_another_device():
    # the same schedule for the same comparison, with its own database and checkpoint folder (bf16 is another recipe)
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    cpu, gpu = (load_grid_file(folder / f"grid_cifar10_jpeg_movr{s}.yaml") for s in ("", "_gpu"))
    differ = {k for k in cpu.keys() | gpu.keys() if cpu.get(k) != gpu.get(k)}
    assert differ == {"device", "db", "checkpoint_dir", "config"}
    # the CPU grid pins the fp32 its database holds; the GPU's "auto" is bf16 there: nothing else differs
    precision = {"precision", "memory_format"}
    assert {k: v for k, v in cpu["config"].items() if k not in precision} == \
        {k: v for k, v in gpu["config"].items() if k not in precision}
    assert (cpu["config"]["precision"], gpu["config"]["precision"]) == ("fp32", "auto")
    assert (cpu["device"], gpu["device"]) == ("cpu", "cuda")


def test_movr_tuning_pairs_readings_by_split_and_seed():
    # benchmarks/movr_tuning.py --pair: differences over the (split, seed) cells both readings hold, with the t
    # interval worked by hand: diffs 0.01, 0.03 -> mean 0.02, sd 0.01414, se 0.01, t(0.975, 1) = 12.7062
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from movr_tuning import paired_auroc

    def row(variant, split, seed, **aurocs):
        return {"variant": variant, "split": split, "seed": seed, "scores": {k: {"auroc": v} for k, v in aurocs.items()}}
    rows = [row("movr", 0, 0, max_cos=0.95), row("softmax", 0, 0, msp=0.94),
            row("movr", 1, 0, max_cos=0.97), row("softmax", 1, 0, msp=0.94),
            row("movr", 2, 0, max_cos=0.50)]  # no softmax partner: not a pair
    d = paired_auroc(rows, "movr/max_cos", "softmax/msp")
    assert d["n"] == 2 and d["wins"] == 2
    assert d["mean"] == pytest.approx(0.02)
    assert (d["low"], d["high"]) == pytest.approx((0.02 - 0.127062, 0.02 + 0.127062), abs=1e-5)
    with pytest.raises(SystemExit, match="no \\(split, seed\\) cell"):
        paired_auroc(rows, "movr/max_cos", "softmax/mls")


def test_movr_tuning_merge_pairs_by_known_set_not_by_position():
    # two runs listing the same known sets in another order: split 0 of one is split 1 of the other
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from movr_tuning import _with_known, paired_auroc

    def row(variant, split, auroc):
        return {"variant": variant, "split": split, "seed": 0, "scores": {"s": {"auroc": auroc}}}
    first = {"protocol": "mnist known sets 0,2,3;1,4,5, seeds 0", "rows": [row("a", 0, 0.90), row("a", 1, 0.80)]}
    second = {"protocol": "mnist known sets 1,4,5;0,2,3, seeds 0", "rows": [row("b", 0, 0.85), row("b", 1, 0.70)]}
    rows = _with_known(first) + _with_known(second)
    assert [r["known"] for r in rows] == [[0, 2, 3], [1, 4, 5], [1, 4, 5], [0, 2, 3]]
    d = paired_auroc(rows, "a/s", "b/s")  # {0,2,3}: 0.90 - 0.70; {1,4,5}: 0.80 - 0.85
    assert d["n"] == 2 and d["mean"] == pytest.approx((0.20 - 0.05) / 2) and d["wins"] == 1
    # one variant name trained with two recipes (e.g. vgg32 and vgg32-lite reports) is refused, not averaged
    from movr_tuning import _one_recipe_per_variant
    recipe = {"model": "vgg32", "epochs": 3, "schedule": "onecycle", "precision": "bf16"}
    lite = [{**r, "scores": {**r["scores"], "_recipe": {**recipe, "model": "vgg32-lite"}}} for r in rows[:2]]
    wide = [{**r, "scores": {**r["scores"], "_recipe": recipe}} for r in rows[:2]]
    assert _one_recipe_per_variant(lite) == lite
    with pytest.raises(SystemExit, match="different recipes"):
        _one_recipe_per_variant(lite + wide)


def test_jacobian_checkpoints_pairs_each_movr_network_with_its_softmax():
    # benchmarks/jacobian_checkpoints.py: Fig. 8 counts per m-OvR recipe, against the softmax network of the same
    # known set, seed and backbone only (a network without a partner is left out)
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from jacobian_checkpoints import fig8

    def row(recipe, known, seed, diff, db, auroc=0.9, model="vgg32-lite"):
        return {"recipe": recipe, "known": known, "seed": seed, "model": model, "auroc": auroc,
                "known_mean": 0.1, "unknown_mean": 0.1 + diff, "difference": diff, "davies_bouldin": db}
    rows = [row("softmax", [0, 1], 0, 0.10, 0.30), row("softmax", [0, 1], 1, 0.10, 0.30),
            row("movr margin target, T 32", [0, 1], 0, 0.20, 0.20),   # larger difference, lower DB
            row("movr margin target, T 32", [0, 1], 1, 0.05, 0.40),   # neither
            row("movr margin target, T 32", [2, 3], 0, 0.90, 0.01),   # no softmax partner: left out
            row("movr margin target, T 32", [0, 1], 0, 0.90, 0.01, model="vgg32")]  # other backbone: left out
    (claim,) = fig8(rows)
    assert (claim["pairs"], claim["difference_larger"], claim["db_lower"]) == (2, 1, 1)
    assert claim["mean_difference"] == pytest.approx(0.125) and claim["softmax_mean_difference"] == pytest.approx(0.10)
    assert claim["known_below_unknown"] == 2


def test_jacobian_checkpoints_labels_each_recipe():
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from jacobian_checkpoints import recipe_label

    def meta(method, **mp):
        return {"method": method, "osrkit_config": {"method_params": mp}}
    assert recipe_label(meta("softmax")) == "softmax"
    assert recipe_label(meta("movr", margin_on="target", temperature=32.0)) == "movr margin target, T 32"
    assert recipe_label(meta("movr", margin_on="all", temperature=32.0, embedding_norm=False)) == \
        "movr margin all, unnormalised"
    assert recipe_label(meta("movr", margin_on="target", temperature=16.0, rotation_weight=0.1)) == \
        "movr margin target, T 16, rotation 0.1"


def test_movr_ablation_variants_differ_from_the_base_only_by_their_extras():
    # benchmarks/movr_ablation.py: "base" is m-OvR without the paper's extras whatever MNIST's default holds (the
    # rotation head joined it in the twelfth session), and each variant switches on exactly what its name says
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from movr_ablation import ablation_config

    from osrkit.methods import default_config

    def built(name):
        return ablation_config(name).to_dict()
    base = built("base")
    assert base["augment"] == "none" and base["weight_decay"] == 5e-4
    assert base["method_params"]["rotation_weight"] == 0.0
    assert default_config("movr", "mnist").method_params["rotation_weight"] == 0.1  # so pinning it matters

    def changed(name):
        other = built(name)
        top = {k for k in base if k != "method_params" and base[k] != other[k]}
        inner = {k for k in base["method_params"] if base["method_params"][k] != other["method_params"][k]}
        return top | {f"method_params.{k}" for k in inner}
    assert changed("+ augmentation") == {"augment"}
    assert changed("+ weight decay 1e-3") == {"weight_decay"}
    assert changed("+ rotation head") == {"method_params.rotation_weight"}
    assert changed("final model (all three)") == {"augment", "weight_decay", "method_params.rotation_weight"}
    assert changed("embedding normalisation on") == {"method_params.embedding_norm"}
    assert changed("embedding normalisation off") == set()  # MNIST's default is already off
