"""The delivery core: target lookup, retry/backoff, circuit breaker, webhooks, receipts, secrets.

Uses the built-in ``local`` deliverer and small in-process deliverer plugins; the
webhook receiver is a stdlib HTTP server on 127.0.0.1. Nothing sleeps: retry
delays go through an injected ``sleep``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

import qlcapsule
from qlcapsule import (
    Artifact,
    Capsule,
    CircuitBreaker,
    CircuitOpenError,
    CredentialsError,
    Deliverer,
    OptionsError,
    Receipt,
    RemoteError,
    TransientError,
    hookimpl,
    read_secret,
    retry,
    scrub_error,
    signed_url_expiry,
)
from qlcapsule.resilience import reset_breakers
from qlcapsule.steps.delivery import deliver_capsule
from qlcapsule.steps.notify import SIGNATURE_HEADER, notify, sign_body

CANARY_ENV = "CANARY-env-secret-7f3a9c"
CANARY_OPT = "CANARY-opt-password-51be"
CANARY_HOOK = "CANARY-webhook-hmac-0d2e"


@pytest.fixture(autouse=True)
def _breakers() -> Iterator[None]:
    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture(autouse=True)
def _operator_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's targets file these tests define their targets in (see write_capsule)."""
    (tmp_path / "targets.yaml").write_text("targets: {}\n", encoding="utf-8")
    monkeypatch.setenv("QLCAPSULE_TARGETS_FILE", str(tmp_path / "targets.yaml"))
    monkeypatch.delenv("QLCAPSULE_CAPSULE_TARGETS", raising=False)


def write_capsule(root: Path, targets: dict[str, Any] | None = None, *, in_capsule: bool = False) -> Path:
    """A sealed capsule at ``root``; ``targets`` go to the operator's targets file beside it
    (``root.parent / "targets.yaml"``), or into capsule.yaml with ``in_capsule``."""
    root.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"name": "demo", "version": "1.0.0"}
    if targets and in_capsule:
        doc["targets"] = targets
    elif targets:
        ops = root.parent / "targets.yaml"
        current = yaml.safe_load(ops.read_text(encoding="utf-8")) if ops.exists() else None
        merged = {**((current or {}).get("targets") or {}), **targets}
        ops.write_text(yaml.safe_dump({"targets": merged}), encoding="utf-8")
    (root / "capsule.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    (root / "app.py").write_text("print(1)\n", encoding="utf-8")
    Capsule.load(root).seal()
    return root


# -- retry ---------------------------------------------------------------------


def test_retry_backs_off_exponentially_with_a_cap_and_succeeds() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise TransientError("503")
        return "ok"

    out = retry(flaky, attempts=5, base_delay=0.5, max_delay=1.5, sleep=sleeps.append, rng=lambda: 1.0)
    assert out == "ok" and len(calls) == 4
    assert sleeps == [0.5, 1.0, 1.5]  # doubled, capped at max_delay


def test_retry_jitter_stays_within_the_bound() -> None:
    sleeps: list[float] = []
    with pytest.raises(TransientError):
        retry(
            lambda: (_ for _ in ()).throw(TransientError("x")),
            attempts=3,
            base_delay=2.0,
            sleep=sleeps.append,
            rng=lambda: 0.25,
        )
    assert sleeps == [0.5, 1.0]


def test_retry_gives_up_after_attempts_and_never_retries_other_errors() -> None:
    n: list[int] = []

    def always() -> None:
        n.append(1)
        raise TransientError(f"try {len(n)}")

    with pytest.raises(TransientError, match="try 3"):
        retry(always, attempts=3, sleep=lambda s: None)
    assert len(n) == 3
    m: list[int] = []

    def bad_request() -> None:
        m.append(1)
        raise ValueError("400")

    with pytest.raises(ValueError):
        retry(bad_request, attempts=5, sleep=lambda s: None)
    assert len(m) == 1


# -- circuit breaker -------------------------------------------------------------


def test_circuit_breaker_opens_fails_fast_and_recovers() -> None:
    now = [0.0]
    cb = CircuitBreaker("s3", threshold=2, cooldown=30, clock=lambda: now[0])
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise RemoteError("down")

    for _ in range(2):
        with pytest.raises(RemoteError):
            cb.call(down)
    assert cb.state == "open"
    with pytest.raises(CircuitOpenError, match="2 consecutive failures; not trying again for 30 s"):
        cb.call(down)
    assert len(calls) == 2  # failed fast, the service was not called
    now[0] = 31
    assert cb.state == "half-open"
    with pytest.raises(RemoteError):
        cb.call(down)  # the trial call fails: open again at once
    assert cb.state == "open"
    now[0] = 62
    assert cb.call(lambda: "up") == "up" and cb.state == "closed"


def test_circuit_breaker_ignores_caller_mistakes() -> None:
    cb = CircuitBreaker("x", threshold=1)

    def bad() -> None:
        raise OptionsError("bucket: bad")

    with pytest.raises(OptionsError):
        cb.call(bad)
    assert cb.state == "closed"


def test_open_breaker_stops_a_delivery(tmp_path: Path, qlcapsule_plugin, qlcapsule_cli) -> None:
    class Down(Deliverer):
        name = "down"
        calls = 0

        def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
            Down.calls += 1
            raise TransientError("down: HTTP 503")

    class Plugin:
        @hookimpl
        def qlcapsule_register_deliverers(self, register):  # type: ignore[no-untyped-def]
            register(Down)

    qlcapsule_plugin(Plugin(), name="down-plugin")
    root = write_capsule(tmp_path / "c", {"d": {"provider": "down"}})
    art = tmp_path / "a.bin"
    art.write_bytes(b"x")
    for _ in range(5):
        res = qlcapsule_cli("deliver", str(root), "-t", "d", "-a", str(art))
        assert res.exit_code == 3 and res.stderr == "error: down: HTTP 503\n"
    res = qlcapsule_cli("deliver", str(root), "-t", "d", "-a", str(art))
    assert res.exit_code == 3 and "down: 5 consecutive failures; not trying again" in res.stderr
    assert Down.calls == 5


# -- small helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 3600), (60, 60), ("30m", 1800), ("12h", 43200), ("7d", 604800), (" 90s ", 90)]
)
def test_signed_url_expiry(value: Any, seconds: int) -> None:
    assert signed_url_expiry(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("8d", "more than 7 days"),
        (604801, "more than 7 days"),
        ("1w", "not a duration"),
        (0, "at least 1 second"),
        (True, "expected seconds"),
    ],
)
def test_signed_url_expiry_refused(value: Any, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        signed_url_expiry(value)


def test_placeholder_types_refuse_typos_but_keep_free_text() -> None:
    """Expandable/ObjectPrefix/ExpandableText: the option types of {name}/{version} strings."""
    from pydantic import BaseModel, ValidationError

    from qlcapsule import Expandable, ExpandableText, ObjectPrefix

    class Opts(BaseModel):
        branch: Expandable = "b"
        message: ExpandableText = "m"
        prefix: ObjectPrefix = "p/"

    ok = Opts(branch="rel/{name}-{version}", message='{name} {version}\n\nbody {"json": 1}', prefix="a/{name}/")
    assert ok.message.endswith('{"json": 1}')  # several lines and non-placeholder braces are kept
    for field, value, needle in [
        ("branch", "rel/{vesion}", "unknown placeholder {vesion}"),
        ("branch", "rel\nx", "control character"),
        ("message", "{nmae} done", "unknown placeholder {nmae}"),
        ("prefix", "/abs/{name}", "must be relative"),
        ("prefix", "a\\b", "must be relative"),
        ("prefix", "./{name}", "segments are not allowed"),
    ]:
        with pytest.raises(ValidationError, match=re.escape(needle)):
            Opts(**{field: value})


def test_read_secret_names_the_variable_and_registers_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QLC_TEST_TOKEN", raising=False)
    with pytest.raises(CredentialsError, match=r"^missing credential: environment variable QLC_TEST_TOKEN is not set$"):
        read_secret("QLC_TEST_TOKEN")
    assert read_secret("QLC_TEST_TOKEN", required=False) is None
    monkeypatch.setenv("QLC_TEST_TOKEN", "AccountName=x;AccountKey=k3y-part-only;EndpointSuffix=y")
    read_secret("QLC_TEST_TOKEN")
    assert scrub_error(RuntimeError("signing with k3y-part-only failed")) == "signing with *** failed"


def test_scrub_error_removes_url_signatures_and_auth_headers() -> None:
    exc = RuntimeError(
        "GET https://b.s3.amazonaws.com/k?X-Amz-Signature=abcdef123&X-Amz-Date=1 failed\n"
        "headers {'Authorization': 'Bearer tok-123456'} sig=Zm9v&se=1"
    )
    text = scrub_error(exc)
    assert "abcdef123" not in text and "tok-123456" not in text and "Zm9v" not in text
    assert "\n" not in text and "X-Amz-Date=1" in text


# -- webhooks ----------------------------------------------------------------------------


class Hook:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append((dict(self.headers), body))
                status = hook.statuses.pop(0) if hook.statuses else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/TOKEN-IN-PATH"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.server.shutdown()
    h.server.server_close()


def test_webhook_signature_like_github(hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    from qlcapsule.format.model import WebhookConfig

    monkeypatch.setenv("HOOK_SECRET", CANARY_HOOK)
    results = notify([WebhookConfig(url=hook.url, secret_env="HOOK_SECRET")], "success", {"capsule": "demo@1.0.0"})
    assert [r.ok for r in results] == [True]
    ((headers, body),) = hook.requests
    assert json.loads(body) == {"event": "delivery.success", "capsule": "demo@1.0.0"}
    expected = "sha256=" + hmac.new(CANARY_HOOK.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected == sign_body(CANARY_HOOK, body)
    assert headers["Content-Type"] == "application/json" and headers["X-Qlcapsule-Event"] == "delivery.success"


def test_webhook_retries_transient_errors_and_is_bounded(hook: Hook) -> None:
    from qlcapsule.format.model import WebhookConfig

    slept: list[float] = []
    hook.statuses = [503, 500]
    (ok,) = notify([WebhookConfig(url=hook.url)], "failure", {"error": "x"}, sleep=slept.append)
    assert ok.ok and ok.status == 204 and len(hook.requests) == 3 and len(slept) == 2
    hook.requests.clear()
    hook.statuses = [500] * 10
    (bad,) = notify([WebhookConfig(url=hook.url)], "failure", {}, attempts=3, sleep=slept.append)
    assert not bad.ok and len(hook.requests) == 3  # bounded, and no exception
    assert "TOKEN-IN-PATH" not in (bad.host + (bad.error or ""))
    hook.requests.clear()
    hook.statuses = [404]
    (gone,) = notify([WebhookConfig(url=hook.url)], "failure", {}, sleep=slept.append)
    assert gone.status == 404 and len(hook.requests) == 1  # 4xx is not retried
    assert notify([WebhookConfig(url=hook.url, events=["success"])], "failure", {}) == []


def test_deliver_notifies_on_success_and_failure(tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", CANARY_HOOK)
    target = {
        "provider": "local",
        "options": {"path": str(tmp_path / "out")},
        "notify": [{"url": hook.url, "secret_env": "HOOK_SECRET"}],
    }
    root = write_capsule(tmp_path / "c", {"out": target})
    art = tmp_path / "a.bin"
    art.write_bytes(b"one")
    (receipt,) = deliver_capsule(root, "out", [art])
    art.write_bytes(b"two")
    with pytest.raises(qlcapsule.ConflictError):
        deliver_capsule(root, "out", [art])
    (h1, ok), (h2, failed) = hook.requests
    ok_doc, failed_doc = json.loads(ok), json.loads(failed)
    assert ok_doc["event"] == "delivery.success" and ok_doc["receipts"][0]["sha256"] == receipt.sha256
    assert failed_doc["event"] == "delivery.failure" and "exists with different content" in failed_doc["error"]
    for headers, body in hook.requests:
        assert headers[SIGNATURE_HEADER] == sign_body(CANARY_HOOK, body)
    monkeypatch.delenv("HOOK_SECRET")
    with pytest.raises(CredentialsError, match="HOOK_SECRET"):  # checked before anything is sent
        deliver_capsule(root, "out", [art], dry_run=True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https webhook URLs are allowed (got 'file:')"),
        ("ftp://x", "only http and https webhook URLs are allowed (got 'ftp:')"),
        ("javascript:alert(1)", "only http and https webhook URLs are allowed (got 'javascript:')"),
        ("hooks.example.com/x", "only http and https webhook URLs are allowed"),
        ("https:///no-host", "a webhook URL needs a host"),
        ("https://h:99999/", "not a valid URL"),
        ("https://h/a b", "control characters or spaces are not allowed"),
    ],
)
def test_bad_webhook_url_is_refused_with_the_options(
    tmp_path: Path, hook: Hook, qlcapsule_cli, url: str, message: str
) -> None:
    out = tmp_path / "out"
    target = {"provider": "local", "options": {"path": str(out)}, "notify": [{"url": hook.url}, {"url": url}]}
    root = write_capsule(tmp_path / "c", {"out": target})
    for args in ([], ["--dry-run"]):
        res = qlcapsule_cli("deliver", str(root), "-t", "out", *args)
        assert res.exit_code == 2, res.output
        (line,) = res.stderr.splitlines()
        assert line.startswith(f"error: {tmp_path / 'targets.yaml'}:") and message in line
        assert ": targets.out.notify[1].url: " in line
    assert not out.exists() and hook.requests == []  # nothing exported, delivered or notified


def test_plain_http_webhooks_stay_allowed(tmp_path: Path, hook: Hook) -> None:
    from qlcapsule.steps.notify import webhook_url_problem

    assert webhook_url_problem(hook.url) is None
    assert webhook_url_problem("http://hooks.internal.example:8080/x") is None  # as documented
    assert webhook_url_problem("HTTPS://Hooks.Example.com/x?token=1") is None


# -- targets and the local deliverer ---------------------------------------------------


def test_default_target_is_local_dist_and_exports_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_capsule(tmp_path / "c")
    monkeypatch.chdir(tmp_path)
    (receipt,) = deliver_capsule(root)
    out = tmp_path / "dist" / "demo-1.0.0.tar.gz"
    assert receipt.location == str(out) and receipt.provider == "local" and receipt.target == "local"
    assert receipt.sha256 == hashlib.sha256(out.read_bytes()).hexdigest() and receipt.size == out.stat().st_size
    assert receipt.url == out.as_uri()
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == ["demo-1.0.0.tar.gz"]  # no temp files


def test_each_step_is_told_as_it_happens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_capsule(tmp_path / "c")
    monkeypatch.chdir(tmp_path)
    seen: list[dict[str, Any]] = []
    (receipt,) = deliver_capsule(root, on_status=seen.append)
    assert [s["status"] for s in seen] == ["planned", "uploading", "verifying", "delivered"]
    assert {(s["capsule"], s["version"], s["target"], s["provider"]) for s in seen} == {
        ("demo", "1.0.0", "local", "local")
    }
    assert [s["bytes"] for s in seen] == [None, receipt.size, receipt.size, receipt.size]  # exported after planned
    assert seen[-1]["url"] == receipt.url and seen[-1]["detail"] is None
    seen.clear()
    deliver_capsule(root, on_status=seen.append)  # the same bytes again: delivered, and says so
    assert seen[-1]["status"] == "delivered" and seen[-1]["detail"] == "the target held these bytes already"
    seen.clear()
    deliver_capsule(root, dry_run=True, on_status=seen.append)
    assert seen == []  # a dry run delivers nothing, so it tells nothing


def test_a_failed_step_is_told_in_one_scrubbed_line(tmp_path: Path, qlcapsule_plugin) -> None:
    class Liar(Deliverer):
        name = "liar2"

        def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
            return [Receipt("liar2", target, "somewhere", "0" * 64, a.size) for a in artifacts]

    class Plugin:
        @hookimpl
        def qlcapsule_register_deliverers(self, register):  # type: ignore[no-untyped-def]
            register(Liar)

    qlcapsule_plugin(Plugin(), name="liar2-plugin")
    root = write_capsule(tmp_path / "c", {"l": {"provider": "liar2"}})
    art = tmp_path / "a.bin"
    art.write_bytes(b"xy")
    seen: list[dict[str, Any]] = []
    with pytest.raises(qlcapsule.IntegrityError):
        deliver_capsule(root, "l", [art], on_status=seen.append)
    assert [(s["status"], s["bytes"]) for s in seen] == [
        ("planned", 2),
        ("uploading", 2),
        ("verifying", 2),
        ("failed", None),
    ]
    assert "matches no artifact" in seen[-1]["detail"] and "\n" not in seen[-1]["detail"]


def test_dry_run_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli) -> None:
    root = write_capsule(tmp_path / "c")
    monkeypatch.chdir(tmp_path)
    res = qlcapsule_cli("deliver", str(root), "--dry-run", "--format", "zip", "--json")
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout)["result"]["receipts"]
    assert r["location"] == "dist/demo-1.0.0.zip" and r["extra"] == {"dry_run": True}
    assert not (tmp_path / "dist").exists()


def test_dry_run_fails_like_deliver_on_a_modified_capsule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli
) -> None:
    root = write_capsule(tmp_path / "c")
    (root / "app.py").write_text("print(2)\n", encoding="utf-8")  # changed after sealing
    monkeypatch.chdir(tmp_path)
    dry = qlcapsule_cli("deliver", str(root), "--dry-run")
    real = qlcapsule_cli("deliver", str(root))
    assert dry.exit_code == real.exit_code == 1, dry.output
    assert dry.stderr == real.stderr == f"error: {root}: modified: app.py\n"
    assert dry.stdout == "" and not (tmp_path / "dist").exists()
    art = tmp_path / "a.bin"
    art.write_bytes(b"x")  # given artifacts are what is sent: the capsule's files are not read
    assert qlcapsule_cli("deliver", str(root), "--dry-run", "-a", str(art)).exit_code == 0


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_json_reports_a_failed_delivery_on_stdout(tmp_path: Path, qlcapsule_cli, dry_run: list[str]) -> None:
    root = write_capsule(tmp_path / "c", {"out": {"provider": "local", "options": {"path": str(tmp_path / "out")}}})
    ok = qlcapsule_cli("deliver", str(root), "-t", "out", "--json", *dry_run)
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    (root / "app.py").write_text("print(2)\n", encoding="utf-8")
    res = qlcapsule_cli("deliver", str(root), "-t", "out", "--json", *dry_run)
    assert res.exit_code == 1 and res.stderr == f"error: {root}: modified: app.py\n"
    doc = json.loads(res.stdout)
    assert doc == {
        "ok": False,
        "command": "deliver",
        "exit_code": 1,
        "error": {"message": f"{root}: modified: app.py", "file": None, "line": None, "key": None, "problems": []},
        "result": None,
    }
    bad = qlcapsule_cli("deliver", str(root), "-t", "nope", "--json", *dry_run)
    assert bad.exit_code == 2 and json.loads(bad.stdout)["exit_code"] == 2
    assert "no target 'nope'" in json.loads(bad.stdout)["error"]["message"]


def test_local_conflict_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    root = write_capsule(
        tmp_path / "c",
        {
            "keep": {"provider": "local", "options": {"path": str(out)}},
            "replace": {"provider": "local", "options": {"path": str(out), "overwrite": True}},
        },
    )
    art = tmp_path / "a.bin"
    art.write_bytes(b"one")
    deliver_capsule(root, "keep", [art])
    (again,) = deliver_capsule(root, "keep", [art])
    assert again.extra == {"existing": True}
    art.write_bytes(b"two")
    with pytest.raises(qlcapsule.ConflictError, match="exists with different content"):
        deliver_capsule(root, "keep", [art])
    assert (out / "a.bin").read_bytes() == b"one"
    deliver_capsule(root, "replace", [art])
    assert (out / "a.bin").read_bytes() == b"two"
    assert sorted(p.name for p in out.iterdir()) == ["a.bin"]


@pytest.mark.parametrize(
    ("targets", "args", "message", "in_capsule"),
    [
        (
            {},
            ["-t", "prod"],
            "c/capsule.yaml: targets: no target 'prod' (defined: none; {ops} defines: none)",
            False,
        ),
        (
            {"a": {"provider": "local"}, "b": {"provider": "local"}},
            [],
            "several targets are defined (a, b); name one with --target",
            True,
        ),
        ({"x": {"provider": "ftp"}}, ["-t", "x"], "{ops}:3: targets.x.provider: unknown deliverer 'ftp'", False),
        ({"x": {"provider": "ftp"}}, ["-t", "x"], "c/capsule.yaml: targets.x.provider: unknown deliverer 'ftp'", True),
        (
            {"x": {"provider": "local", "options": {"paht": "d"}}},
            ["-t", "x"],
            "{ops}:3: targets.x.options: paht: unknown key",
            False,
        ),
        (
            {"x": {"provider": "local", "options": {"paht": "d"}}},
            ["-t", "x"],
            "c/capsule.yaml: targets.x.options: paht: unknown key",
            True,
        ),
        (
            {"x": {"provider": "s3", "options": {"bucket": "rel", "prefix": "../../{nme}/"}}},
            ["-t", "x"],
            "targets.x.options: prefix: unknown placeholder {nme} in '../../{nme}/' (known: {name}, {version})",
            False,
        ),
        (
            {"x": {"provider": "gcs", "options": {"bucket": "rel", "prefix": "a/../{name}/"}}},
            ["-t", "x"],
            "prefix: 'a/../{name}/': '.' and '..' segments are not allowed in an object name prefix",
            False,
        ),
        (
            {"x": {"provider": "local", "options": {"path": "out/{Version}"}}},
            ["-t", "x"],
            "targets.x.options: path: unknown placeholder {Version}",
            True,
        ),
    ],
)
def test_bad_targets_are_one_line(
    tmp_path: Path, qlcapsule_cli, targets: dict[str, Any], args: list[str], message: str, in_capsule: bool
) -> None:
    root = write_capsule(tmp_path / "c", targets, in_capsule=in_capsule)
    res = qlcapsule_cli("deliver", str(root), *args, "--dry-run")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    expected = message.replace("{ops}", str(tmp_path / "targets.yaml"))
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_receipt_that_does_not_match_is_refused(tmp_path: Path, qlcapsule_plugin) -> None:
    class Liar(Deliverer):
        name = "liar"

        def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
            return [Receipt("liar", target, "somewhere", "0" * 64, a.size) for a in artifacts]

    class Plugin:
        @hookimpl
        def qlcapsule_register_deliverers(self, register):  # type: ignore[no-untyped-def]
            register(Liar)

    qlcapsule_plugin(Plugin(), name="liar-plugin")
    root = write_capsule(tmp_path / "c", {"l": {"provider": "liar"}})
    art = tmp_path / "a.bin"
    art.write_bytes(b"x")
    with pytest.raises(qlcapsule.IntegrityError, match="matches no artifact"):
        deliver_capsule(root, "l", [art])


def test_receipts_become_a_git_note_when_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    root = write_capsule(tmp_path / "c", {"out": {"provider": "local", "options": {"path": str(tmp_path / "out")}}})
    assert qlcapsule_cli("commit", str(root)).exit_code == 0
    res = qlcapsule_cli("deliver", str(root), "-t", "out", "--json")
    assert res.exit_code == 0, res.output
    (receipt,) = json.loads(res.stdout)["result"]["receipts"]
    note = subprocess.run(
        ["git", "-C", str(tmp_path), "notes", "--ref=qlcapsule", "show", "refs/capsules/demo/heads/main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert receipt in json.loads(note)[-1]["receipts"]


def test_a_signed_url_is_shown_but_never_kept_in_the_git_note(tmp_path: Path, qlcapsule_plugin) -> None:
    """A presigned URL is a bearer credential until it expires: the note keeps only its address."""

    class Presigner(Deliverer):
        name = "presigner"

        def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
            url = "https://b.example/k?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=abc123"
            return [Receipt("presigner", target, "b/k", a.sha256, a.size, url=url) for a in artifacts]

    class Plugin:
        @hookimpl
        def qlcapsule_register_deliverers(self, register):  # type: ignore[no-untyped-def]
            register(Presigner)

    qlcapsule_plugin(Plugin(), name="presigner-plugin")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    root = write_capsule(tmp_path / "c", {"p": {"provider": "presigner"}})
    from qlcapsule.store.versions import commit_capsule

    commit_capsule(root)
    art = tmp_path / "a.bin"
    art.write_bytes(b"x")
    (receipt,) = deliver_capsule(root, "p", [art])
    assert receipt.url and "X-Amz-Signature=abc123" in receipt.url  # the caller gets the URL it asked for
    note = subprocess.run(
        ["git", "-C", str(tmp_path), "notes", "--ref=qlcapsule", "show", "refs/capsules/demo/heads/main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "abc123" not in note and "AKIAEXAMPLE" not in note
    (kept,) = json.loads(note)[-1]["receipts"]
    assert kept["url"] == "https://b.example/k" and kept["url_signed"] is True
    told: list[dict[str, Any]] = []
    deliver_capsule(root, "p", [art], on_status=told.append)
    assert told[-1]["status"] == "delivered" and told[-1]["url"] == "https://b.example/k"  # nor in a status


# -- canaries: no secret in any output, at any log level ------------------------------------


class Leaky(Deliverer):
    """A deliverer that does everything wrong with its secrets, to prove the core scrubs them."""

    name = "leaky"

    class Options(qlcapsule.Options):
        endpoint: str = "http://127.0.0.1:9"
        fail: bool = False

    options: Options

    def check(self, capsule: Capsule) -> None:
        token = read_secret("LEAKY_TOKEN")
        qlcapsule.get_logger("leaky").debug("using token %s with %s", token, self.options.endpoint)

    def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
        token = read_secret("LEAKY_TOKEN")
        if self.options.fail:
            raise RuntimeError(f"401 for {self.options.endpoint} with token={token} Authorization: Bearer {token}")
        return [
            Receipt(
                "leaky", target, f"{self.options.endpoint}/{a.name}", a.sha256, a.size, extra={"note": f"t={token}"}
            )
            for a in artifacts
        ]


@pytest.mark.parametrize("fail", [False, True])
@pytest.mark.parametrize("flags", [["-vv"], ["-vv", "--log-format", "json"], ["--debug"]])
def test_canary_secrets_never_printed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    qlcapsule_plugin,
    qlcapsule_cli,
    hook: Hook,
    fail: bool,
    flags: list[str],
) -> None:
    class Plugin:
        @hookimpl
        def qlcapsule_register_deliverers(self, register):  # type: ignore[no-untyped-def]
            register(Leaky)

    qlcapsule_plugin(Plugin(), name="leaky-plugin")
    monkeypatch.setenv("LEAKY_TOKEN", CANARY_ENV)
    monkeypatch.setenv("HOOK_SECRET", CANARY_HOOK)
    target = {
        "provider": "leaky",
        "options": {"endpoint": f"http://deliver:{CANARY_OPT}@127.0.0.1:9", "fail": fail},
        "notify": [{"url": hook.url, "secret_env": "HOOK_SECRET"}],
    }
    root = write_capsule(tmp_path / "c", {"l": target})
    art = tmp_path / "a.bin"
    art.write_bytes(b"x")
    outputs = []
    for extra in (["--dry-run"], [], ["--json"]):
        res = qlcapsule_cli(*flags, "deliver", str(root), "-t", "l", "-a", str(art), *extra)
        assert res.exit_code == (3 if fail and extra != ["--dry-run"] else 0), res.output
        outputs.append(res.output)
    text = "\n".join(outputs) + "\n".join(body.decode() for _, body in hook.requests)
    assert "***" in text  # the secrets were there to leak, and were scrubbed
    for canary in (CANARY_ENV, CANARY_OPT, CANARY_HOOK):
        assert canary not in text


def test_dry_run_location_expands_placeholders(make_capsule) -> None:
    """--dry-run once printed s3://bucket/{name}/{version}/...: describe now sees the capsule."""
    from qlcapsule import Artifact
    from qlcapsule.plugins.manager import instantiate

    capsule = make_capsule({"a.txt": "a"}, name="orders", version="1.2.0")
    art = Artifact(path=capsule.root / "a.txt", name="orders-1.2.0.tar.gz", sha256="0" * 64, size=1)
    cases = {
        "s3": ({"bucket": "my-bucket"}, "s3://my-bucket/orders/1.2.0/orders-1.2.0.tar.gz"),
        "gcs": ({"bucket": "my-bucket"}, "gs://my-bucket/orders/1.2.0/orders-1.2.0.tar.gz"),
        "azure": ({"container": "caps"}, "azure://caps/orders/1.2.0/orders-1.2.0.tar.gz"),
        "local": ({"path": "out/{name}-{version}"}, "out/orders-1.2.0/orders-1.2.0.tar.gz"),
    }
    for provider, (options, expected) in cases.items():
        deliverer = instantiate("deliverer", provider, options)
        assert deliverer.describe(capsule, art) == expected, provider
    assert capsule.expand("{name}:{version}:{other}") == "orders:1.2.0:{other}"


# -- who defines a target: the operator's targets file, not capsule.yaml ----------------------


class Recorder(ThreadingHTTPServer):
    """A loopback HTTP server that records every request and answers 500."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.seen.append(f"{self.command} {self.path}\n{self.headers}\n{body!r}")
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_HEAD = do_PATCH = _any

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _hostile_targets(url: str) -> dict[str, Any]:
    """What a pull request's capsule.yaml can say: the operator's secret, sent to a server it controls."""
    return {
        "github": {"provider": "github", "options": {"repository": "a/b", "base_url": url, "token_env": "CANARY_KEY"}},
        "gitlab": {"provider": "gitlab", "options": {"project": "a/b", "url": url, "token_env": "CANARY_KEY"}},
        "git": {"provider": "git", "options": {"url": f"{url}/x.git", "token_env": "CANARY_KEY"}},
        "oci": {"provider": "oci", "options": {"registry": url.removeprefix("http://"), "repository": "a/b"}},
        "s3": {"provider": "s3", "options": {"bucket": "b", "endpoint_url": url}},
        "hook": {"provider": "local", "options": {"path": "out"}, "notify": [{"url": url, "secret_env": "CANARY_KEY"}]},
    }


@pytest.mark.parametrize("name", ["github", "gitlab", "git", "oci", "s3", "hook"])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_capsule_defined_target_never_gets_a_credential(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    qlcapsule_cli,
    recorder: Recorder,
    name: str,
    dry_run: list[str],
) -> None:
    """The operator's secrets stay home whatever a capsule.yaml defines: refused before any byte is sent."""
    for var in ("CANARY_KEY", "GITHUB_TOKEN", "GITLAB_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, CANARY_ENV)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACANARY")
    monkeypatch.chdir(tmp_path)
    root = write_capsule(tmp_path / "c", _hostile_targets(recorder.url), in_capsule=True)
    res = qlcapsule_cli("-vv", "deliver", str(root), "-t", name, *dry_run)
    assert res.exit_code == 2, res.output
    (line,) = [x for x in res.stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith(f"error: {root / 'capsule.yaml'}:")
    assert "define this target in the operator's targets file" in line and "docs/security.md" in line
    assert recorder.seen == [] and not (tmp_path / "out").exists()
    assert CANARY_ENV not in res.output


def test_the_refusal_names_the_line_and_the_provider(tmp_path: Path, qlcapsule_cli, recorder: Recorder) -> None:
    root = write_capsule(tmp_path / "c", _hostile_targets(recorder.url), in_capsule=True)
    text = (root / "capsule.yaml").read_text(encoding="utf-8").splitlines()
    line = text.index("  github:") + 1
    res = qlcapsule_cli("deliver", str(root), "-t", "github")
    assert res.stderr == (
        f"error: {root / 'capsule.yaml'}:{line}: targets.github: provider 'github' uses credentials; "
        "define this target in the operator's targets file (--targets-file, QLCAPSULE_TARGETS_FILE or "
        "~/.config/qlcapsule/targets.yaml), see docs/security.md\n"
    )


def test_ship_refuses_a_capsule_defined_target_before_any_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli, recorder: Recorder
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", CANARY_ENV)
    monkeypatch.chdir(tmp_path)
    root = write_capsule(tmp_path / "c", _hostile_targets(recorder.url), in_capsule=True)
    lock = (root / "capsule.lock").read_bytes()
    res = qlcapsule_cli("ship", str(root), "-t", "github", "--no-commit")
    assert res.exit_code == 2 and "targets.github: provider 'github' uses credentials" in res.stderr
    assert recorder.seen == [] and not (tmp_path / "dist").exists() and (root / "capsule.lock").read_bytes() == lock


def test_the_operator_definition_wins_over_the_capsules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli, recorder: Recorder
) -> None:
    """A pull request redefining the pinned target 'releases' changes nothing: the operator's is used."""
    monkeypatch.setenv("GITHUB_TOKEN", CANARY_ENV)
    monkeypatch.chdir(tmp_path)
    hostile = _hostile_targets(recorder.url)["github"]
    root = write_capsule(tmp_path / "c", {"releases": hostile}, in_capsule=True)
    ops = tmp_path / "targets.yaml"
    ops.write_text(f"targets:\n  releases:\n    provider: local\n    options: {{path: {tmp_path / 'rel'}}}\n", "utf-8")
    warned = f"{ops}'s definition is used; the one in {root / 'capsule.yaml'} is ignored"
    for args in (["-t", "releases"], []):  # named, or the capsule's only target
        res = qlcapsule_cli("deliver", str(root), *args)
        assert res.exit_code == 0, res.output
        assert warned in res.stderr or args == []  # said once per process
    assert (tmp_path / "rel" / "demo-1.0.0.tar.gz").is_file() and recorder.seen == []
    monkeypatch.setenv("QLCAPSULE_CAPSULE_TARGETS", "trust")  # the opt-in never outranks the operator's file
    assert qlcapsule_cli("deliver", str(root), "-t", "releases").exit_code == 0 and recorder.seen == []


def test_the_opt_in_restores_capsule_defined_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli, qlcapsule_plugin
) -> None:
    """QLCAPSULE_CAPSULE_TARGETS=trust or --trust-capsule-targets: capsule.yaml is operator content again."""
    seen: list[str | None] = []

    class Reader(Deliverer):
        name = "reader"

        def check(self, capsule: Capsule) -> None:
            seen.append(read_secret("CANARY_KEY"))

        def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
            return [Receipt("reader", target, a.name, a.sha256, a.size) for a in artifacts]

    class Plugin:
        @hookimpl
        def qlcapsule_register_deliverers(self, register):  # type: ignore[no-untyped-def]
            register(Reader)

    qlcapsule_plugin(Plugin(), name="reader-plugin")
    monkeypatch.setenv("CANARY_KEY", CANARY_ENV)
    root = write_capsule(tmp_path / "c", {"r": {"provider": "reader"}}, in_capsule=True)
    art = tmp_path / "a.bin"
    art.write_bytes(b"x")
    refused = qlcapsule_cli("deliver", str(root), "-t", "r", "-a", str(art))
    assert refused.exit_code == 2 and "provider 'reader' uses credentials" in refused.stderr and seen == []
    flag = qlcapsule_cli("deliver", str(root), "-t", "r", "-a", str(art), "--trust-capsule-targets")
    assert flag.exit_code == 0, flag.output
    monkeypatch.setenv("QLCAPSULE_CAPSULE_TARGETS", "trust")
    assert qlcapsule_cli("deliver", str(root), "-t", "r", "-a", str(art)).exit_code == 0
    assert seen == [CANARY_ENV, CANARY_ENV]
    monkeypatch.setenv("QLCAPSULE_CAPSULE_TARGETS", "yes")
    bad = qlcapsule_cli("deliver", str(root), "-t", "r", "-a", str(art))
    assert bad.exit_code == 2 and bad.stderr == (
        "error: QLCAPSULE_CAPSULE_TARGETS='yes': the only value is 'trust' (or leave it unset)\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("targets:\n  a: [unclosed\n", ":3: invalid YAML:"),
        ("targets:\n  a:\n    provider: nope\n", ":3: targets.a.provider: unknown deliverer 'nope'"),
        ("targets:\n  a:\n    provider: local\n    optoins: {}\n", ":4: targets.a.optoins: unknown key"),
        ("targets:\n  a:\n    provider: local\n    options: {paht: x}\n", ":4: targets.a.options: paht: unknown key"),
        ("target:\n  a: {provider: local}\n", ":1: target: unknown key"),
        ("targets:\n  a: {provider: local}\n  a: {provider: s3}\n", ":3: targets.a: duplicate key"),
        ("- a\n", ":1: expected a mapping with 'targets:' at the top level"),
        ("targets: {}\n" + "#" * (1024 * 1024), ": larger than 1024 KiB; not a targets file"),
        (None, ": no such file"),
    ],
)
def test_a_bad_operator_targets_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli, text: str | None, message: str
) -> None:
    ops = tmp_path / "ops.yaml"
    if text is not None:
        ops.write_text(text, encoding="utf-8")
    root = write_capsule(tmp_path / "c")
    monkeypatch.chdir(tmp_path)
    for how in ("flag", "env"):
        args = ["--targets-file", str(ops)] if how == "flag" else []
        monkeypatch.setenv("QLCAPSULE_TARGETS_FILE", str(ops))
        res = qlcapsule_cli("deliver", str(root), "-t", "a", "--dry-run", *args)
        assert res.exit_code == 2, res.output
        (line,) = res.stderr.splitlines()
        assert line.startswith(f"error: {ops}") and message in line, line
        ship = qlcapsule_cli("ship", str(root), "-t", "a", "--dry-run", *args)
        assert ship.exit_code == 2 and message in ship.stderr, ship.output
    assert not (tmp_path / "dist").exists()


def test_the_targets_file_is_found_flag_then_env_then_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli
) -> None:
    def ops(path: Path, out: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"targets:\n  rel: {{provider: local, options: {{path: {tmp_path / out}}}}}\n", "utf-8")
        return path

    root = write_capsule(tmp_path / "c")
    monkeypatch.delenv("QLCAPSULE_TARGETS_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert "no target 'rel'" in qlcapsule_cli("deliver", str(root), "-t", "rel").stderr
    ops(tmp_path / "xdg" / "qlcapsule" / "targets.yaml", "by-xdg")
    assert qlcapsule_cli("deliver", str(root), "-t", "rel").exit_code == 0
    monkeypatch.setenv("QLCAPSULE_TARGETS_FILE", str(ops(tmp_path / "env.yaml", "by-env")))
    assert qlcapsule_cli("deliver", str(root), "-t", "rel").exit_code == 0
    flag = ops(tmp_path / "flag.yaml", "by-flag")
    assert qlcapsule_cli("deliver", str(root), "-t", "rel", "--targets-file", str(flag)).exit_code == 0
    shipped = ops(tmp_path / "ship.yaml", "by-ship")
    assert qlcapsule_cli("ship", str(root), "-t", "rel", "--no-commit", "--targets-file", str(shipped)).exit_code == 0
    for out in ("by-xdg", "by-env", "by-flag", "by-ship"):
        assert (tmp_path / out / "demo-1.0.0.tar.gz").is_file(), out


def test_load_deliverer_refuses_a_raw_capsule_definition(tmp_path: Path) -> None:
    """A TargetConfig taken straight from capsule.yaml (no origin given) is the capsule's: refused."""
    from qlcapsule.steps.delivery import load_deliverer

    root = write_capsule(tmp_path / "c", {"x": {"provider": "s3", "options": {"bucket": "b"}}}, in_capsule=True)
    capsule = Capsule.load(root)
    with pytest.raises(qlcapsule.InputError, match="provider 's3' uses credentials"):
        load_deliverer("x", capsule.definition.targets["x"], capsule)
