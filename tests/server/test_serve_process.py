"""``qlcapsule serve`` as an operator runs it: a real process, no arguments on a fresh machine (SQLite under
the user's data directory), JSON logs, OpenAPI at /docs, /metrics, and a graceful stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from catalog_fixtures import free_port
from serving import wait_until_answers


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_serve_with_no_arguments_on_a_fresh_machine(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "QLCAPSULE_SERVER_DATABASE": ""}
    env.pop("QLCAPSULE_TRUST_FILE", None)
    port = free_port()
    # the default port is 8080; the test gives a free one, nothing else
    proc = subprocess.Popen(
        [sys.executable, "-m", "qlcapsule", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(proc, f"{base}/healthz")
        assert (tmp_path / "data" / "qlcapsule" / "catalog.db").is_file()
        status, body = _get(f"{base}/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready"
        status, body = _get(f"{base}/docs")
        assert status == 200 and b"swagger" in body.lower()
        status, body = _get(f"{base}/openapi.json")
        paths = json.loads(body)["paths"]
        assert {"/api/v1/publish", "/api/v1/capsules", "/api/v1/files/{sha256}/versions"} <= set(paths)
        assert _get(f"{base}/api/v1/capsules")[0] == 401
        status, body = _get(f"{base}/metrics")
        assert status == 200
        assert b'qlcapsule_http_requests_total{method="GET",route="/api/v1/capsules",status="401"} 1.0' in body
        assert b'qlcapsule_catalog_rows{kind="versions"} 0.0' in body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]  # every line is JSON
    events = [line["event"] for line in lines if line["logger"] == "qlcapsule.server"]
    assert events[0] == "server.start" and events[-1] == "server.stop"
    assert any(line.get("route") == "/docs" and line.get("status") == 200 for line in lines)
    assert any(line.get("route") == "/api/v1/capsules" and line.get("status") == 401 for line in lines)
    assert next(line for line in lines if line["event"] == "server.no_trusted_keys")["level"] == "warning"
    assert out == b""
