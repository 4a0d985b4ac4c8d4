"""A throwaway local PostgreSQL server (initdb + pg_ctl on a temporary folder, loopback only), for the tests,
the scale benchmark and for trying the PostgreSQL store on one machine.

PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user (Debian's packages create
it). The binaries are looked up on PATH, then in Debian's /usr/lib/postgresql/<version>/bin.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def pg_bin(name: str) -> str:
    """The path of a PostgreSQL server program; a clear error naming the package when it is missing."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {name} was not found (PATH, /usr/lib/postgresql/*/bin): install the "
                                "server, e.g. `apt-get install postgresql` on Debian")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """`with LocalPostgres() as pg: pg.url` → postgresql://osrkit@127.0.0.1:PORT/postgres (trust auth, loopback).
    `pg.new_database()` gives the URL of a fresh, empty database on it."""

    def __init__(self, user: str = "osrkit") -> None:
        self.user, self.port = user, free_port()
        self.root = Path(tempfile.mkdtemp(prefix="osrkit-pg-"))
        self.data = self.root / "data"
        self.as_postgres = os.geteuid() == 0 if hasattr(os, "geteuid") else False

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        r = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            log = (self.root / "server.log")
            tail = log.read_text()[-1500:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd[:2])} failed ({r.returncode}): {r.stderr.strip()[-1500:]} {tail}")

    def start(self) -> "LocalPostgres":
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(pg_bin("initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def new_database(self) -> str:
        import psycopg

        name = f"osrkit_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url, autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
