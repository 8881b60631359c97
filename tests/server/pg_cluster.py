"""A real PostgreSQL started in a temp dir with the system's ``initdb``/``pg_ctl``, and stopped again.

One implementation for the two places that need a throwaway server: the catalog tests' session fixture
(``catalog_fixtures.postgres``) and the catalog bench (``bench/bench_server.py``, which puts this directory on
``sys.path``), so this module imports neither pytest nor the server. PostgreSQL refuses to run as root and CI
runs as root: then the temp dir is handed to the ``postgres`` account the Debian package creates, and the
binaries run as it (``runuser``). The server listens on 127.0.0.1 only, on a free port, with its socket in the
temp dir; trust authentication for one superuser, ``PG_USER``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_USER = "qlcapsule"


@dataclass
class Postgres:
    host: str
    port: int
    #: the temp dir (data directory, socket, log)
    base: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@{self.host}:{self.port}/{database}"

    def admin(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement as the superuser (autocommit: CREATE DATABASE works); its rows, if any."""
        import psycopg  # the [server] extra's driver; only a caller that started a server has it

        with psycopg.connect(f"postgresql://{PG_USER}@{self.host}:{self.port}/{database}", autocommit=True) as conn:
            cursor = conn.execute(sql)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian's layout), or None when it is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_postgres(settings: Mapping[str, str] | None = None) -> Iterator[Postgres]:
    """Start a fresh cluster (``settings``: extra ``-c name=value`` server settings), yield it, stop it and
    remove its files. RuntimeError when PostgreSQL is not installed (callers say how to install it)."""
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; tests/e2e/install.sh does it)")
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="qlcapsule-pg-"))  # in /tmp: the postgres account must reach it
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = base / "data"
    ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER, "--no-sync"],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
        options += "".join(f" -c {name}={value}" for name, value in (settings or {}).items())
        subprocess.run(
            [*ctl, "-o", options, "-l", str(base / "log"), "-w", "start"],
            check=True,
            capture_output=True,
            start_new_session=True,
        )
        server = Postgres("127.0.0.1", port, base)
        deadline = time.monotonic() + 30
        while True:
            try:
                server.admin("SELECT 1")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        subprocess.run([*ctl, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
