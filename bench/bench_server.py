"""Catalog service benchmarks: real ``qlcapsule serve`` processes (uvicorn) on SQLite and on a real PostgreSQL.

Rows (each against an anchor measured in the same run, on the same server), first on SQLite, then on a
PostgreSQL this bench starts in a temp dir and stops (tests/server/pg_cluster.py, the tests' own helper; its
default settings, so every commit is fsynced as in production):

- publish: 8 concurrent publishers, each publication a signed lock + DSSE envelope the server verifies
  against its trust file (ed25519), p95 latency per publish; anchor: ``GET /healthz`` p95 under the same 8
  clients (the HTTP floor). Target (issue 20): p95 < 100 ms. Full run: 10,000 versions; quick: 200.
- reads with that many versions, p95 of 200 sequential requests each: a capsule's version list (page of 50),
  the capsule search (``/capsules?q=``), a capsule's lineage (the API's default page: all 200 of its
  versions), and "which versions contain file digest X". Targets: < 30 ms, and < 50 ms for the digest.
- the server's peak RSS (VmHWM) after the load. Target: < 250 MB.

Each read is followed by a ``GET /healthz``, whose p95 is the read rows' anchor (the HTTP floor under the same
moment's load). The publish and read rows also record the server process's CPU time per request
(``server_cpu_ms``, from /proc, the database's own processes not included; for reads, the read plus its
``/healthz``, whose own cost is the publish row's ``healthz_cpu_ms``) and the publish rate (``per_s``) in the
JSON: on a shared machine the latency includes waiting for a core, the CPU time much less so.

On PostgreSQL the same server then gets a second ``serve`` process beside it for the events row
(bench/server_events.py: 200 SSE subscribers across both) and the ``catalog sync`` rows (bench/server_sync.py),
and each process's peak RSS is reported after all of it. Without PostgreSQL installed those rows are skipped
with the reason printed. The publications are built in-process with the public API (lock digest, statement,
PAE) and signed with ``cryptography``, so the figures are the server's work, not ``qlcapsule ship``'s.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "server"))  # pg_cluster.py
from run import qlcapsule_cmd, row  # type: ignore[import-not-found]  # noqa: E402

PUBLISHERS = 8
CAPSULES = 50


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _publication(key: Any, name: str, version: str, shared: str) -> dict[str, Any]:
    from pages_seed import lock_text, sealed, signed  # type: ignore[import-not-found]

    from qlcapsule import Statement

    files = {
        "app.py": f"print({name!r}, {version!r})\n",
        "capsule.yaml": f"name: {name}\nversion: {version}\n",
        "lib/shared.py": shared,
    }
    lock = sealed(name, version, files)
    payload = Statement.build(
        name=name, version=version, digest=lock.digest, files=len(lock.files), created=dt.datetime.now(dt.timezone.utc)
    )
    capsule = {
        "name": name,
        "version": version,
        "digest": lock.digest,
        "score": 1.0,
        "findings": [],
        "artifacts": [],
        "receipts": [],
    }
    return {"capsule": capsule, "lock": lock_text(lock), "envelope": signed(key, payload, "bench")}


def _call(url: str, token: str, data: Any = None) -> float:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(
        url, data=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as answer:
        answer.read()
        assert answer.status in (200, 201), answer.status
    return time.perf_counter() - start


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] if len(samples) >= 20 else max(samples)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used: what a request costs, apart from the waiting a
    loaded machine adds to its latency."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Serve:
    """One ``qlcapsule serve`` process on ``database`` (a port of its own), ready when ``/healthz`` answers."""

    def __init__(self, database: str, trust: Path) -> None:
        port = _port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = qlcapsule_cmd() + ["serve", "--database", database, "--port", str(port), "--trust", str(trust)]
        self.proc = subprocess.Popen(
            [*cmd, "--log-level", "warning"],
            env={**os.environ, "QLCAPSULE_NO_PROGRESS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        from serving import wait_until_answers  # type: ignore[import-not-found]

        try:
            wait_until_answers(self.proc, f"{self.url}/healthz")
        except RuntimeError:
            self.stop()
            raise

    def cpu_s(self) -> float:
        return cpu_s(self.proc.pid)

    def rss_mb(self) -> float:
        return _rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(60)


def token(database: str) -> str:
    """An admin token made on the server's machine (``catalog token create`` migrates the database first)."""
    create = ["catalog", "token", "create", "--database", database, "--name", "bench", "--scope", "admin", "--json"]
    out = subprocess.run(qlcapsule_cmd() + create, check=True, capture_output=True, text=True).stdout
    return str(json.loads(out)["result"]["token"])  # the one --json answer


def _publish_and_read(server: Serve, secret: str, key: Any, db: str, quick: bool) -> list[dict[str, Any]]:
    base = server.url
    total = 200 if quick else 10_000
    shared = "def shared():\n    return 42\n"
    bodies = [_publication(key, f"svc{i % CAPSULES}", f"1.{i // CAPSULES}.0", shared) for i in range(total)]
    with ThreadPoolExecutor(PUBLISHERS) as pool:
        cpu = server.cpu_s()
        floor = list(pool.map(lambda _: _call(f"{base}/healthz", secret), range(80 if quick else 400)))
        healthz_cpu_ms = (server.cpu_s() - cpu) * 1000 / len(floor)
        cpu, start = server.cpu_s(), time.perf_counter()
        publish = list(pool.map(lambda b: _call(f"{base}/api/v1/publish", secret, b), bodies))
        per_s, cpu_ms = total / (time.perf_counter() - start), (server.cpu_s() - cpu) * 1000 / total
    digest = hashlib.sha256(shared.encode()).hexdigest()
    reads = {
        "list versions (page of 50)": ("/api/v1/capsules/svc{i}/versions?limit=50", 0.030, "< 30 ms"),
        "search capsules (?q=)": ("/api/v1/capsules?q=svc{i}", 0.030, "< 30 ms"),
        f"lineage (all {total // CAPSULES} versions of a capsule)": (
            "/api/v1/capsules/svc{i}/lineage",
            0.030,
            "< 30 ms",
        ),
        "versions containing a file digest": (f"/api/v1/files/{digest}/versions?limit=50", 0.050, "< 50 ms"),
    }
    label = f"{total:,} versions"
    floor_p95, publish_p95 = _p95(floor), _p95(publish)
    rows = [
        row(
            f"catalog publish p95, {PUBLISHERS} publishers, {label} ({db}, verified)",
            publish_p95,
            "GET /healthz p95",
            floor_p95,
            "< 100 ms",
            ok=publish_p95 < 0.100,
            per_s=round(per_s, 1),
            server_cpu_ms=round(cpu_ms, 2),
            healthz_cpu_ms=round(healthz_cpu_ms, 2),
        )
    ]
    for what, (path, limit, target) in reads.items():
        # each read is followed by a GET /healthz: the anchor is the HTTP floor under the same moment's load
        reads_s, floor = [], []
        cpu = server.cpu_s()
        for i in range(200):
            reads_s.append(_call(base + path.format(i=i % CAPSULES), secret))
            floor.append(_call(f"{base}/healthz", secret))
        cpu_ms = (server.cpu_s() - cpu) * 1000 / 200  # the read's and its /healthz's
        p95 = _p95(reads_s)
        name = f"catalog {what} p95, {label} ({db})"
        rows.append(row(name, p95, "GET /healthz p95, interleaved", _p95(floor), target, ok=p95 < limit))
        rows[-1]["server_cpu_ms"] = round(cpu_ms, 2)
    return rows


def rss_row(what: str, server: Serve) -> dict[str, Any]:
    rss = server.rss_mb()
    return row(f"catalog server peak RSS, {what}", rss, "", None, "< 250 MB", ok=rss < 250, peak_rss_mb=round(rss, 1))


def run(workdir: Path, quick: bool = False) -> list[dict[str, Any]]:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    for old in workdir.glob("*"):
        subprocess.run(["rm", "-rf", str(old)], check=True)
    key_path = workdir / "bench.key"
    subprocess.run(qlcapsule_cmd() + ["keygen", "-o", str(key_path)], check=True, capture_output=True)
    key = load_pem_private_key(key_path.read_bytes(), None)
    trust = workdir / "trust.yaml"
    trust.write_text("- {algorithm: ed25519, key_file: bench.key.pub}\n")

    database = f"sqlite:///{workdir / 'catalog.db'}"
    secret = token(database)
    server = Serve(database, trust)
    try:
        rows = _publish_and_read(server, secret, key, "SQLite", quick)
        rows.append(rss_row("SQLite, after the load", server))
    finally:
        server.stop()
    rows += _postgres_rows(workdir, key, key_path, trust, quick)
    return rows


def _postgres_rows(workdir: Path, key: Any, key_path: Path, trust: Path, quick: bool) -> list[dict[str, Any]]:
    from pg_cluster import pg_bin, running_postgres  # type: ignore[import-not-found]

    from server_events import events_rows  # type: ignore[import-not-found]
    from server_sync import sync_rows  # type: ignore[import-not-found]

    if pg_bin() is None:
        print(
            "(server: PostgreSQL is not installed: its rows skipped; tests/e2e/install.sh installs it)", file=sys.stderr
        )
        return []
    with running_postgres() as pg:
        pg.admin("CREATE DATABASE catalog")
        database = pg.url("catalog")
        secret = token(database)
        servers: list[Serve] = []
        try:
            servers.append(Serve(database, trust))
            rows = _publish_and_read(servers[0], secret, key, "PostgreSQL", quick)
            servers.append(Serve(database, trust))
            rows += events_rows(servers[0], servers[1], secret, key, quick)
            rows += sync_rows(workdir / "sync", servers[0], secret, key_path, quick)
            rows.append(rss_row("PostgreSQL process A (publish, reads, SSE, sync)", servers[0]))
            rows.append(rss_row("PostgreSQL process B (SSE)", servers[1]))
        finally:
            for server in servers:
                server.stop()
    return rows
