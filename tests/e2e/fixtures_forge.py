"""Fixtures for the forge deliverers: a real OCI registry, a real git HTTP server, GitHub/GitLab fakes.

- ``oci_registry`` / ``oci_registry_auth``: the CNCF distribution registry
  (Debian package ``docker-registry``, 2.8) started with ``docker-registry serve``
  on 127.0.0.1, filesystem storage in a temp dir; the ``_auth`` variant uses an
  htpasswd file (bcrypt) for basic auth. ``registry_proxy`` puts a recording,
  fault-injecting HTTP proxy in front of a registry.
- ``git_http``: ``git http-backend`` behind a small HTTP server with basic auth
  (forge_githttp.py), with an open repository and one whose pre-receive hook
  rejects every push.
- ``fake_github`` / ``fake_gitlab``: stateful fakes of the REST endpoints the
  deliverers use (see forge_fakes.py) — fakes, because no real GitHub or GitLab
  server can run on these machines.

Every token and password is a canary: tests scan all output for it.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from forge_fakes import FakeGitHub, FakeGitLab

__all__ = [
    "CANARY_GITHUB_TOKEN",
    "CANARY_GITLAB_TOKEN",
    "CANARY_REGISTRY_PASSWORD",
    "CANARY_GIT_PASSWORD",
    "fake_github",
    "fake_gitlab",
    "oci_registry",
    "oci_registry_auth",
    "registry_proxy",
    "git_http",
    "RegistryServer",
    "RecordingProxy",
    "GitHttpServer",
]

CANARY_GITHUB_TOKEN = "ghp_CANARYgithub0token0do0not0print0a1b2c3"
CANARY_GITLAB_TOKEN = "glpat-CANARYgitlab0token0do0not0print"
CANARY_REGISTRY_PASSWORD = "CANARY-registry-password-9f8e7d"
CANARY_GIT_PASSWORD = "CANARY-git-password-5c4b3a"

_HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


def _killpg(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# -- GitHub / GitLab fakes -------------------------------------------------------


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """A FAKE GitHub (no real GitHub can run here) with an empty repository ``acme/capsules``."""
    srv = FakeGitHub(CANARY_GITHUB_TOKEN).start()
    srv.add_repo("acme/capsules")
    try:
        yield srv
    finally:
        srv.stop()
    assert not srv.violations, f"requests that break GitHub's documented API: {srv.violations}"


@pytest.fixture
def fake_gitlab() -> Iterator[FakeGitLab]:
    """A FAKE GitLab (no real GitLab can run here) with an empty project ``acme/capsules``."""
    srv = FakeGitLab(CANARY_GITLAB_TOKEN).start()
    srv.add_project("acme/capsules")
    try:
        yield srv
    finally:
        srv.stop()
    assert not srv.violations, f"requests that break GitLab's documented API: {srv.violations}"


# -- the OCI registry -------------------------------------------------------------


@dataclass
class RegistryServer:
    """``docker-registry serve`` with its storage in ``root``; survives kill + start (same port, same data)."""

    root: Path
    user: str | None = None
    password: str | None = None
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _config(self) -> Path:
        storage = self.root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
            "  secret: qlcapsule-e2e-not-a-secret",
        ]
        if self.user:
            import bcrypt

            assert self.password
            hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
            (self.root / "htpasswd").write_text(f"{self.user}:{hashed}\n")
            lines += ["auth:", "  htpasswd:", "    realm: qlcapsule-e2e", f"    path: {self.root / 'htpasswd'}"]
        cfg = self.root / "config.yml"
        cfg.write_text("\n".join(lines) + "\n")
        return cfg

    def start(self) -> RegistryServer:
        exe = shutil.which("docker-registry")
        if exe is None:
            pytest.fail(
                "docker-registry is not installed (apt-get install -y docker-registry; see tests/e2e/install.sh)"
            )
        cfg = self._config()
        log = (self.root / "registry.log").open("ab")
        self.proc = subprocess.Popen([exe, "serve", str(cfg)], stdout=log, stderr=log, start_new_session=True)
        log.close()
        _wait_port(self.port, self.proc, "docker-registry")
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None:
            _killpg(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            _killpg(self.proc)

    # read-back helpers (plain HTTP, independent of the deliverer)
    def get(self, path: str, accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.url + path)
        if accept:
            req.add_header("Accept", accept)
        if self.user:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def oci_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """The real CNCF distribution registry, no auth."""
    reg = RegistryServer(tmp_path / "registry").start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def oci_registry_auth(tmp_path: Path) -> Iterator[RegistryServer]:
    """The real CNCF distribution registry with htpasswd (bcrypt) basic auth: user ``ci``."""
    reg = RegistryServer(tmp_path / "registry-auth", user="ci", password=CANARY_REGISTRY_PASSWORD).start()
    try:
        yield reg
    finally:
        reg.stop()


class RecordingProxy:
    """An HTTP proxy in front of a server: records every request and can inject faults.

    ``fault`` is called with ``(method, path, count_of_this_method_and_kind)`` and may
    return ``None`` (forward), an int status (answer it without forwarding) or
    ``"kill"`` (run ``on_kill`` — e.g. kill the registry — and drop the connection).
    The client's Host header is forwarded, so the registry's Location headers point
    back at the proxy.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.log: list[tuple[str, str, int]] = []
        self.fault: Callable[[str, str], Any] | None = None
        self.on_kill: Callable[[], None] | None = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = proxy.fault(self.command, self.path) if proxy.fault else None
                if action == "kill":
                    proxy.log.append((self.command, self.path, -1))
                    if proxy.on_kill:
                        proxy.on_kill()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(action, int):
                    proxy.log.append((self.command, self.path, action))
                    self.send_response(action)
                    self.send_header("Content-Type", "application/json")
                    payload = b'{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}'
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
                if body or self.command in ("PUT", "POST", "PATCH"):
                    headers["Content-Length"] = str(len(body))
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError:
                    proxy.log.append((self.command, self.path, -2))
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                finally:
                    conn.close()
                proxy.log.append((self.command, self.path, resp.status))
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                clen = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", clen or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self, method: str, fragment: str, status: int | None = None) -> int:
        return sum(1 for m, p, s in self.log if m == method and fragment in p and (status is None or s == status))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def registry_proxy(oci_registry: RegistryServer) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(oci_registry.port)
    proxy.on_kill = oci_registry.kill
    try:
        yield proxy
    finally:
        proxy.close()


# -- git over HTTP ----------------------------------------------------------------


@dataclass
class GitHttpServer:
    root: Path
    port: int
    user: str
    password: str
    proc: subprocess.Popen[bytes]

    def url(self, repo: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repo}"

    def git(self, repo: str, *args: str) -> str:
        out = subprocess.run(["git", "-C", str(self.root / repo), *args], capture_output=True, check=True, text=True)
        return out.stdout


def _bare(path: Path) -> None:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "config", "http.receivepack", "true"], check=True)


@pytest.fixture
def git_http(tmp_path: Path) -> Iterator[GitHttpServer]:
    """``git http-backend`` (real git) behind basic auth; repos ``capsules.git`` and ``locked.git``
    (whose pre-receive hook rejects every push)."""
    if shutil.which("git") is None:
        pytest.fail("git is not installed")
    root = tmp_path / "git-root"
    root.mkdir()
    _bare(root / "capsules.git")
    _bare(root / "locked.git")
    hook = root / "locked.git" / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes to this repository are frozen by policy' >&2\nexit 1\n")
    hook.chmod(0o755)
    port = _free_port()
    log = (tmp_path / "git-http.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, str(_HERE / "forge_githttp.py"), str(root), str(port), "ci", CANARY_GIT_PASSWORD],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    try:
        _wait_port(port, proc, "git http server")
        yield GitHttpServer(root, port, "ci", CANARY_GIT_PASSWORD, proc)
    finally:
        _killpg(proc)
