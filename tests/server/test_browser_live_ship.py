"""The live delivery page during a real ``qlcapsule ship --publish``: a capsule shipped once, the page opened,
then its next version shipped by the CLI in another process; the new delivery's steps appear on the open page
as they are reported, without a reload (Debian's Chromium through Playwright, a real ``qlcapsule serve``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from catalog_fixtures import Key, Served

pytestmark = pytest.mark.e2e

STEPS = ["planned", "uploading", "verifying", "delivered"]


def _ship(root: Path, key: Key, served: Served) -> None:
    """``qlcapsule ship --publish`` in its own process, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "qlcapsule", "ship", str(root), "--key", str(key.private), "--store", "st.git"]
        + ["--publish", served.url, "--publish-token-env", "QLC_TEST_TOKEN", "-q"],
        cwd=root.parent,
        env={**os.environ, "QLC_TEST_TOKEN": served.publisher, "QLCAPSULE_NO_PROGRESS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stderr, done.stderr  # every live status reached the catalog


def test_the_live_page_follows_a_second_ship_without_a_reload(
    page: Any, served: Served, release_key: Key, tmp_path: Path
) -> None:
    root = tmp_path / "work" / "shipped"
    root.mkdir(parents=True)
    (root / "app.py").write_text("print('shipped')\n", encoding="utf-8")
    (root / "capsule.yaml").write_text("name: shipped\nversion: 1.0.0\n", encoding="utf-8")
    _ship(root, release_key, served)

    page.goto("/live")
    page.wait_for_selector("#live-state[data-state=live]")
    page.evaluate("window.__sameDocument = true")
    rows = page.locator("#events tbody tr", has_text="shipped@1.1.0")
    assert rows.count() == 0

    (root / "capsule.yaml").write_text("name: shipped\nversion: 1.1.0\n", encoding="utf-8")  # the version bump
    _ship(root, release_key, served)

    # a locator wait (wait_for_function evaluates a string, which the pages' CSP rightly refuses)
    rows.nth(len(STEPS) - 1).wait_for(timeout=15_000)
    shown = [text.split("\t") for text in rows.all_inner_texts()]
    assert len(shown) == len(STEPS), shown  # each step once: the report's publish adds none
    steps = [next(s for s in STEPS if s in row[4]) for row in shown]
    assert steps == STEPS[::-1], shown  # newest first
    assert all(row[3].startswith("local (local)") for row in shown), shown
    assert page.evaluate("window.__sameDocument") is True  # the same document: no reload
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    status, versions = served.call("/api/v1/capsules/shipped/versions", served.reader)
    assert status == 200 and [v["version"] for v in versions["items"]] == ["1.1.0", "1.0.0"], versions
    assert versions["items"][0]["signature"]["status"] == "verified"
