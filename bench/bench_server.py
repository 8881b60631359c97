"""Catalog service benchmarks: a real ``qlcapsule serve`` (uvicorn, SQLite) under concurrent publishers.

Rows (each against an anchor measured in the same run, on the same server):

- publish: 8 concurrent publishers, each publication a signed lock + DSSE envelope the server verifies
  against its trust file (ed25519), p95 latency per publish; anchor: ``GET /healthz`` p95 under the same 8
  clients (the HTTP floor). Target (issue 20): p95 < 100 ms. Full run: 10,000 versions; quick: 200.
- reads with that many versions: a capsule's version list (page of 50) and "which versions contain file
  digest X", p95 of 200 sequential requests. Targets: < 30 ms and < 50 ms.
- the server's peak RSS after the load (VmHWM). Target: < 250 MB.

PostgreSQL and the events/sync rows of the issue are not measured here yet (docs/server.md, "Not built yet").
The publications are built in-process with the public API (lock digest, statement, PAE) and signed with
``cryptography``, so the figures are the server's work, not ``qlcapsule ship``'s.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from run import qlcapsule_cmd, row  # type: ignore[import-not-found]

PUBLISHERS = 8


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _publication(key: Any, name: str, version: str, shared: str) -> dict[str, Any]:
    from qlcapsule import Envelope, LockEntry, Statement, capsule_digest

    files = {
        "app.py": f"print({name!r}, {version!r})\n",
        "capsule.yaml": f"name: {name}\nversion: {version}\n",
        "lib/shared.py": shared,
    }
    entries = [
        LockEntry(p, hashlib.sha256(t.encode()).hexdigest(), len(t.encode()), "644") for p, t in sorted(files.items())
    ]
    digest = capsule_digest(entries)
    lock = {
        "lockVersion": 1,
        "algorithm": "sha256",
        "name": name,
        "version": version,
        "digest": digest,
        "files": [e._asdict() for e in entries],
    }
    payload = Statement.build(
        name=name, version=version, digest=digest, files=len(entries), created=dt.datetime.now(dt.timezone.utc)
    )
    sig = key.sign(Envelope(payload=payload).pae())
    envelope = {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": Envelope(payload=payload).payload_type,
        "signatures": [{"keyid": "bench", "sig": base64.b64encode(sig).decode()}],
    }
    capsule = {
        "name": name,
        "version": version,
        "digest": digest,
        "score": 1.0,
        "findings": [],
        "artifacts": [],
        "receipts": [],
    }
    return {"capsule": capsule, "lock": json.dumps(lock), "envelope": json.dumps(envelope)}


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


def run(workdir: Path, quick: bool = False) -> list[dict[str, Any]]:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    q = qlcapsule_cmd()
    for old in workdir.glob("*"):
        subprocess.run(["rm", "-rf", str(old)], check=True)
    key_path = workdir / "bench.key"
    subprocess.run(q + ["keygen", "-o", str(key_path)], check=True, capture_output=True)
    key = load_pem_private_key(key_path.read_bytes(), None)
    trust = workdir / "trust.yaml"
    trust.write_text("- {algorithm: ed25519, key_file: bench.key.pub}\n")
    database = f"sqlite:///{workdir / 'catalog.db'}"
    token = json.loads(
        subprocess.run(
            q + ["catalog", "token", "create", "--database", database, "--name", "bench", "--scope", "admin", "--json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )["result"]["token"]  # the one --json answer
    port = _port()
    env = {**os.environ, "QLCAPSULE_NO_PROGRESS": "1"}
    server = subprocess.Popen(
        q + ["serve", "--database", database, "--port", str(port), "--trust", str(trust), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("qlcapsule serve did not start") from None
                time.sleep(0.1)
        total = 200 if quick else 10_000
        shared = "def shared():\n    return 42\n"
        bodies = [_publication(key, f"svc{i % 50}", f"1.{i // 50}.0", shared) for i in range(total)]
        with ThreadPoolExecutor(PUBLISHERS) as pool:
            floor = list(pool.map(lambda _: _call(f"{base}/healthz", token), range(400 if not quick else 80)))
            publish = list(pool.map(lambda b: _call(f"{base}/api/v1/publish", token, b), bodies))
        digest = hashlib.sha256(shared.encode()).hexdigest()
        reads = [_call(f"{base}/api/v1/capsules/svc{i % 50}/versions?limit=50", token) for i in range(200)]
        finds = [_call(f"{base}/api/v1/files/{digest}/versions?limit=50", token) for _ in range(200)]
        rss = _rss_mb(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    floor_p95, publish_p95 = _p95(floor), _p95(publish)
    label = f"{total:,} versions"
    return [
        row(
            f"catalog publish p95, {PUBLISHERS} publishers, {label} (SQLite, verified)",
            publish_p95,
            "GET /healthz p95",
            floor_p95,
            "< 100 ms",
            ok=publish_p95 < 0.100,
        ),
        row(f"catalog list versions p95, {label} (SQLite)", _p95(reads), "", None, "< 30 ms", ok=_p95(reads) < 0.030),
        row(
            f"catalog versions containing a file digest p95, {label} (SQLite)",
            _p95(finds),
            "",
            None,
            "< 50 ms",
            ok=_p95(finds) < 0.050,
        ),
        row(
            "catalog server peak RSS after the load", rss, "", None, "< 250 MB", ok=rss < 250, peak_rss_mb=round(rss, 1)
        ),
    ]
