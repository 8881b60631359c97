"""Webhooks from a real server to a real receiver on 127.0.0.1: signed bodies, bounded retries, a delivery log,
one send per event even with two servers on one database (SQLite file and a real PostgreSQL)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from catalog_fixtures import Key, LiveServer, Serve, Ship

from qlcapsule_server.client import publish


class Receiver:
    """Records every POST; answers the first ``fail_first`` with 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    outer.received.append((dict(self.headers), body))
                    failing = len(outer.received) <= outer.fail_first
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + 30
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} webhook requests arrived"
            time.sleep(0.02)
        return self.received

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=1)
    yield r
    r.close()


def _status(server: LiveServer, token: str, status: str) -> None:
    body = {"capsule": "orders", "version": "1.0.0", "target": "production", "provider": "s3", "status": status}
    assert server.call("/api/v1/deliveries", token, "POST", body)[0] == 200


def test_events_are_signed_retried_and_logged(serve: Serve, ship: Ship, release_key: Key, receiver: Receiver) -> None:
    server = serve(trust_file=str(release_key.trust))
    admin = server.token("admin")
    publish(server.url, admin, ship("orders", key=release_key))
    status, hook = server.call(
        "/api/v1/webhooks", admin, "POST", {"url": receiver.url, "statuses": ["delivered", "failed"]}
    )
    assert status == 201 and len(hook["secret"]) >= 32
    _status(server, admin, "uploading")  # not a status the subscription asked for
    _status(server, admin, "delivered")

    (first_headers, first), (headers, body) = receiver.wait_for(2)
    assert first == body  # the 500 was retried with the same signed body
    expected = "sha256=" + hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == expected == first_headers["X-Hub-Signature-256"]
    event = json.loads(body)
    assert event["event"] == "delivery"
    assert (event["delivery"]["capsule"], event["delivery"]["target"], event["delivery"]["status"]) == (
        "orders",
        "production",
        "delivered",
    )
    assert headers["X-Qlcapsule-Delivery"] == str(event["delivery"]["id"])

    deadline = time.monotonic() + 30
    while True:
        _, log = server.call(f"/api/v1/webhooks/{hook['id']}/deliveries", admin)
        if log["items"] and log["items"][0]["outcome"] != "sending":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [(i["event_id"], i["outcome"], i["status_code"], i["attempts"]) for i in log["items"]] == [
        (event["delivery"]["id"], "delivered", 204, 2)
    ]
    _, listed = server.call("/api/v1/webhooks", admin)
    assert listed["items"][0]["url"] == receiver.url and "secret" not in listed["items"][0]
    time.sleep(0.5)  # nothing else may arrive: the uploading event matched no subscription
    assert len(receiver.received) == 2


def test_two_servers_send_each_event_once(serve: Serve, ship: Ship, release_key: Key) -> None:
    receiver = Receiver()
    try:
        one = serve(trust_file=str(release_key.trust))
        two = serve(trust_file=str(release_key.trust))
        admin = one.token("admin")
        publish(one.url, admin, ship("orders", key=release_key))
        assert one.call("/api/v1/webhooks", admin, "POST", {"url": receiver.url, "secret": "s" * 32})[0] == 201
        for status in ("planned", "uploading", "delivered"):
            _status(two, admin, status)
        received = receiver.wait_for(3)
        time.sleep(1.0)  # both hubs have read every event by now; a duplicate would have arrived
        ids = [json.loads(body)["delivery"]["id"] for _, body in received]
        assert len(ids) == 3 == len(set(ids))
    finally:
        receiver.close()


def test_webhooks_need_the_admin_scope_and_a_safe_url(serve: Serve) -> None:
    server = serve()
    publisher, admin = server.token("publish"), server.token("admin")
    assert server.call("/api/v1/webhooks", publisher, "POST", {"url": "https://hooks.example/x"})[0] == 403
    status, answer = server.call("/api/v1/webhooks", admin, "POST", {"url": "http://hooks.example/x"})
    assert status == 400 and answer["error"] == "url: hooks.example is not this machine; webhooks use https"
    status, answer = server.call("/api/v1/webhooks", admin, "POST", {"url": "https://u:p@hooks.example/x"})
    assert status == 400 and "without credentials" in answer["error"]
    status, answer = server.call(
        "/api/v1/webhooks", admin, "POST", {"url": "https://hooks.example/x", "statuses": ["done"]}
    )
    assert status == 422 and answer["error"] == "request body: statuses: unknown status 'done'"
    status, hook = server.call("/api/v1/webhooks", admin, "POST", {"url": "https://hooks.example/x"})
    assert status == 201
    assert server.call(f"/api/v1/webhooks/{hook['id']}", admin, "DELETE")[0] == 204
    _, listed = server.call("/api/v1/webhooks", admin)
    assert [h["active"] for h in listed["items"]] == [False]
