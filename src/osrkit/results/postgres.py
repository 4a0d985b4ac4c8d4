"""PostgreSQL results store (psycopg 3): the SQLite store's schema, keys and semantics on a shared server.

For grids spread over machines (`osrkit bench --executor ray`), where a SQLite file on a network share is
not safe. Every write is a short transaction holding a per-key advisory lock, so a claim and a stored row for
the same key never race; rows are inserted with `ON CONFLICT (key) DO NOTHING`, so concurrent writers neither
lose nor duplicate rows. A claim is taken over only when its holder is gone: its process has exited (same
host) or it has not beaten for `stale_after` seconds. The JSON columns are TEXT, as in SQLite, so rows read
back identically from both back ends.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from osrkit.results.store import (BUSY_TIMEOUT_S, CLAIM_LIFETIME_S, SCHEMA_VERSION, RunRecord, parse_json_columns,
                                  rows_query, take_claim)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    method TEXT NOT NULL,
    task TEXT NOT NULL,
    family TEXT NOT NULL,
    split INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    wall_seconds DOUBLE PRECISION,
    train_images_per_second DOUBLE PRECISION,
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
    heartbeat DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS osrkit_schema (version INTEGER NOT NULL)
"""
_SCHEMA_LOCK = 0x05E1C17  # one advisory lock id: concurrent first connections create the schema once


def redact(url: str) -> str:
    """The URL without its password (in the user part or a `password=` parameter), for messages."""
    url = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


class PostgresStore:
    """A results database on a PostgreSQL server, addressed by `postgresql://USER[:PASSWORD]@HOST:PORT/DB`."""

    def __init__(self, url: str, create: bool = True, busy_timeout: float = BUSY_TIMEOUT_S):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise ImportError("a postgresql:// results store needs psycopg 3: pip install 'osrkit[cluster]' "
                              "(or pip install 'psycopg[binary]')") from None
        self.url, self.busy_timeout = url, busy_timeout
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._init_schema(create)

    def __str__(self) -> str:
        return redact(self.url)

    def default_checkpoint_dir(self) -> Path:
        """`./osrkit-checkpoints/<database name>`; with several machines pass a shared --checkpoint-dir."""
        from psycopg.conninfo import conninfo_to_dict

        name = str(conninfo_to_dict(self.url).get("dbname") or "postgres")
        return Path("osrkit-checkpoints") / re.sub(r"[^A-Za-z0-9._-]+", "_", name)

    # -- connections and transactions -------------------------------------------------------------
    def _connect(self):
        import psycopg
        from psycopg.rows import dict_row

        try:
            return psycopg.connect(self.url, row_factory=dict_row, connect_timeout=max(1, int(self.busy_timeout)),
                                   options=f"-c lock_timeout={int(self.busy_timeout * 1000)}")
        except psycopg.OperationalError as e:
            raise ConnectionError(f"cannot connect to the results database {redact(self.url)}: "
                                  f"{str(e).strip().splitlines()[-1]}. Is the PostgreSQL server running and the "
                                  "URL (user, host, port, database) right?") from None

    @contextmanager
    def _write(self, key: str | None = None) -> Iterator[Any]:
        """One transaction; with `key`, holding that key's advisory lock until it ends."""
        with self._connect() as con:
            with con.transaction():
                if key is not None:
                    con.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
                yield con

    @contextmanager
    def _read(self) -> Iterator[Any]:
        with self._connect() as con:
            yield con

    def _init_schema(self, create: bool) -> None:
        with self._connect() as con:
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                exists = con.execute("SELECT to_regclass('osrkit_schema') IS NOT NULL AS e").fetchone()["e"]
                if not exists and not create:
                    raise FileNotFoundError(f"results database {redact(self.url)} holds no osrkit runs "
                                            f"(run `osrkit bench --db {redact(self.url)}` first)")
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    con.execute(stmt)
                row = con.execute("SELECT version FROM osrkit_schema").fetchone()
                if row is None:
                    con.execute("INSERT INTO osrkit_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
                elif row["version"] > SCHEMA_VERSION:
                    raise ValueError(f"{redact(self.url)} was written by a newer osrkit "
                                     f"(schema {row['version']} > {SCHEMA_VERSION})")

    # -- runs --------------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        with self._read() as con:
            return con.execute("SELECT 1 FROM runs WHERE key = %s", (key,)).fetchone() is not None

    def keys(self) -> set[str]:
        with self._read() as con:
            return {r["key"] for r in con.execute("SELECT key FROM runs")}

    def add(self, row: RunRecord | Mapping[str, Any]) -> bool:
        """Insert a run; False (and nothing written) when its key is already stored. Drops its claim."""
        rec = row if isinstance(row, RunRecord) else RunRecord(**row)
        d = rec.to_db()
        cols = ", ".join(d)
        marks = ", ".join(f"%({c})s" for c in d)
        with self._write(rec.key) as con:
            cur = con.execute(f"INSERT INTO runs ({cols}) VALUES ({marks}) ON CONFLICT (key) DO NOTHING", d)
            con.execute("DELETE FROM claims WHERE key = %s", (rec.key,))
            return cur.rowcount == 1

    def rows(self, filters: Mapping[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
        """Stored runs as dicts (JSON columns parsed), oldest first; filters as in the SQLite store."""
        sql, args = rows_query(filters, kw)
        with self._read() as con:
            return parse_json_columns(dict(r) for r in con.execute(sql.replace("?", "%s"), args))

    def count(self) -> int:
        with self._read() as con:
            return int(con.execute("SELECT COUNT(*) AS n FROM runs").fetchone()["n"])

    # -- claims ----------------------------------------------------------------------------------------
    def claim(self, key: str, stale_after: float = CLAIM_LIFETIME_S) -> bool:
        """Claim `key` for this process. False when it is stored already or live-claimed by another."""
        with self._write(key) as con:
            return take_claim(lambda sql, params: con.execute(sql.replace("?", "%s"), params), key, self.owner,
                              stale_after)

    def heartbeat(self, keys: str | Iterable[str]) -> None:
        """Tell other processes these claims are alive: one statement for all of them."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        with self._write() as con:
            con.execute("UPDATE claims SET heartbeat = %s WHERE owner = %s AND key = ANY(%s)",
                        (time.time(), self.owner, keys))

    def release(self, key: str) -> None:
        with self._write(key) as con:
            con.execute("DELETE FROM claims WHERE key = %s AND owner = %s", (key, self.owner))
