"""``qlcapsule ship --publish URL``: the report reaches the catalog after a real ship, through the
``qlcapsule_publish`` hook; its URL and token are checked before anything is written (real server,
SQLite and a real PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from catalog_fixtures import Key, Serve
from click.testing import CliRunner

from qlcapsule.cli import main


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
