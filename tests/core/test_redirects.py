"""The one redirect rule (resilience.check_redirect) and the two places that apply it outside a deliverer:
webhooks (urllib) and requests sessions (guard_redirects, used by the github and gitlab deliverers).

Real HTTP servers on 127.0.0.1: a redirecting one and a recording one on another port,
which for every credential rule is another host. Each test asserts what the far end received.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from qlcapsule.errors import OptionsError
from qlcapsule.format.model import WebhookConfig
from qlcapsule.resilience import (
    RedirectRefused,
    check_redirect,
    guard_redirects,
    is_loopback,
    operator_allows,
)
from qlcapsule.steps.notify import SIGNATURE_HEADER, notify

CANARY_HMAC = "CANARY-hmac-secret-0b1c2d"
CANARY_TOKEN = "CANARY-private-token-7e6f5a"

Answer = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


class Server:
    """Records (method, path, headers, body) of every request; ``answer`` decides the reply."""

    def __init__(self, answer: Answer) -> None:
        self.heard: list[tuple[str, str, dict[str, str], bytes]] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                srv.heard.append((self.command, self.path, dict(self.headers.items()), body))
                status, headers, data = answer(self)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def trap() -> Iterator[Server]:
    srv = Server(lambda h: (200, {"Content-Type": "application/json"}, b'{"ok": true}'))
    yield srv
    srv.stop()


@pytest.fixture
def redirector() -> Iterator[Callable[[int, str], Server]]:
    made: list[Server] = []

    def make(status: int, location: str) -> Server:
        def answer(h: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
            if h.path.startswith("/final"):
                return 200, {}, b"{}"
            return status, {"Location": location}, b""

        made.append(Server(answer))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def _leaks(srv: Server, *secrets: str) -> list[str]:
    return [
        f"{m} {p}" for m, p, h, b in srv.heard for s in secrets if any(s in v for v in h.values()) or s.encode() in b
    ]


# -- the rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "status", "url", "location", "expected"),
    [
        ("GET", 302, "https://a.example/x", "/y", ("https://a.example/y", True)),
        ("GET", 301, "https://a.example/x", "https://A.example:443/y", ("https://A.example:443/y", True)),
        ("GET", 302, "https://a.example/x", "https://b.example/y", ("https://b.example/y", False)),
        ("HEAD", 307, "http://127.0.0.1:1/x", "http://127.0.0.1:2/y", ("http://127.0.0.1:2/y", False)),
        ("POST", 307, "https://a.example/x", "/y", ("https://a.example/y", True)),
        ("PUT", 308, "https://a.example/x", "https://a.example/y", ("https://a.example/y", True)),
    ],
)
def test_rule_follows(method: str, status: int, url: str, location: str, expected: tuple[str, bool]) -> None:
    assert check_redirect(method, status, url, location, what="t") == expected


@pytest.mark.parametrize(
    ("method", "status", "url", "location", "words"),
    [
        ("POST", 307, "http://127.0.0.1:1/x", "http://127.0.0.1:2/y", "another host (http://127.0.0.1:2)"),
        ("PUT", 302, "https://a.example/x", "https://b.example/y", "another host (https://b.example:443)"),
        ("POST", 302, "https://a.example/x", "/y", "re-send it as a GET"),
        ("POST", 303, "https://a.example/x", "/y", "re-send it as a GET"),
        ("GET", 302, "https://a.example/x", "http://a.example/y", "https to plain http"),
        ("GET", 302, "https://a.example/x", "ftp://a.example/y", "unusable Location"),
        ("GET", 302, "https://a.example/x", None, "without a Location"),
    ],
)
def test_rule_refuses(method: str, status: int, url: str, location: str | None, words: str) -> None:
    with pytest.raises(RedirectRefused) as info:
        check_redirect(method, status, url, location, what="t")
    assert words in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 3
    assert "/y" not in str(info.value)  # only the origin is named: paths carry signatures


def test_loopback_and_operator_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(is_loopback(h) for h in ("localhost", "127.0.0.1", "127.9.8.7", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("registry.invalid", "10.0.0.1", "localhost.evil.invalid", "128.0.0.1"))
    monkeypatch.setenv("HOSTS", " reg.example , other.example:5000,[::2]:8")
    assert operator_allows("HOSTS", "reg.example", 443) and operator_allows("HOSTS", "REG.example", 5001)
    assert operator_allows("HOSTS", "other.example", 5000) and not operator_allows("HOSTS", "other.example", 5001)
    assert operator_allows("HOSTS", "::2", 8) and not operator_allows("HOSTS", "evil.example", 443)
    monkeypatch.setenv("HOSTS", "reg.example/path")
    with pytest.raises(OptionsError, match=r"^HOSTS: 'reg.example/path' is not host\[:port\]$"):
        operator_allows("HOSTS", "reg.example", 443)
    monkeypatch.delenv("HOSTS")
    assert not operator_allows("HOSTS", "localhost", 80)


# -- webhooks ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_webhook_never_follows_to_another_host(
    status: int, trap: Server, redirector: Callable[[int, str], Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another port is another host: the body and the HMAC never arrive there, as POST or as GET."""
    monkeypatch.setenv("HOOK_SECRET", CANARY_HMAC)
    hook = redirector(status, trap.url + "/stolen")
    (result,) = notify([WebhookConfig(url=hook.url + "/hook", secret_env="HOOK_SECRET")], "success", {"x": 1})
    assert trap.heard == []
    assert len(hook.heard) == 1 and SIGNATURE_HEADER in hook.heard[0][2]
    assert result.ok is False and "refusing" in (result.error or "")
    assert CANARY_HMAC not in (result.error or "") and "/stolen" not in (result.error or "")


def test_webhook_follows_307_on_its_own_origin_as_a_post(
    redirector: Callable[[int, str], Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", CANARY_HMAC)
    hook = redirector(307, "/final")
    (result,) = notify([WebhookConfig(url=hook.url + "/hook", secret_env="HOOK_SECRET")], "success", {"x": 1})
    assert result.ok is True, result
    (first, second) = hook.heard
    assert (first[0], second[0], second[1]) == ("POST", "POST", "/final")
    assert second[3] == first[3] and second[2][SIGNATURE_HEADER] == first[2][SIGNATURE_HEADER]


def test_webhook_post_is_never_turned_into_a_get(
    redirector: Callable[[int, str], Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = redirector(302, "/final")
    (result,) = notify([WebhookConfig(url=hook.url + "/hook")], "success", {"x": 1})
    assert result.ok is False and "re-send it as a GET" in (result.error or "")
    assert [m for m, *_ in hook.heard] == ["POST"]


# -- requests sessions (github, gitlab) ----------------------------------------------------


def _session() -> Any:
    requests = pytest.importorskip("requests", reason="requests comes with the github/gitlab extras")
    s = guard_redirects(requests.Session(), what="forge")
    s.headers["PRIVATE-TOKEN"] = CANARY_TOKEN
    s.cookies.set("session", CANARY_TOKEN)
    return s


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_session_get_to_another_host_carries_no_credential(
    status: int, trap: Server, redirector: Callable[[int, str], Server]
) -> None:
    src = redirector(status, trap.url + "/asset")
    s = _session()
    r = s.get(src.url + "/x", headers={"Authorization": f"Bearer {CANARY_TOKEN}", "Accept": "application/json"})
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert _leaks(trap, CANARY_TOKEN) == []
    (got,) = trap.heard
    assert got[1] == "/asset" and got[2].get("Accept") == "application/json"
    assert _leaks(src, CANARY_TOKEN)  # the origin itself did get them: the test can see a credential


def test_session_keeps_credentials_on_its_own_origin(redirector: Callable[[int, str], Server]) -> None:
    src = redirector(302, "/final")
    r = _session().get(src.url + "/x")
    assert r.status_code == 200
    assert [p for _, p, *_ in src.heard] == ["/x", "/final"]
    assert src.heard[1][2].get("PRIVATE-TOKEN") == CANARY_TOKEN


@pytest.mark.parametrize("status", [302, 307, 308])
def test_session_write_to_another_host_is_refused(
    status: int, trap: Server, redirector: Callable[[int, str], Server]
) -> None:
    src = redirector(status, trap.url + "/x")
    with pytest.raises(RedirectRefused, match=r"redirected a POST to another host \(http://127\.0\.0\.1:\d+\)"):
        _session().post(src.url + "/commit", json={"content": CANARY_TOKEN})
    assert trap.heard == []


def test_session_https_to_http_and_loops_are_refused(redirector: Callable[[int, str], Server]) -> None:
    with pytest.raises(RedirectRefused, match="https to plain http"):
        check_redirect("GET", 302, "https://a.example/x", "http://127.0.0.1:9/", what="forge")
    loop = redirector(302, "/again")
    with pytest.raises(RedirectRefused, match="more than 5 redirects"):
        _session().get(loop.url + "/x")
    assert len(loop.heard) == 6
