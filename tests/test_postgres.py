"""The PostgreSQL results store against a real server: the SQLite store's semantics (keys, skips, filters,
claims), copies both ways, `osrkit table` and `osrkit db copy` on a URL, and concurrent writers and bench
drivers that neither lose nor duplicate a row."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import osrkit
from osrkit.cli import main
from osrkit.results.store import ResultsStore, RunRecord, copy_rows, open_store

SRC = str(Path(osrkit.__file__).resolve().parents[1])


def _rec(method="softmax", split=0, auroc=0.9, **kw) -> RunRecord:
    return RunRecord(method=method, task="mnist", family="neal", split=split, seed=0,
                     config={"model": "vgg32", "epochs": 3}, metrics={"auroc": auroc, "oscr": auroc - 0.1, "accuracy": 0.99, "fpr95": float("nan")},
                     history=[{"epoch": 0, "train_loss": 1.5}], extra={"roc": {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.9, 1.0]}}, **kw)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return ResultsStore(tmp_path / "r.db")
    return open_store(request.getfixturevalue("pg_url"))


def test_both_back_ends_store_skip_filter_and_parse_alike(store):
    assert store.add(_rec()) and not store.add(_rec(auroc=0.1))  # the second has the same key: not written
    store.add(_rec(method="mls", split=1, auroc=0.8))
    store.add(_rec(method="cac", split=2, auroc=0.7))
    assert store.count() == 3 and store.has(_rec().key) and not store.has("nope")
    assert [r["method"] for r in store.rows()] == ["softmax", "mls", "cac"]  # oldest first
    assert [r["split"] for r in store.rows(method=["mls", "cac"])] == [1, 2]
    (row,) = store.rows(method="softmax", split=0)
    assert row["metrics"]["auroc"] == 0.9 and row["metrics"]["fpr95"] is None  # NaN is stored as null
    assert row["history"] == [{"epoch": 0, "train_loss": 1.5}] and row["extra"]["roc"]["tpr"] == [0.0, 0.9, 1.0]
    assert row["key"] == _rec().key and row["config"] == {"model": "vgg32", "epochs": 3}
    with pytest.raises(ValueError, match="cannot filter on 'metrics'"):
        store.rows(metrics=1)


def _elsewhere(store):
    """Another handle on the same database with another owner, as a second process would have."""
    other = copy.copy(store)
    other.owner = "another-process"
    return other


def test_claims_expire_only_when_their_holder_is_gone(store):
    other = _elsewhere(store)
    assert store.claim("k") and store.claim("k")  # a holder may claim again
    assert not other.claim("k")  # its holder (this process) is alive and beating: not taken
    assert other.claim("k", stale_after=-1)  # silent longer than stale_after: taken over
    store.release("k")  # no longer the holder: releases nothing
    assert not store.claim("k")
    assert store.add(_rec()) and not other.claim(_rec().key)  # a stored key cannot be claimed

    # a holder on this host whose process has exited is gone at once, however recent its last beat
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {SRC!r})
        from osrkit.results.store import open_store
        assert open_store({str(getattr(store, 'url', None) or store.path)!r}).claim("dead")
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert not store.claim("k", stale_after=3600)  # the live holder's claim (other, this process) stays
    assert other.claim("dead", stale_after=3600)


def test_copy_both_ways_and_the_cli_reads_a_url(pg_url, tmp_path, capsys):
    lite = ResultsStore(tmp_path / "a.db")
    for s, a in enumerate([0.91, 0.95, 0.97]):
        lite.add(_rec(split=s, auroc=a))
    assert main(["db", "copy", str(tmp_path / "a.db"), pg_url]) == 0
    pg = open_store(pg_url)
    assert pg.count() == 3
    assert [r["created_at"] for r in pg.rows()] == [r["created_at"] for r in lite.rows()]  # copied as they are
    assert copy_rows(lite, pg) == (0, 3)  # keys already there are left alone
    pg.add(_rec(method="mls", auroc=0.5))
    assert copy_rows(pg, ResultsStore(tmp_path / "b.db")) == (4, 0)
    capsys.readouterr()
    assert main(["table", "--db", pg_url, "--methods", "softmax", "--metrics", "auroc"]) == 0
    out = capsys.readouterr().out
    assert "| softmax | mnist |" in out and "0.9433 ± 0.0306" in out  # mean ± sample std of the three
    assert main(["report", "--db", pg_url, "--out", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "softmax" in html and "mls" in html and "data:image/png;base64," in html


def test_an_unreachable_server_is_a_clear_error(capsys):
    url = "postgresql://nobody:secret@127.0.0.1:1/none"
    assert main(["table", "--db", url]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "cannot connect to the results database postgresql://nobody:***@127.0.0.1:1/none" in err
    assert "secret" not in err


WRITER = textwrap.dedent("""
    import sys; sys.path.insert(0, {src!r})
    from osrkit.results.store import RunRecord, open_store
    store = open_store({url!r})
    for i in range({n}):
        split = (i * 7 + {w}) % {keys}  # writers overlap on most keys
        store.add(RunRecord(method="softmax", task="mnist", family="neal", split=split, seed=0,
                            config={{"epochs": 1}}, metrics={{"auroc": split / 100}}))
""")


def test_concurrent_writers_neither_lose_nor_duplicate_rows(pg_url):
    keys, n = 40, 40
    procs = [subprocess.Popen([sys.executable, "-c", WRITER.format(src=SRC, url=pg_url, n=n, w=w, keys=keys)])
             for w in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    rows = open_store(pg_url).rows()
    assert len(rows) == keys and len({r["key"] for r in rows}) == keys
    assert sorted(r["split"] for r in rows) == list(range(keys))
    assert all(math.isclose(r["metrics"]["auroc"], r["split"] / 100) for r in rows)


def test_two_bench_drivers_on_one_database(pg_url, tmp_path):
    cmd = [sys.executable, "-m", "osrkit", "bench", "--methods", "softmax,cac", "--tasks", "digits", "--splits",
           "0,1", "--epochs", "2", "--db", pg_url, "--checkpoint-dir", str(tmp_path / "ck"), "--no-progress",
           "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    rows = open_store(pg_url).rows()
    assert len(rows) == 4 and len({r["key"] for r in rows}) == 4
    assert {(r["method"], r["split"]) for r in rows} == {(m, s) for m in ("softmax", "cac") for s in (0, 1)}
    trained = [int(o[1].split(" runs: ")[1].split(" trained")[0]) for o in outs]
    assert sum(trained) == 4  # each run trained by exactly one of the two drivers


def test_one_heartbeat_keeps_many_claims_alive(store):
    other = _elsewhere(store)
    keys = [f"k{i}" for i in range(510)]  # more than SQLite's bound-parameter chunk
    assert all(store.claim(k) for k in keys)
    time.sleep(2.0)
    assert other.claim("k0", stale_after=1.5)  # silent for 2 s: stale, taken over
    t0 = time.monotonic()
    store.heartbeat(keys)  # beats every claim it still holds, in one write (k0 is other's now)
    assert not any(other.claim(k, stale_after=1.5) for k in ("k1", "k250", "k499", "k500", "k508"))  # both chunks
    assert time.monotonic() - t0 < 1.5  # (so each claim above was judged within 1.5 s of the beat)
    assert store.claim("k509") and not store.claim("k0", stale_after=1.5)


def test_passwords_never_reach_messages_or_paths():
    from osrkit.results.postgres import PostgresStore, redact

    assert redact("postgresql://me:secret@db:5432/osr") == "postgresql://me:***@db:5432/osr"
    assert redact("postgresql://me@db/osr?sslmode=require&password=secret") == \
        "postgresql://me@db/osr?sslmode=require&password=***"
    store = PostgresStore.__new__(PostgresStore)  # no server needed: only the URL is read
    for url, name in (("postgresql://u:secret@host:5432", "postgres"), ("postgresql://u:secret@host:5432/grid", "grid")):
        store.url = url
        assert store.default_checkpoint_dir() == Path("osrkit-checkpoints") / name


DRIVER = textwrap.dedent("""
    import sys; sys.path.insert(0, {src!r})
    import torch; torch.set_num_threads(1)
    from osrkit.results.grid import GridConfig, run_grid
    run_grid(GridConfig([{method!r}], ["digits"], [0], [0], epochs=3, db={db!r}, checkpoint_dir={ck!r}),
             progress=False)
""")


def test_two_drivers_running_methods_of_one_trainer_train_the_network_once(tmp_path):
    """softmax in one driver, mls in another: one network, one file; one driver trains it, the other waits
    for the network's claim and reuses it (before the claim, both trained it into the same file at once)."""
    db, ck = str(tmp_path / "r.db"), str(tmp_path / "ck")
    procs = [subprocess.Popen([sys.executable, "-c", DRIVER.format(src=SRC, method=m, db=db, ck=ck)],
                              stderr=subprocess.PIPE, text=True) for m in ("softmax", "mls")]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-1500:] for e in errs]
    rows = ResultsStore(db).rows()
    assert sorted(r["method"] for r in rows) == ["mls", "softmax"]
    assert len({r["extra"]["checkpoint"] for r in rows}) == 1 and len(list(Path(ck).glob("*.pt"))) == 1
    reused = [r for r in rows if r["extra"].get("shared_training_with")]
    assert len(reused) == 1 and reused[0]["extra"]["resumed_from_epoch"] == 3  # trained once, then reused
