"""A throw-away PostgreSQL server on localhost for tests (PostgreSQL 15 is installed on these
machines and in CI: `initdb`, `pg_ctl`; a server refuses to run as root, so as user postgres)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

AVAILABLE = bool(shutil.which("initdb") and shutil.which("pg_ctl"))
needs_postgres = pytest.mark.skipif(not AVAILABLE, reason="PostgreSQL (initdb, pg_ctl) is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(*command, check=True):
    """A PostgreSQL command, run as the user postgres when this process is root."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + [str(c) for c in command], capture_output=True, text=True, check=check, timeout=60)


class Server:
    def __init__(self, data: Path, port: int):
        self.data, self.port = data, port

    def url(self, database="postgres", password="s3cret") -> str:
        """A URL for the server's superuser (trust authentication: any password is accepted)."""
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def stop(self, mode="fast"):
        as_postgres("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)


@contextmanager
def postgres_server():
    """Yield a running Server; stopped and removed afterwards."""
    pytest.importorskip("psycopg", reason="psycopg, the PostgreSQL driver of `pip install -e .[test]`, is missing")
    data = Path(tempfile.mkdtemp(prefix="pgdata-"))  # not under pytest's folder: user postgres cannot enter it
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
    server = Server(data, free_port())
    try:
        as_postgres("initdb", "-D", data, "-A", "trust", "-U", "postgres")
        # -l: the server's output goes to a file, not to a pipe the caller reads until it closes
        as_postgres("pg_ctl", "-D", data, "-l", data / "server.log", "-o",
                    f"-p {server.port} -k {data} -c listen_addresses=127.0.0.1", "-w", "start")
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(data, ignore_errors=True)
