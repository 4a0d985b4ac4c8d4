"""Results stores: one row per (method, task, family, split, seed, config) run, in SQLite or PostgreSQL.

`open_store(db)` returns the back end for a file path (`ResultsStore`, SQLite) or a `postgresql://` URL
(`osrkit.results.postgres.PostgresStore`); both have the same schema, keys, methods and semantics.

Why SQLite: a benchmark grid may run for days, in several processes, and be interrupted; rows must
survive crashes, never be duplicated, and be queryable for tables. Every write is a short
`BEGIN IMMEDIATE` transaction on a WAL-mode database with a busy timeout, and rows are inserted with
`ON CONFLICT(key) DO NOTHING`, so concurrent writers neither lose nor duplicate rows.

An optional `claims` table lets several processes share one grid: a process claims a key before
training it; a claim whose owner is dead (same host) or silent for `stale_after` seconds is taken over.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import socket
import sqlite3
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import osrkit

SCHEMA_VERSION = 1
DEFAULT_DB = "osrkit-results.db"
BUSY_TIMEOUT_S = 60.0
HEARTBEAT_S = 30.0  # a running claim's heartbeat, from a thread, whatever an epoch lasts
CLAIM_LIFETIME_S = 10 * HEARTBEAT_S  # silent this long (ten missed beats): the claim is taken over

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    method TEXT NOT NULL,
    task TEXT NOT NULL,
    family TEXT NOT NULL,
    split INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    wall_seconds REAL,
    train_images_per_second REAL,
    osrkit_version TEXT,
    git_commit TEXT,
    device TEXT,
    created_at TEXT NOT NULL,
    history TEXT,
    extra TEXT
);
CREATE INDEX IF NOT EXISTS runs_method_task ON runs (method, task, family);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL
);
"""

JSON_COLUMNS = ("config", "metrics", "history", "extra")
FILTER_COLUMNS = ("key", "method", "task", "family", "split", "seed", "device", "git_commit", "osrkit_version")
INTEGER_FILTERS = ("split", "seed")


def _as_int(col: str, value: Any) -> int:
    """An integer filter value ("3" and 3 alike; not 3.5, True or "x"), so both back ends match the same rows."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"filter {col} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"filter {col} must be an integer, got {value!r}") from None


def config_hash(config: Mapping[str, Any]) -> str:
    """Short, stable hash of a config dict (canonical JSON), so equal settings give equal keys."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_key(method: str, task: str, family: str, split: int, seed: int, config: Mapping[str, Any]) -> str:
    """The identity of a run: `method|task|family|split|seed|config-hash`."""
    return f"{method}|{task}|{family}|{int(split)}|{int(seed)}|{config_hash(config)}"


def _git_dir(start: Path) -> Path | None:
    """The .git directory of the repository holding `start` (a .git file means a worktree)."""
    for d in [start, *start.parents]:
        g = d / ".git"
        if g.is_dir():
            return g
        if g.is_file():
            text = g.read_text().strip()
            if text.startswith("gitdir:"):
                p = Path(text.split(":", 1)[1].strip())
                return p if p.is_absolute() else (d / p).resolve()
    return None


def _read_ref(git_dir: Path, ref: str) -> str | None:
    """A ref's commit from loose refs or packed-refs (worktrees share refs via `commondir`)."""
    dirs = [git_dir]
    common = git_dir / "commondir"
    if common.is_file():
        c = Path(common.read_text().strip())
        dirs.append(c if c.is_absolute() else (git_dir / c).resolve())
    for d in dirs:
        loose = d / ref
        if loose.is_file():
            return loose.read_text().strip()
        packed = d / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    return None


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD commit of the repository the osrkit package lives in; "unknown" when not in one.

    Reads .git directly (no git binary needed, nothing written); falls back to `git rev-parse HEAD`.
    """
    pkg = Path(osrkit.__file__).resolve().parent
    try:
        gd = _git_dir(pkg)
        if gd is not None:
            head = (gd / "HEAD").read_text().strip()
            sha = _read_ref(gd, head[4:].strip()) if head.startswith("ref:") else head
            if sha and len(sha) == 40:
                return sha
    except OSError:
        pass
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=pkg, text=True,
                                       stderr=subprocess.DEVNULL, timeout=10).strip() or "unknown"
    except Exception:
        return "unknown"


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _finite_or_none(x: Any) -> Any:
    """NaN/inf are not JSON; store them as null."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _dumps(obj: Any) -> str:
    def clean(o):
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if hasattr(o, "item") and callable(o.item):  # numpy / torch scalars
            o = o.item()
        return _finite_or_none(o)

    return json.dumps(clean(obj), sort_keys=True, default=str)


@dataclass
class RunRecord:
    """One stored run. `config` is TrainConfig.to_dict(); `metrics` is everything evaluate() returned."""

    method: str
    task: str
    family: str
    split: int
    seed: int
    config: dict[str, Any]
    metrics: dict[str, Any]
    wall_seconds: float | None = None
    train_images_per_second: float | None = None
    device: str = "cpu"
    history: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    osrkit_version: str = field(default_factory=lambda: osrkit.__version__)
    git_commit: str = field(default_factory=git_commit)
    created_at: str = field(default_factory=_now_iso)
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            self.key = run_key(self.method, self.task, self.family, self.split, self.seed, self.config)

    def to_db(self) -> dict[str, Any]:
        d = asdict(self)
        for c in JSON_COLUMNS:
            d[c] = _dumps(d[c])
        return d


class ResultsStore:
    """A SQLite results database file. Opens a short-lived connection per operation (safe across fork)."""

    def __init__(self, path: str | os.PathLike, busy_timeout: float = BUSY_TIMEOUT_S, create: bool = True):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if not create and not self.path.exists():
            raise FileNotFoundError(f"results database {self.path} does not exist (run `osrkit bench --db {self.path}` first)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    def __str__(self) -> str:
        return str(self.path)

    def default_checkpoint_dir(self) -> Path:
        """Where a grid on this store keeps its checkpoints unless told: `<db stem>-checkpoints/` beside it."""
        return self.path.parent / f"{self.path.stem}-checkpoints"

    # -- connections and transactions -------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return con

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A `BEGIN IMMEDIATE` transaction: takes the write lock up front (waits up to busy_timeout)."""
        with self._named_errors():
            con = self._connect()
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            finally:
                con.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._named_errors():
            con = self._connect()
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def _named_errors(self) -> Iterator[None]:
        """A damaged or foreign database file becomes an error that names it (locks and I/O errors pass)."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            if type(e) is not sqlite3.DatabaseError:  # OperationalError (locked, busy), IntegrityError, ...
                raise
            raise ValueError(f"{self.path} is not a readable results database ({e}): restore it from a backup or "
                             "pass another --db") from e

    def _init_schema(self) -> None:
        deadline = time.monotonic() + self.busy_timeout
        while True:  # switching to WAL needs a moment of exclusive access; retry if another process holds it
            try:
                with self._read() as con:
                    if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        con.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with self._write() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ValueError(f"{self.path} was written by a newer osrkit (schema {version} > {SCHEMA_VERSION})")
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                con.execute(stmt)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- runs --------------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        with self._read() as con:
            return con.execute("SELECT 1 FROM runs WHERE key = ?", (key,)).fetchone() is not None

    def keys(self) -> set[str]:
        with self._read() as con:
            return {r[0] for r in con.execute("SELECT key FROM runs")}

    def add(self, row: RunRecord | Mapping[str, Any]) -> bool:
        """Insert a run; False (and nothing written) when its key is already stored. Drops its claim."""
        rec = row if isinstance(row, RunRecord) else RunRecord(**row)
        d = rec.to_db()
        cols = ", ".join(d)
        marks = ", ".join(f":{c}" for c in d)
        with self._write() as con:
            cur = con.execute(f"INSERT INTO runs ({cols}) VALUES ({marks}) ON CONFLICT(key) DO NOTHING", d)
            con.execute("DELETE FROM claims WHERE key = ?", (rec.key,))
            return cur.rowcount == 1

    def rows(self, filters: Mapping[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
        """Stored runs as dicts (JSON columns parsed), oldest first.

        Filters by column: a value, or a list/tuple/set of accepted values (e.g. method=["softmax", "mls"]).
        """
        sql, args = rows_query(filters, kw)
        with self._read() as con:
            return parse_json_columns(dict(r) for r in con.execute(sql, args))

    def count(self) -> int:
        with self._read() as con:
            return int(con.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    # -- claims (optional: several processes sharing one grid) -------------------------------------
    def claim(self, key: str, stale_after: float = CLAIM_LIFETIME_S) -> bool:
        """Claim `key` for this process. False when it is stored already or live-claimed by another."""
        with self._write() as con:
            return take_claim(con.execute, key, self.owner, stale_after)

    def heartbeat(self, keys: str | Iterable[str]) -> None:
        """Tell other processes these claims are alive (see `Heartbeat`): one transaction for all of them."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        now = time.time()
        with self._write() as con:
            for i in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                part = keys[i:i + 500]
                con.execute(f"UPDATE claims SET heartbeat = ? WHERE owner = ? AND key IN ({', '.join('?' * len(part))})",
                            (now, self.owner, *part))

    def release(self, key: str) -> None:
        with self._write() as con:
            con.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self.owner))


class Heartbeat:
    """A daemon thread beating claims every `interval` seconds while runs train (epochs may take hours); a failed
    beat (a locked or unreachable database) is retried at the next beat, never raised into training."""

    def __init__(self, store, keys: str | Iterable[str], interval: float = HEARTBEAT_S) -> None:
        import threading

        self.store, self.interval = store, float(interval)
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="osrkit-heartbeat", daemon=True)
        self.beats = 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.heartbeat(self.keys)  # one write per beat, however many claims
                self.beats += 1
            except Exception:  # sqlite3.Error, psycopg.Error: the next beat tries again
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def open_store(db: Any, create: bool = True, busy_timeout: float = BUSY_TIMEOUT_S):
    """The results store for `db`: an open store as is, a `postgresql://` (or `postgres://`) URL →
    PostgresStore, anything else → a SQLite file (`ResultsStore`)."""
    if hasattr(db, "add") and hasattr(db, "claim"):
        return db
    text = str(db)
    if text.startswith(("postgresql://", "postgres://")):
        from osrkit.results.postgres import PostgresStore

        return PostgresStore(text, create=create, busy_timeout=busy_timeout)
    return ResultsStore(text, busy_timeout=busy_timeout, create=create)


def copy_rows(src, dst) -> tuple[int, int]:
    """Copy every run of store `src` into store `dst` as it is (key, times, commit); keys `dst` holds already
    are left alone. Returns (copied, skipped)."""
    copied = skipped = 0
    for row in src.rows():
        row = {k: v for k, v in row.items() if k != "id"}
        if dst.add(RunRecord(**row)):
            copied += 1
        else:
            skipped += 1
    return copied, skipped


def rows_query(filters: Mapping[str, Any] | None, kw: Mapping[str, Any]) -> tuple[str, list]:
    """`SELECT` of the runs matching column filters (a value or a collection of values each), oldest first,
    with `?` placeholders; both back ends use it (PostgreSQL's swaps them for `%s`)."""
    where, args = [], []
    for col, val in {**(filters or {}), **kw}.items():
        if col not in FILTER_COLUMNS:
            raise ValueError(f"cannot filter on {col!r}; filter columns: {', '.join(FILTER_COLUMNS)}")
        if val is None:
            continue
        vals = list(val) if isinstance(val, (list, tuple, set, frozenset)) else [val]
        if col in INTEGER_FILTERS:  # "0" matches in SQLite (type affinity) but is a type error in PostgreSQL
            vals = [_as_int(col, v) for v in vals]
        where.append(f"{col} IN ({', '.join('?' * len(vals))})")
        args += vals
    return "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id", args


def parse_json_columns(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their JSON columns parsed (NULL stays None)."""
    out = list(rows)
    for r in out:
        for c in JSON_COLUMNS:
            r[c] = json.loads(r[c]) if r[c] is not None else None
    return out


def take_claim(execute, key: str, owner: str, stale_after: float) -> bool:
    """Inside a caller's write transaction: claim `key` for `owner` unless it is stored or live-claimed by another.
    `execute(sql, params)` runs one statement with `?` placeholders (both back ends share this rule)."""
    if execute("SELECT 1 FROM runs WHERE key = ?", (key,)).fetchone():
        return False
    c = execute("SELECT owner, host, pid, heartbeat FROM claims WHERE key = ?", (key,)).fetchone()
    if c is not None and c["owner"] != owner and not _claim_is_stale(c, stale_after):
        return False
    execute("INSERT INTO claims (key, owner, host, pid, heartbeat) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET owner = excluded.owner, host = excluded.host, "
            "pid = excluded.pid, heartbeat = excluded.heartbeat",
            (key, owner, socket.gethostname(), os.getpid(), time.time()))
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_is_stale(c: Mapping[str, Any], stale_after: float) -> bool:
    """A claim is stale when silent too long, or when its owner on this host has exited."""
    if time.time() - float(c["heartbeat"]) > stale_after:
        return True
    return c["host"] == socket.gethostname() and not _pid_alive(int(c["pid"]))
