"""A small stdlib HTTP proxy that injects faults in front of a real local server.

No emulator (moto, Azurite, fake-gcs-server) can fail on purpose, so fault tests
put this proxy between the client and the server. It forwards every request
byte-for-byte (Host header included, so signatures stay valid) and, for requests
matching a rule, answers with an error status instead or hangs (so a test can
kill the process mid-upload).

In-process::

    proxy = FaultProxy("http://127.0.0.1:5000").start()
    proxy.fail(503, method="PUT", match=r"partNumber=2", times=2)

As a separate process (to be killed with SIGKILL, like a crashed server)::

    python faultproxy.py --upstream http://127.0.0.1:5000 --port 0 --hang 'PUT .*partNumber=2'

prints ``PORT <n>`` when listening and ``HANG <request line>`` when it starts holding a request.

:class:`Recorder` is the far end of a redirect: it records every request's headers.
"""

from __future__ import annotations

import argparse
import http.client
import re
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Rule:
    status: int
    method: str | None
    match: re.Pattern[str]
    times: int  # -1 = forever
    hang: bool = False
    hits: int = 0


@dataclass
class Seen:
    method: str
    path: str
    status: int
    injected: bool


@dataclass
class _State:
    rules: list[Rule] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultProxy:
    def __init__(self, upstream: str, port: int = 0) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.state = _State()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None
        self.on_hang: threading.Event = threading.Event()

    # -- control -------------------------------------------------------------
    def fail(self, status: int = 500, *, method: str | None = None, match: str = "", times: int = 1) -> Rule:
        """Answer ``status`` to the next ``times`` requests whose ``METHOD path?query`` matches ``match``."""
        rule = Rule(status, method, re.compile(match), times)
        with self.state.lock:
            self.state.rules.append(rule)
        return rule

    def hang(self, *, method: str | None = None, match: str = "") -> Rule:
        rule = Rule(0, method, re.compile(match), 1, hang=True)
        with self.state.lock:
            self.state.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.state.lock:
            self.state.rules.clear()
            self.state.seen.clear()

    def seen(self, method: str | None = None, match: str = "") -> list[Seen]:
        rx = re.compile(match)
        with self.state.lock:
            return [s for s in self.state.seen if (method is None or s.method == method) and rx.search(s.path)]

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the handler -----------------------------------------------------------
    def _pick(self, method: str, path: str) -> Rule | None:
        with self.state.lock:
            for rule in self.state.rules:
                if rule.times == 0 or (rule.method and rule.method != method):
                    continue
                if rule.match.search(path):
                    rule.hits += 1
                    if rule.times > 0:
                        rule.times -= 1
                    return rule
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                return

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                body = self._body()
                rule = proxy._pick(self.command, self.path)
                if rule is not None and rule.hang:
                    proxy.on_hang.set()
                    print(f"HANG {self.command} {self.path}", flush=True)
                    time.sleep(3600)
                    return
                if rule is not None:
                    payload = f"<Error><Code>InjectedFault</Code><Message>injected {rule.status}</Message></Error>"
                    data = payload.encode()
                    self.send_response(rule.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    with proxy.state.lock:
                        proxy.state.seen.append(Seen(self.command, self.path, rule.status, True))
                    return
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                if body or self.command in ("PUT", "POST", "PATCH"):
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                        self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()
                with proxy.state.lock:
                    proxy.state.seen.append(Seen(self.command, self.path, resp.status, False))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        return Handler


@dataclass
class Heard:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Recorder:
    """A loopback HTTP server that records every request (headers and body) and answers ``status``.

    The other end of a redirect or a token realm: tests point a server's answer at it
    and assert what arrived (or that nothing did). Its port differs from every other
    server's, so for the credential rules it is another host.
    """

    def __init__(self, status: int = 404, body: bytes = b'{"message": "Not Found"}') -> None:
        self.status, self.body = status, body
        self.heard: list[Heard] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with recorder._lock:
                    recorder.heard.append(Heard(self.command, self.path, dict(self.headers.items()), body))
                self.send_response(recorder.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(recorder.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(recorder.body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="recorder", daemon=True).start()

    def carried(self, *secrets: str) -> list[str]:
        """Every header or body of a recorded request that contains one of ``secrets``."""
        with self._lock:
            found = []
            for h in self.heard:
                for k, v in h.headers.items():
                    found += [f"{h.method} {h.path} {k}" for s in secrets if s in v]
                found += [f"{h.method} {h.path} body" for s in secrets if s.encode() in h.body]
            return found

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--hang", default=None, help="'METHOD regex': hold the first matching request forever")
    args = ap.parse_args(argv)
    proxy = FaultProxy(args.upstream, args.port)
    if args.hang:
        method, _, rx = args.hang.partition(" ")
        proxy.hang(method=method or None, match=rx)
    print(f"PORT {proxy.port}", flush=True)
    proxy._server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
