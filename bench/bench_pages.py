"""Catalog pages benchmarks: each page of a real ``qlcapsule serve`` (uvicorn, SQLite, anonymous reads) with
10,000 versions in the catalog (quick: 200), p95 of sequential requests, and the largest page's size.

The catalog is filled through the publish API with bench_server's signed publications (50 capsules, one lineage
each: every version's parent is the one before), plus one delivery status per 10 versions. Target (issue 21):
every page < 100 ms p95 and < 200 KB; the anchor is ``GET /healthz`` p95 on the same server (the HTTP floor).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_server import _p95, _port, _publication  # type: ignore[import-not-found]
from run import qlcapsule_cmd, row  # type: ignore[import-not-found]

PAGES = (
    "/",
    "/?q=svc1",
    "/capsules/svc7",
    "/capsules/svc7/versions/1.{last}.0",
    "/live",
    "/templates",
    "/keys",
    "/dashboard",
)


def _get(url: str, token: str | None = None) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    start = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as answer:
        size = len(answer.read())
        assert answer.status == 200, answer.status
    return time.perf_counter() - start, size


def _post(url: str, token: str, data: Any) -> None:
    req = urllib.request.Request(
        url,
        data=json.dumps(data).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as answer:
        answer.read()


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
    create = q + ["catalog", "token", "create", "--database", database, "--name", "bench", "--scope", "admin", "--json"]
    answer = json.loads(subprocess.run(create, check=True, capture_output=True, text=True).stdout)
    token = answer["result"]["token"]  # the one --json answer
    port = _port()
    server = subprocess.Popen(
        q
        + ["serve", "--database", database, "--port", str(port), "--trust", str(trust), "--log-level", "warning"]
        + ["--anonymous-read"],
        env={**os.environ, "QLCAPSULE_NO_PROGRESS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    total = 200 if quick else 10_000
    per = total // 50
    try:
        from serving import wait_until_answers  # type: ignore[import-not-found]  # tests/server: bench_server's path

        wait_until_answers(server, f"{base}/healthz")
        bodies = []
        for i in range(total):
            name, n = f"svc{i % 50}", i // 50
            body = _publication(key, name, f"1.{n}.0", "def shared():\n    return 42\n")
            body["capsule"]["commit"] = f"{i:040x}"
            body["parents"] = [f"{i - 50:040x}"] if n else []
            bodies.append(body)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda b: _post(f"{base}/api/v1/publish", token, b), bodies))
            statuses = ("delivered", "failed", "uploading")
            reports = [
                {
                    "capsule": f"svc{i % 50}",
                    "version": f"1.{i // 50}.0",
                    "target": f"t{i % 3}",
                    "provider": "s3",
                    "status": statuses[i % 3],
                    "bytes": 1000 + i,
                }
                for i in range(0, total, 10)
            ]
            list(pool.map(lambda r: _post(f"{base}/api/v1/deliveries", token, r), reports))
        floor = [_get(f"{base}/healthz")[0] for _ in range(100)]
        rows = []
        for path in PAGES:
            url = base + path.format(last=per - 1)
            _get(url)  # warm: templates compiled once
            samples = [_get(url) for _ in range(20 if quick else 60)]
            p95 = _p95([s[0] for s in samples])
            size = max(s[1] for s in samples)
            rows.append(
                row(
                    f"page {path.format(last='N')} p95, {total:,} versions (SQLite)",
                    p95,
                    "GET /healthz p95",
                    _p95(floor),
                    "< 100 ms, < 200 KB",
                    ok=p95 < 0.100 and size < 200_000,
                    bytes=size,
                )
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    return rows
