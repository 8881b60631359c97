"""Fixtures for the catalog service: real databases (SQLite files, and a real PostgreSQL started here), real
shipped capsules, the application on a real uvicorn server on 127.0.0.1, a reader of its event stream, and for
the pages a ``qlcapsule serve`` process with a real browser.

PostgreSQL: Debian's package (``apt-get install postgresql``, done by tests/e2e/install.sh for the e2e env),
started once per session as the unprivileged ``postgres`` account when running as root (PostgreSQL refuses
root; CI runs as root), with each test on a database of its own. Without the package the PostgreSQL cases skip
with the reason printed (``-ra``), or fail when ``QLCAPSULE_E2E_REQUIRE=1``. The PostgreSQL cases are marked
``e2e``, so tox runs them in the e2e env; the SQLite ones run everywhere.
"""

from __future__ import annotations

import json
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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

pytest.importorskip("fastapi", reason="the catalog service needs the [server] extra")

from pages_seed import seed  # noqa: E402
from pg_cluster import Postgres, pg_bin, running_postgres  # noqa: E402
from serving import wait_until_answers  # noqa: E402

from qlcapsule.cli import main  # noqa: E402
from qlcapsule_server import db, tokens  # noqa: E402
from qlcapsule_server.app import create_app  # noqa: E402
from qlcapsule_server.config import Settings  # noqa: E402
from qlcapsule_server.events import last_event_id  # noqa: E402


def _require() -> bool:
    return os.environ.get("QLCAPSULE_E2E_REQUIRE", "") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- PostgreSQL -------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL for the session (pg_cluster.py starts and stops it; the bench uses the same)."""
    if pg_bin() is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql; tests/e2e/install.sh does it)"
        if _require():
            pytest.fail(f"QLCAPSULE_E2E_REQUIRE=1 but {reason}")
        pytest.skip(reason)
    with running_postgres({"fsync": "off"}) as server:
        yield server


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path)
        return
    pg: Postgres = request.getfixturevalue("postgres")
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg.admin(f"CREATE DATABASE {name}")
    try:
        yield pg.url(name)
    finally:
        pg.admin(f"DROP DATABASE {name} WITH (FORCE)")


# -- keys and shipped capsules ----------------------------------------------------------


def cli(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@dataclass
class Key:
    private: Path
    public: Path
    keyid: str
    trust: Path


def _key(folder: Path, name: str) -> Key:
    folder.mkdir(parents=True, exist_ok=True)
    private = folder / f"{name}.key"
    out = cli("keygen", "-o", str(private)).output
    keyid = out.split("key id:")[1].split()[0]
    trust = folder / f"{name}-trust.yaml"
    trust.write_text(f"- {{algorithm: ed25519, key_file: {name}.key.pub}}\n", encoding="utf-8")
    return Key(private, Path(f"{private}.pub"), keyid, trust)


@pytest.fixture
def release_key(tmp_path: Path) -> Key:
    """The key the server trusts (its trust file is ``trust``)."""
    return _key(tmp_path / "keys", "release")


@pytest.fixture
def other_key(tmp_path: Path) -> Key:
    """A key the server does not trust."""
    return _key(tmp_path / "keys", "other")


Ship = Callable[..., dict[str, Any]]


@pytest.fixture
def ship(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ship:
    """Ship a new capsule with the real CLI and return its ``ship --json`` report (local delivery to
    ``tmp_path/dist``); ``more`` is added to its capsule.yaml."""
    monkeypatch.chdir(tmp_path)

    def run(
        name: str,
        version: str = "1.0.0",
        *,
        key: Key | None,
        files: dict[str, str] | None = None,
        template: tuple[str, str] | None = None,
        more: str = "",
    ) -> dict[str, Any]:
        root = tmp_path / "capsules" / f"{name}-{version}-{uuid.uuid4().hex[:6]}"
        root.mkdir(parents=True)
        definition = f"name: {name}\nversion: {version}\n{more}"
        if template:
            definition += f"generator:\n  template: {template[0]}\n  version: {template[1]}\n"
        (root / "capsule.yaml").write_text(definition, encoding="utf-8")
        for path, text in (files or {"app.py": f"print('{name} {version}')\n"}).items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text, encoding="utf-8")
        args = ["ship", str(root), "--store", str(tmp_path / "store.git"), "-o", str(tmp_path / "dist"), "--json"]
        args += ["--key", str(key.private)] if key else ["--no-sign"]
        answer = json.loads(cli(*args).stdout)  # the one --json answer; its result is the ship report
        assert answer["ok"], answer
        return dict(answer["result"])

    return run


# -- the server ------------------------------------------------------------------


class LiveServer:
    """The application on a real uvicorn server on 127.0.0.1 (an ephemeral port, or ``port``), in a thread."""

    def __init__(self, settings: Settings, port: int = 0) -> None:
        import uvicorn

        self.settings = settings
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive(), "the server stopped while starting"
            assert time.monotonic() < deadline, "the server did not start in 30 s"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def token(self, *scopes: str) -> str:
        with db.transaction(db.session_factory(self.app.state.engine)) as session:
            return tokens.create(session, f"t-{uuid.uuid4().hex[:8]}", list(scopes))

    def call(self, path: str, token: str | None = None, method: str = "GET", data: Any = None) -> tuple[int, Any]:
        """One request, any status returned as it is (the client module retries 5xx; tests look at them)."""
        import urllib.error
        import urllib.request

        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"null")

    def stop(self) -> None:
        if not self.thread.is_alive():
            return  # stopped by the test already
        self.app.state.hub.close_soon()  # as ``serve`` does on SIGTERM: open event streams end
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive()


Serve = Callable[..., LiveServer]


@pytest.fixture
def serve(database_url: str) -> Iterator[Serve]:
    """Start servers on ``database_url`` with the given settings (``port``: a fixed one, e.g. to bring a stopped
    server back at its URL); all are stopped after the test."""
    started: list[LiveServer] = []

    def start(port: int = 0, **settings: Any) -> LiveServer:
        server = LiveServer(Settings(database_url=database_url, **settings), port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# -- the event stream ------------------------------------------------------------------


class Subscriber(threading.Thread):
    """Reads ``count`` events of one SSE stream in a thread."""

    def __init__(
        self, server: LiveServer, token: str, query: str = "", count: int = 1, last_id: int | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        self.request = urllib.request.Request(f"{server.url}/api/v1/events{query}", headers=headers)
        self.count = count
        caught_up(server)  # events recorded before this subscription (the publish's own) are not live ones
        before = server.app.state.hub.subscriptions
        self.start()
        deadline = time.monotonic() + 20
        while server.app.state.hub.subscriptions <= before:  # subscribed: nothing published from now is missed
            assert time.monotonic() < deadline and self.error is None, self.error
            time.sleep(0.01)

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.request, timeout=30) as stream:
                assert stream.headers["Content-Type"].startswith("text/event-stream")
                fields: dict[str, str] = {}
                for raw in stream:
                    line = raw.decode("utf-8").rstrip("\n")
                    if line.startswith(":"):
                        continue
                    if line:
                        key, _, value = line.partition(": ")
                        fields[key] = value
                        continue
                    if "data" in fields:
                        assert fields["event"] == "delivery"
                        event = json.loads(fields["data"])
                        assert str(event["id"]) == fields["id"]
                        self.events.append(event)
                        if len(self.events) == self.count:
                            return
                    fields = {}
        except BaseException as exc:  # reported by result()
            self.error = exc

    def result(self) -> list[dict[str, Any]]:
        self.join(30)
        assert not self.is_alive(), f"only {len(self.events)} of {self.count} events arrived"
        assert self.error is None, self.error
        return self.events


def caught_up(server: LiveServer) -> None:
    """Wait until the server's event hub has read every event recorded so far."""
    with db.transaction(db.session_factory(server.app.state.engine)) as session:
        newest = last_event_id(session)
    deadline = time.monotonic() + 20
    while server.app.state.hub._last is None or server.app.state.hub._last < newest:
        assert time.monotonic() < deadline, "the hub did not read the events already recorded"
        time.sleep(0.01)


# -- the pages in a real browser ---------------------------------------------------------
# Debian's Chromium, headless, driven by Playwright for Python with the system browser (``executable_path``;
# nothing is downloaded), against a real ``qlcapsule serve`` process. Installed by the project's files
# (Playwright from the dev extra, Chromium by tests/e2e/install.sh).

CHROMIUM = os.environ.get("QLCAPSULE_CHROMIUM", "/usr/bin/chromium")


def unavailable(reason: str) -> None:
    """Skip with the reason printed, or fail when QLCAPSULE_E2E_REQUIRE=1 (the e2e env's promise)."""
    if os.environ.get("QLCAPSULE_E2E_REQUIRE", "") == "1":
        pytest.fail(f"QLCAPSULE_E2E_REQUIRE=1 but {reason}")
    pytest.skip(reason)


@dataclass
class Served:
    """A ``qlcapsule serve`` process (see :func:`served`) and its two tokens."""

    url: str
    database: str
    reader: str
    publisher: str

    def call(self, path: str, token: str, method: str = "GET", data: Any = None) -> tuple[int, Any]:
        body = None if data is None else json.dumps(data).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"null")


def _token(database: str, name: str, scope: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "qlcapsule", "catalog", "token", "create", "--database", database]
        + ["--name", name, "--scope", scope, "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return str(json.loads(out)["result"]["token"])  # the one --json answer


@pytest.fixture
def served(tmp_path: Path, release_key: Key) -> Iterator[Served]:
    """``qlcapsule serve`` (reads need a token) on a seeded SQLite catalog."""
    database = f"sqlite:///{tmp_path / 'catalog.db'}"
    subprocess.run(
        [sys.executable, "-m", "qlcapsule", "catalog", "migrate", "--database", database],
        check=True,
        capture_output=True,
    )
    reader, publisher = _token(database, "browser", "read"), _token(database, "ci", "publish")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qlcapsule", "serve", "--database", database, "--port", str(port)]
        + ["--trust", str(release_key.trust), "--unsigned", "mark", "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(proc, f"{url}/readyz")
        server = Served(url, database, reader, publisher)
        seed(server.call, publisher, release_key.private)
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    if not shutil.which(CHROMIUM):
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium; tests/e2e/install.sh does it)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[Any]:
    """A fresh browser context, logged in with the read token through the login form."""
    context = browser.new_context(base_url=served.url)
    tab = context.new_page()
    tab.goto("/login")
    tab.fill("#token", served.reader)
    tab.press("#token", "Enter")
    tab.wait_for_url(f"{served.url}/")
    yield tab
    context.close()
