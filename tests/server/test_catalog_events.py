"""Live delivery status as Server-Sent Events from a real server: filtered, resumable with Last-Event-ID, and
shared by two servers on one database (SQLite file and a real PostgreSQL)."""

from __future__ import annotations

import time

import pytest
from catalog_fixtures import Key, LiveServer, Serve, Ship, Subscriber

from qlcapsule_server.client import publish

STEPS = ("planned", "uploading", "verifying", "delivered")


def _report(server: LiveServer, token: str, target: str, status: str, version: str = "1.0.0") -> None:
    body = {"capsule": "orders", "version": version, "target": target, "provider": "s3", "status": status}
    assert server.call("/api/v1/deliveries", token, "POST", body)[0] == 200


def test_status_changes_stream_as_they_happen_filtered_and_resumable(
    serve: Serve, ship: Ship, release_key: Key
) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    publish(server.url, token, ship("orders", key=release_key))
    everything = Subscriber(server, token, count=len(STEPS) + 1)
    production = Subscriber(server, token, "?target=production&status=delivered")
    for step in STEPS:
        _report(server, token, "staging", step)
    _report(server, token, "production", "delivered")

    seen = everything.result()
    assert [(e["target"], e["status"]) for e in seen] == [("staging", s) for s in STEPS] + [("production", "delivered")]
    assert {(e["capsule"], e["version"], e["provider"]) for e in seen} == {("orders", "1.0.0", "s3")}
    assert [e["target"] for e in production.result()] == ["production"]

    # a client that saw the second event resumes from there and gets the rest, in order
    resumed = Subscriber(server, token, "?capsule=orders", count=3, last_id=seen[1]["id"])
    assert [e["id"] for e in resumed.result()] == [e["id"] for e in seen[2:]]
    assert server.call("/api/v1/events?status=done", token)[0] == 422


def test_each_event_keeps_the_url_of_its_own_step(serve: Serve, ship: Ship, release_key: Key) -> None:
    """A subscriber that reads the timeline after the delivery ended sees each step as it was reported: no URL
    while planned and uploading, the delivered URL on delivered (the events read the delivery's latest URL)."""
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    publish(server.url, token, ship("orders", key=release_key))
    where = {"planned": None, "uploading": None, "verifying": None, "delivered": "s3://bucket/orders-1.0.0.tgz"}
    for step, url in where.items():
        body = {"capsule": "orders", "version": "1.0.0", "target": "t", "provider": "s3", "status": step}
        assert server.call("/api/v1/deliveries", token, "POST", {**body, "url": url})[0] == 200
    seen = Subscriber(server, token, "?target=t", count=len(STEPS), last_id=0).result()
    assert [(e["status"], e["url"]) for e in seen] == list(where.items())
    _, found = server.call("/api/v1/capsules/orders/versions/1.0.0/deliveries", token)
    (t,) = [d for d in found["items"] if d["target"] == "t"]
    assert [(e["status"], e["url"]) for e in t["timeline"]] == list(where.items())


def test_two_servers_on_one_database_share_events(serve: Serve, ship: Ship, release_key: Key) -> None:
    one = serve(trust_file=str(release_key.trust))
    two = serve(trust_file=str(release_key.trust))
    token = one.token("publish", "read")
    publish(one.url, token, ship("orders", key=release_key))
    on_one, on_two = Subscriber(one, token), Subscriber(two, token)
    _report(two, token, "production", "uploading")
    assert [e["status"] for e in on_one.result()] == ["uploading"]
    assert on_one.events == on_two.result()


@pytest.mark.e2e
def test_postgresql_notifications_wake_the_other_server(postgres, ship: Ship, release_key: Key) -> None:  # type: ignore[no-untyped-def]
    """With polling pushed out of the test's reach, only LISTEN/NOTIFY can carry the event across servers."""
    import uuid

    from catalog_fixtures import LiveServer

    from qlcapsule_server.config import Settings

    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.admin(f"CREATE DATABASE {name}")
    servers: list[LiveServer] = []
    try:
        settings = Settings(database_url=postgres.url(name), trust_file=str(release_key.trust))
        one, two = LiveServer(settings), LiveServer(settings)
        servers += [one, two]
        token = one.token("publish", "read")
        publish(one.url, token, ship("orders", key=release_key))
        listening = Subscriber(one, token)
        deadline = time.monotonic() + 20
        while not one.app.state.hub.listening:
            assert time.monotonic() < deadline, "the LISTEN connection did not come up"
            time.sleep(0.01)
        one.app.state.hub.interval = 3600.0  # from its next wait on, only a notification wakes it
        from qlcapsule_server.events import PG_POLL_INTERVAL

        time.sleep(PG_POLL_INTERVAL + 0.5)  # the wait begun with the old interval ends: from now on, 3600 s
        _report(two, token, "production", "verifying")
        assert [e["status"] for e in listening.result()] == ["verifying"]
    finally:
        for server in servers:
            server.stop()
        postgres.admin(f"DROP DATABASE {name} WITH (FORCE)")
