"""``qlcapsule ship --publish URL``: the version reaches the catalog before its deliveries, each delivery
step as it happens (on ``/api/v1/events`` before the report is sent), then the report, through the
``qlcapsule_publish`` and ``qlcapsule_publish_status`` hooks; its URL and token are checked before anything
is written; a catalog down mid-ship is one warning and the delivery goes on (real server, SQLite and a real
PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
from catalog_fixtures import Key, Serve, Subscriber
from click.testing import CliRunner

from qlcapsule import hookimpl
from qlcapsule.cli import main

STEPS = ["planned", "uploading", "verifying", "delivered"]


def _capsule(tmp_path: Path) -> Path:
    root = tmp_path / "orders"
    root.mkdir()
    (root / "capsule.yaml").write_text("name: orders\nversion: 4.0.0\n", encoding="utf-8")
    (root / "app.py").write_text("print('orders')\n", encoding="utf-8")
    return root


def _tree(top: Path) -> dict[str, str]:
    return {
        str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(top.rglob("*"))
        if p.is_file()
    }


def test_ship_publishes_its_report_and_the_dry_run_does_not(
    serve: Serve, release_key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(trust_file=str(release_key.trust))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CATALOG_TOKEN", server.token("publish"))
    root = _capsule(tmp_path)
    args = ["ship", str(root), "--key", str(release_key.private), "--store", "st.git"]
    args += ["--publish", server.url, "--publish-token-env", "CATALOG_TOKEN"]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would publish to {server.url}" in dry.output
    reader = server.token("read")
    status, nothing = server.call("/api/v1/capsules/orders/versions", reader)
    assert status == 200 and nothing["items"] == [], nothing  # nothing published by a dry run
    done = CliRunner().invoke(main, [*args, "--json"])
    assert done.exit_code == 0, done.output
    (published,) = json.loads(done.stdout)["result"]["published"]
    assert published["ref"] == "orders@4.0.0" and published["signature_status"] == "verified"
    status, versions = server.call("/api/v1/capsules/orders/versions", reader)
    assert status == 200 and [v["version"] for v in versions["items"]] == ["4.0.0"]


@pytest.mark.parametrize(
    ("url", "token", "needle"),
    [
        (None, None, "environment variable CATALOG_TOKEN is not set"),
        ("ftp://catalog.example", "x", "--url: expected http(s)://HOST[:PORT]"),
        ("http://catalog.example", "x", "use https so the token is not sent in clear"),
    ],
)
def test_a_bad_publish_input_is_refused_before_anything_is_written(
    serve: Serve,
    release_key: Key,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    url: str | None,
    token: str | None,
    needle: str,
) -> None:
    server = serve(trust_file=str(release_key.trust))
    work = tmp_path / "work"  # the capsule, its store and dist/; the server's database lives beside it
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("CATALOG_TOKEN", raising=False)
    if token:
        monkeypatch.setenv("CATALOG_TOKEN", token)
    root = _capsule(work)
    before = _tree(work)
    args = ["ship", str(root), "--key", str(release_key.private), "--store", "st.git"]
    result = CliRunner().invoke(main, [*args, "--publish", url or server.url, "--publish-token-env", "CATALOG_TOKEN"])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert _tree(work) == before  # not sealed, signed, committed or exported


class Journal:
    """A plugin wrapping the publishing hooks (pluggy wrappers around the real client): it notes each call, and
    runs ``before_report`` / ``before_status`` just before the report or a status is sent."""

    def __init__(
        self, before_report: Callable[[], None] | None = None, before_status: Callable[[], None] | None = None
    ) -> None:
        self.calls: list[str] = []
        self.before_report, self.before_status = before_report, before_status

    @hookimpl(wrapper=True)
    def qlcapsule_publish(self, report: dict[str, Any]) -> Generator[None, Any, Any]:
        capsules = report.get("capsules") or []
        kind = "report" if any(c.get("receipts") for c in capsules) else "version" if capsules else "check"
        self.calls.append(kind)
        if kind == "report" and self.before_report is not None:
            self.before_report()
        return (yield)

    @hookimpl(wrapper=True)
    def qlcapsule_publish_status(self, status: dict[str, Any]) -> Generator[None, Any, Any]:
        self.calls.append(status["status"])
        if self.before_status is not None:
            self.before_status()
        return (yield)


def _ship_args(root: Path, key: Key, url: str) -> list[str]:
    return ["ship", str(root), "--key", str(key.private), "--store", "st.git", "--json"] + [
        "--publish",
        url,
        "--publish-token-env",
        "CATALOG_TOKEN",
    ]


def test_each_delivery_step_is_on_the_event_stream_before_the_report_is_sent(
    serve: Serve, release_key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_plugin: Any
) -> None:
    server = serve(trust_file=str(release_key.trust))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CATALOG_TOKEN", server.token("publish"))
    reader = server.token("read")
    stream = Subscriber(server, reader, "?capsule=orders", count=len(STEPS))
    on_stream_before_report: list[str] = []

    def before_report() -> None:
        # nothing else is sent while this waits: what arrives now was recorded during the deliveries
        deadline = time.monotonic() + 20
        while len(stream.events) < len(STEPS) and time.monotonic() < deadline:
            time.sleep(0.05)
        on_stream_before_report.extend(e["status"] for e in stream.events)

    journal = Journal(before_report=before_report)
    qlcapsule_plugin(journal, name="journal")
    done = CliRunner().invoke(main, _ship_args(_capsule(tmp_path), release_key, server.url))
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)["result"]
    assert on_stream_before_report == STEPS
    assert journal.calls == ["check", "version", *STEPS, "report"]
    assert result["live"] == {"published": ["orders@4.0.0"], "statuses": 4, "warning": None}
    (shipped,) = result["capsules"]
    (artifact,), (receipt,) = shipped["artifacts"], shipped["receipts"]
    events = stream.result()
    assert [(e["capsule"], e["version"], e["target"], e["provider"], e["status"]) for e in events] == [
        ("orders", "4.0.0", "local", "local", s) for s in STEPS
    ]
    assert [e["bytes"] for e in events] == [artifact["size"]] * len(STEPS)  # ship exported before planning
    assert events[-1]["url"] == receipt["url"]
    (published,) = result["published"]
    assert published["signature_status"] == "verified" and published["created"] is False  # published live first

    # the report merged into the version published before the deliveries: its artifacts and receipts, and no
    # second 'delivered' in the timeline
    status, deliveries = server.call("/api/v1/capsules/orders/versions/4.0.0/deliveries", reader)
    assert status == 200, deliveries
    (delivery,) = deliveries["items"]
    assert delivery["status"] == "delivered" and delivery["url"] == receipt["url"]
    assert [t["status"] for t in delivery["timeline"]] == STEPS
    status, version = server.call("/api/v1/capsules/orders/versions/4.0.0", reader)
    assert status == 200 and [a["sha256"] for a in version["artifacts"]] == [artifact["sha256"]], version
    from qlcapsule_server import db
    from qlcapsule_server.catalog import Catalog, delivery_receipts

    with db.transaction(db.session_factory(server.app.state.engine)) as session:
        kept = delivery_receipts(Catalog(session), "orders", "4.0.0")
    assert [r["location"] for r in kept["local"]] == [receipt["location"]]


@pytest.mark.parametrize("back", [True, False], ids=["back-for-the-report", "still-down"])
def test_a_catalog_down_mid_ship_is_one_warning_and_the_delivery_goes_on(
    serve: Serve,
    release_key: Key,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    qlcapsule_plugin: Any,
    back: bool,
) -> None:
    """The catalog stops after taking the version, before the first delivery step; it is back (same URL, same
    database) when the report goes, or it is not."""
    first = serve(trust_file=str(release_key.trust))
    port = int(first.url.rsplit(":", 1)[1])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CATALOG_TOKEN", first.token("publish", "read"))
    servers = [first]

    def before_status() -> None:
        first.stop()

    def before_report() -> None:
        if back:
            servers.append(serve(port=port, trust_file=str(release_key.trust)))

    journal = Journal(before_report=before_report, before_status=before_status)
    qlcapsule_plugin(journal, name="journal")
    done = CliRunner().invoke(main, _ship_args(_capsule(tmp_path), release_key, first.url))
    answer = json.loads(done.stdout)
    result = answer["result"]  # the ship report, whatever became of the publishing
    (shipped,) = result["capsules"]
    assert shipped["ok"] is True
    (receipt,) = shipped["receipts"]
    artifact = Path(receipt["location"])
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == receipt["sha256"]  # delivered all the same
    warning = result["live"]["warning"]
    assert warning.startswith(f"--publish {first.url}: the catalog did not take a live status")
    assert result["live"]["published"] == ["orders@4.0.0"] and result["live"]["statuses"] == 0
    assert done.stderr.count("warning: --publish") == 1, done.stderr
    assert journal.calls == ["check", "version", "planned", "report"]  # after the failure, nothing more live
    if back:
        assert done.exit_code == 0, done.output
        (published,) = result["published"]
        assert published["signature_status"] == "verified"
        status, deliveries = servers[-1].call(
            "/api/v1/capsules/orders/versions/4.0.0/deliveries", os.environ["CATALOG_TOKEN"]
        )
        assert status == 200 and [t["status"] for t in deliveries["items"][0]["timeline"]] == ["delivered"]
    else:
        assert done.exit_code == 3, done.output  # the report could not be published: as documented
        assert answer["error"]["message"].startswith(first.url)
        assert "published" not in result
