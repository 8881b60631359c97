"""Concurrent publishers on a real server: the same version published at once by many is recorded once and
every publisher succeeds (SQLite and a real PostgreSQL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from catalog_fixtures import Key, Serve, Ship
from sqlalchemy import func, select

from qlcapsule_server import db
from qlcapsule_server.client import publish
from qlcapsule_server.models import CapsuleRow, DeliveryEventRow, FileRow, VersionRow


def test_the_same_version_published_at_once_is_recorded_once(serve: Serve, ship: Ship, release_key: Key) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    reports = [ship("orders", key=release_key), ship("orders", "1.1.0", key=release_key)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: publish(server.url, token, reports[i % 2])[0], range(16)))
    assert sum(r["created"] for r in results) == 2  # one creation per version, the rest found it
    assert {r["signature_status"] for r in results} == {"verified"}
    with db.transaction(db.session_factory(server.app.state.engine)) as session:
        assert session.scalar(select(func.count(CapsuleRow.id))) == 1
        assert session.scalar(select(func.count(VersionRow.id))) == 2
        assert session.scalar(select(func.count(FileRow.id))) == 4  # two files per version, once each
        assert session.scalar(select(func.count(DeliveryEventRow.id))) == 2  # one "delivered" per version
