"""The pages in a real browser: Debian's Chromium, headless, driven by Playwright for Python with the system
browser (``executable_path``; nothing is downloaded), against a real ``qlcapsule serve`` process on 127.0.0.1
with a catalog seeded through its publish API.

Covers: every page renders with its title and runs no publisher markup (an ``onerror`` would set
``window.__xss``); keyboard navigation (skip link, then the main menu); search and a link followed; the live
page gains a row for a delivery event published while it is open, without a reload; login, scope refusal and
logout. Installed by the project's files (Playwright from the dev extra, Chromium by tests/e2e/install.sh);
without them the tests skip with the reason printed, or fail when QLCAPSULE_E2E_REQUIRE=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from catalog_fixtures import Key, Served, unavailable
from pages_seed import HELP, XSS

pytestmark = pytest.mark.e2e

PAGES = {
    "/": "Capsules",
    "/capsules/web": "web · capsule",
    "/capsules/web/versions/1.1.0": "web@1.1.0",
    "/capsules/web/versions/2.0.0": "web@2.0.0",
    "/live": "Deliveries, live",
    "/templates": "Templates and drift",
    "/keys": "Keys",
    "/dashboard": "Dashboard",
    "/login": "Log in",
}


def test_every_page_renders_and_runs_no_publisher_markup(page: Any, served: Served) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    for path, title in PAGES.items():
        page.goto(path)
        assert page.title() == f"{title} · qlcapsule catalog"
        assert page.locator("main h1").count() == 1
        assert page.evaluate("window.__xss") is None, path
    page.goto("/capsules/web/versions/1.1.0")
    assert XSS.split(" ")[0] in page.locator("#files ~ div table").inner_text()  # shown as text
    helps = page.locator("ul.findings a")
    assert helps.count() == 1 and helps.get_attribute("href") == HELP  # the javascript: and crafted ones: text
    assert helps.get_attribute("rel") == "noopener noreferrer nofollow"
    assert helps.inner_text() == "zizmor.template-injection"
    nodes = page.locator("svg.lineage circle")
    page.goto("/capsules/web")
    assert nodes.count() == 4
    assert page.locator("svg.lineage a").first.get_attribute("href") == "/capsules/web/versions/2.0.0"
    assert errors == []


def test_keyboard_navigation_search_and_links(page: Any) -> None:
    page.goto("/capsules/web")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto("/")
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")  # brand
    labels = []
    for _ in range(5):
        page.keyboard.press("Tab")
        labels.append(page.evaluate("document.activeElement.textContent"))
    assert labels == ["Capsules", "Live deliveries", "Templates", "Keys", "Dashboard"]
    page.keyboard.press("Enter")
    page.wait_for_url("**/dashboard")
    page.goto("/")
    page.fill("input[name=q]", "ap")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?q=ap*")
    assert page.locator("tbody th a").all_inner_texts() == ["api"]
    page.click("text=api")
    page.wait_for_url("**/capsules/api")
    assert page.title().startswith("api · capsule")
    page.goto("/")
    page.fill("input[name=label]", "team")
    page.press("input[name=label]", "Enter")
    page.wait_for_url("**/?*label=team*")
    assert page.locator("tbody th a").all_inner_texts() == ["api"]
    page.click("a.label >> text=tier=gold")  # a label is a link to the list filtered by it
    page.wait_for_url("**/?label=tier%3Dgold")
    assert page.locator("input[name=label]").input_value() == "tier=gold"
    assert page.locator("tbody th a").all_inner_texts() == ["api"]


def test_the_live_page_shows_a_delivery_event_without_a_reload(page: Any, served: Served) -> None:
    page.goto("/live")
    page.wait_for_selector("#live-state[data-state=live]")
    page.evaluate("window.__sameDocument = true")
    rows = page.locator("#events tbody tr").count()
    for status in ("planned", "uploading", "delivered"):
        report = {"capsule": "web", "version": "1.1.0", "target": f"edge{XSS}", "provider": "local", "status": status}
        code, body = served.call("/api/v1/deliveries", served.publisher, "POST", {**report, "bytes": 42})
        assert code == 200, body
    # a locator wait (wait_for_function evaluates a string, which the pages' CSP rightly refuses)
    page.locator(f"#events tbody tr:nth-child({rows + 3})").wait_for(timeout=15_000)
    first = page.locator("#events tbody tr").first
    assert "delivered" in first.inner_text() and f"edge{XSS}" in first.inner_text()
    assert page.evaluate("window.__sameDocument") is True  # the same document: no reload
    assert page.evaluate("window.__xss") is None


def test_login_scope_refusal_and_logout(browser: Any, served: Served) -> None:
    context = browser.new_context(base_url=served.url)
    tab = context.new_page()
    tab.goto("/capsules/web")
    assert tab.url.startswith(f"{served.url}/login?next=")
    tab.fill("#token", served.publisher)
    tab.click("button[type=submit]")
    assert "lacks the 'read' scope" in tab.locator("[role=alert]").inner_text()
    assert tab.title() == "Log in · qlcapsule catalog"
    tab.fill("#token", served.reader)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{served.url}/capsules/web")
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["qlc_token"]["httpOnly"] is True
    assert tab.evaluate("document.cookie") == ""  # no script can read the token
    tab.click("text=Log out")
    tab.wait_for_url(f"{served.url}/login")
    tab.goto("/keys")
    assert tab.url.startswith(f"{served.url}/login?next=")
    context.close()


AXE = Path(__file__).resolve().parents[1] / "e2e" / "node_modules" / "axe-core" / "axe.min.js"
#: serious and critical violations of each rule, with up to three of the elements
AXE_RUN = """axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
  .filter(v => v.impact === 'serious' || v.impact === 'critical')
  .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')))"""
WIDTHS = {"phone": (390, 844), "wide": (1280, 900)}
#: the screenshots taken: every page at both widths, the wide one light and the phone dark (docs/catalog.md)
SHOTS = {("wide", "light"), ("phone", "dark")}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_and_screenshots_are_written(
    browser: Any, served: Served, release_key: Key, scheme: str, tmp_path: Path
) -> None:
    """axe-core (pinned in tests/e2e/package.json) on every page in both colour schemes, at a phone's width and
    a wide screen's; the screenshots go to $QLCAPSULE_SCREENSHOTS (the e2e env: docs/catalog/, which
    docs/catalog.md shows) or tmp_path."""
    if not AXE.is_file():
        unavailable(f"{AXE} is missing (npm ci --prefix tests/e2e; tests/e2e/install.sh does it)")
    shots = Path(os.environ.get("QLCAPSULE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    every = {path: path.strip("/").replace("/", "-").replace(".", "_") or "capsules" for path in PAGES}
    every[f"/keys/{release_key.keyid}"] = "keys-key"  # a key id of this run, a file name of every run
    found: list[str] = []
    for width, (w, h) in WIDTHS.items():
        # the pages' CSP forbids injected scripts, rightly; this context lets axe's in
        context = browser.new_context(
            base_url=served.url, bypass_csp=True, color_scheme=scheme, viewport={"width": w, "height": h}
        )
        context.add_cookies([{"name": "qlc_token", "value": served.reader, "url": served.url}])
        tab = context.new_page()
        for path, name in every.items():
            tab.goto(path)
            tab.add_script_tag(path=str(AXE))
            found += [f"{path} {scheme} {width}: {v}" for v in tab.evaluate(AXE_RUN)]
            if (width, scheme) in SHOTS:
                (shots / f"{name}-{width}-{scheme}.png").unlink(missing_ok=True)
                tab.screenshot(path=str(shots / f"{name}-{width}-{scheme}.png"), full_page=True)
        context.close()
    assert found == [], "\n".join(found)
    taken = [f"{name}-{width}-{scheme}.png" for name in every.values() for width in WIDTHS if (width, scheme) in SHOTS]
    assert len(taken) == len(every) and all((shots / t).stat().st_size > 10_000 for t in taken)


def test_a_real_ship_and_publish_appear_on_the_open_pages(
    page: Any, served: Served, ship: Any, release_key: Key, tmp_path: Path
) -> None:
    """The README's path with the CLI: ``qlcapsule ship`` (a real local delivery), then ``qlcapsule catalog
    publish`` of its report, while the live page is open: the delivery appears without a reload, and the
    capsule is on the capsules page. (``ship --publish`` does both, live: test_browser_live_ship.py.)"""
    page.goto("/live")
    page.wait_for_selector("#live-state[data-state=live]")
    page.evaluate("window.__sameDocument = true")
    report = ship("shipped", "1.0.0", key=release_key)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "qlcapsule", "catalog", "publish", "--url", served.url, "--token-env", "QLC_TEST_TOKEN"]
        + [str(path)],
        check=True,
        capture_output=True,
        env={**os.environ, "QLC_TEST_TOKEN": served.publisher},
    )
    row = page.locator("#events tbody tr", has_text="shipped@1.0.0").first
    row.wait_for(timeout=15_000)
    assert "delivered" in row.inner_text()
    assert page.evaluate("window.__sameDocument") is True
    row.locator("a").click()
    page.wait_for_url("**/capsules/shipped/versions/1.0.0")
    assert "verified" in page.locator("dl.facts").inner_text()
    shipped = report["capsules"][0]
    deliveries = page.locator("section[aria-labelledby=deliveries]").inner_text()
    assert "Receipts" in deliveries and shipped["receipts"][0]["location"] in deliveries
    artifacts = page.locator("section[aria-labelledby=artifacts]").inner_text()
    assert shipped["artifacts"][0]["sha256"] in artifacts
    page.goto("/?q=shipped")
    assert page.locator("tbody th a").all_inner_texts() == ["shipped"]
