"""A throw-away PostgreSQL cluster for benchmarks: initdb + pg_ctl in a temp folder on a free
port of 127.0.0.1, superuser `postgres` with trust auth, run as the `postgres` system user when
root (initdb and postgres refuse root). The same recipe and settings as the tests'
`postgres_cluster` fixture (tests/conftest.py), fsync on; here failures are `ClusterError`
(one line) instead of pytest skips, so a benchmark can print why it left PostgreSQL out.

    with start_cluster() as cluster:          # ClusterError if it cannot start
        cluster.execute('CREATE DATABASE "b"')
        url = cluster.url("b")                 # postgresql+psycopg://postgres@127.0.0.1:PORT/b

The server binaries are found as the fixture finds them: $TTRLAB_POSTGRES_BIN, else PATH, else
the newest /usr/lib/postgresql/*/bin (Debian keeps them off PATH).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

POSTGRES_BIN_ENV = "TTRLAB_POSTGRES_BIN"
SERVER_OPTIONS = "-c max_connections=60 -c shared_buffers=32MB -c max_wal_size=256MB"  # as the tests'


class ClusterError(RuntimeError):
    """PostgreSQL could not be started here; the message says why, in one line."""


def bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    if os.environ.get(POSTGRES_BIN_ENV):
        given = Path(os.environ[POSTGRES_BIN_ENV])
        return given if (given / "initdb").is_file() and (given / "pg_ctl").is_file() else None
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(initdb).resolve().parent
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file() and (p / "pg_ctl").is_file()]
    found.sort(key=lambda p: [int(part) if part.isdigit() else 0 for part in p.parent.name.split(".")])
    return found[-1] if found else None


@dataclass
class Cluster:
    bin_dir: Path
    root: Path
    port: int

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str) -> None:
        """One statement as the superuser outside a transaction (CREATE/DROP DATABASE)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True, connect_timeout=10) as con:
            con.execute(sql)

    def version(self) -> str:
        out = subprocess.run([str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True)
        return out.stdout.strip() or "postgres (version unknown)"


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(bins: Path, root: Path) -> None:
    data = root / "data"
    if (data / "postmaster.pid").exists():
        stop = [str(bins / "pg_ctl"), "-D", str(data), "-w", "-t", "30"]
        if subprocess.run(_as_postgres([*stop, "-m", "fast", "stop"]), capture_output=True, timeout=60).returncode:
            subprocess.run(_as_postgres([*stop, "-m", "immediate", "stop"]), capture_output=True, timeout=60)
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def start_cluster():
    """A running cluster for the `with` block; stopped and deleted afterwards, after errors too."""
    bins = bin_dir()
    if bins is None:
        where = os.environ.get(POSTGRES_BIN_ENV) or "on PATH or under /usr/lib/postgresql/*/bin"
        raise ClusterError(f"PostgreSQL server binaries (initdb, pg_ctl) not found {where}")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise ClusterError("running as root, PostgreSQL needs runuser (util-linux) to run as `postgres`")
    root = Path(tempfile.mkdtemp(prefix="ttrlab-bench-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    try:
        sockets.mkdir()
        if os.geteuid() == 0:
            try:
                shutil.chown(root, "postgres", "postgres")
                shutil.chown(sockets, "postgres", "postgres")
            except LookupError:
                raise ClusterError("running as root, PostgreSQL needs a `postgres` system user to run as") from None
        init = subprocess.run(_as_postgres([str(bins / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]),
                              capture_output=True, text=True, timeout=120)
        if init.returncode:
            lines = (init.stderr or init.stdout).strip().splitlines() or ["?"]
            raise ClusterError(f"initdb failed (exit {init.returncode}): {lines[-1]}")
        cluster = None
        for _ in range(3):  # the free port can be taken between the probe and the bind
            port = _free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets} {SERVER_OPTIONS}"
            start = subprocess.run(_as_postgres([str(bins / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                                                 "-t", "60", "-o", options, "start"]),
                                   capture_output=True, text=True, timeout=90)
            if start.returncode == 0:
                cluster = Cluster(bins, root, port)
                break
        if cluster is None:
            tail = (log.read_text(errors="replace") if log.exists() else start.stderr).strip().splitlines()
            raise ClusterError(f"PostgreSQL did not start: {tail[-1] if tail else '?'}")
        yield cluster
    finally:
        _stop(bins, root)
