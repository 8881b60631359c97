"""The pages over HTTP (httpx) on the catalog service on a real uvicorn (conftest's ``serve``: SQLite, and a real
PostgreSQL in the e2e env), seeded seeded through the publish API: status,
title, landmarks, escaping of publisher text, CSV/JSON downloads, and the login, logout, CSRF and scope rules.
The browser tests (test_browser_pages.py) drive the same pages in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from catalog_fixtures import Key, LiveServer, Serve
from pages_seed import HELP, XSS, seed

from qlcapsule_server import db, tokens


class Site:
    def __init__(self, server: LiveServer) -> None:
        self.server, self.app = server, server.app
        self.client = httpx.Client(base_url=server.url, timeout=30)
        self.token = server.token

    def call(self, path: str, token: str, method: str = "GET", data: Any = None) -> tuple[int, Any]:
        answer = self.client.request(method, path, json=data, headers={"Authorization": f"Bearer {token}"})
        return answer.status_code, answer.json()


def _site(serve: Serve, key: Key, **settings: Any) -> Iterator[Site]:
    site = Site(serve(trust_file=str(key.trust), unsigned="mark", **settings))
    with site.client:
        seed(site.call, site.token("publish"), key.private)
        yield site


@pytest.fixture
def site(serve: Serve, release_key: Key) -> Iterator[Site]:
    """Anonymous reads allowed: the pages' content, without a login."""
    yield from _site(serve, release_key, anonymous_read=True)


@pytest.fixture
def private_site(serve: Serve, release_key: Key) -> Iterator[Site]:
    """Reads need a token."""
    yield from _site(serve, release_key)


def _title(html: str) -> str:
    found = re.search(r"<title>(.*?)</title>", html, re.S)
    assert found, html[:300]
    return found.group(1)


PAGES = [
    ("/", "Capsules · qlcapsule catalog"),
    ("/?q=we", "Capsules · qlcapsule catalog"),
    ("/capsules/web", "web · capsule · qlcapsule catalog"),
    ("/capsules/web/versions/1.1.0", "web@1.1.0 · qlcapsule catalog"),
    ("/capsules/web/versions/2.0.0?diff=1.0.0", "web@2.0.0 · qlcapsule catalog"),
    ("/live", "Deliveries, live · qlcapsule catalog"),
    ("/templates", "Templates and drift · qlcapsule catalog"),
    ("/keys", "Keys · qlcapsule catalog"),
    ("/dashboard", "Dashboard · qlcapsule catalog"),
    ("/login", "Log in · qlcapsule catalog"),
]


@pytest.mark.parametrize(("path", "title"), PAGES)
def test_each_page_renders_with_its_title_landmarks_and_no_raw_markup(site: Site, path: str, title: str) -> None:
    answer = site.client.get(path)
    assert answer.status_code == 200, answer.text[:500]
    html = answer.text
    assert _title(html) == title
    assert '<main id="main"' in html and '<nav aria-label="Main">' in html and '<html lang="en">' in html
    assert XSS not in html and "<img" not in html  # publisher markup is text here, never an element
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert len(answer.content) < 200_000


def test_the_capsule_page_draws_the_lineage_with_a_merge(site: Site) -> None:
    html = site.client.get("/capsules/web").text
    nodes = re.findall(r'<circle cx="(\d+)" cy="(\d+)" r="6" class="node-(\w+)" data-version="([^"]+)"', html)
    assert [n[3] for n in nodes] == ["2.0.0", "1.2.0-rc", "1.1.0", "1.0.0"]
    assert {n[2] for n in nodes} == {"verified"}
    assert len({n[0] for n in nodes}) == 2  # the branch 1.2.0-rc has a lane of its own
    assert html.count('class="edge"') == 4  # 2.0.0 has two parents, the others one each (1.0.0 none)
    assert "a node with two lines down is a merge (1 here)" in html
    assert "[tag v1.0.0]" in html
    assert "prod-s3" in html and "delivered 1" in html


def test_the_version_page_escapes_paths_findings_and_targets(site: Site) -> None:
    html = site.client.get("/capsules/web/versions/1.1.0").text
    assert "docs/&lt;img src=x onerror=&#34;window.__xss=1&#34;&gt;.md" in html
    assert "bad &lt;img src=x" in html
    assert "javascript:" not in html  # a help link that is not https is not a link
    assert "<h3>python (1)</h3>" in html and "<h3>zizmor (2)</h3>" in html
    links = re.findall(r'<a href="([^"]*)" rel="([^"]*)"><code>([^<]*)</code></a>', html)
    assert links == [(HELP, "noopener noreferrer nofollow", "zizmor.template-injection")]  # the crafted one: text
    assert "<code>python.syntax</code>" in html and html.count("<code>zizmor.template-injection</code>") == 2
    assert "1 added, 0 removed, 1 changed" in html  # against its parent 1.0.0
    assert "qlcapsule verify web --trust trust.yaml" in html
    delivered = site.client.get("/capsules/web/versions/2.0.0").text
    assert "t&lt;img" in delivered and "boom &lt;img" in delivered
    assert delivered.count('class="status status-failed"') >= 2


def test_drift_keys_and_dashboard_data(site: Site, release_key: Key) -> None:
    html = site.client.get("/templates").text
    assert "qlcapsule update web --to 3.0.0" in html and "1 version" in html
    keys = site.client.get("/keys").text
    assert release_key.keyid in keys
    key = site.client.get(f"/keys/{release_key.keyid}").text
    assert "5 versions no other trusted key signed" in key
    assert "prod-s3" in key
    data = site.client.get("/dashboard/failures.json")
    assert data.status_code == 200 and {"cause": "signature unsigned", "count": 1} in data.json()
    csv = site.client.get("/dashboard/deliveries.csv")
    assert csv.text.splitlines()[0] == "day,status,provider,count"
    assert csv.headers["content-disposition"] == 'attachment; filename="deliveries.csv"'
    assert site.client.get("/dashboard/nothing.csv").status_code == 404
    assert site.client.get("/dashboard/published.csv").text.splitlines()[0] == "day,count"


def test_filters_and_paging_keep_their_urls(site: Site) -> None:
    html = site.client.get("/?template=tpl-svc&repository=store-api").text
    assert 'href="/capsules/api"' in html and 'href="/capsules/web"' not in html
    assert "1 capsule<" in html
    labelled = site.client.get("/?label=team=payments").text
    assert 'href="/capsules/api"' in labelled and 'href="/capsules/web"' not in labelled
    assert 'class="label" href="/?label=team%3Dpayments">team=payments</a>' in labelled and "1 capsule<" in labelled
    assert "1 capsule<" in site.client.get("/?label=tier").text
    assert "0 capsules" in site.client.get("/?label=team=admins").text
    assert site.client.get("/capsules/nope").status_code == 404
    assert site.client.get("/capsules/web/versions/9.9.9").status_code == 404
    assert site.client.get("/?offset=abc").status_code == 200  # clamped, not refused
    compared = site.client.get("/capsules/web/versions/2.0.0?diff=1.0.0").text
    assert "From 1.0.0 to 2.0.0: 0 added, 0 removed, 1 changed." in compared
    assert site.client.get("/capsules/web/versions/2.0.0?diff=0.0.1").status_code == 404
    live = site.client.get("/live?capsule=api").text
    assert "No delivery events yet." in live and "prod-s3" not in live
    assert "prod-s3" in site.client.get("/live?status=delivered").text


def test_pages_need_a_read_token_and_the_login_form_is_csrf_safe(private_site: Site) -> None:
    client = private_site.client
    answer = client.get("/capsules/web", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=%2Fcapsules%2Fweb"
    form = client.get("/login?next=/capsules/web")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    assert "HttpOnly" in form.headers["set-cookie"] and "SameSite=strict" in form.headers["set-cookie"]
    reader = private_site.token("read")
    # no CSRF token, or another site's origin: refused
    assert client.post("/login", data={"token": reader, "csrf": "x" * 24}).status_code == 403
    foreign = client.post("/login", data={"token": reader, "csrf": csrf}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    # a token without the read scope: refused with the reason
    publisher = private_site.token("publish")
    refused = client.post("/login", data={"token": publisher, "csrf": csrf, "next": "/capsules/web"})
    assert refused.status_code == 403 and "lacks the &#39;read&#39; scope" in refused.text
    assert client.post("/login", data={"token": "qlc_nope", "csrf": csrf}).status_code == 401
    ok = client.post("/login", data={"token": reader, "csrf": csrf, "next": "//evil.example/x"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # never off this server
    assert "HttpOnly" in ok.headers["set-cookie"] and reader in ok.headers["set-cookie"]
    assert client.get("/capsules/web").status_code == 200
    # a bearer header works too; a token without read gets 403
    assert client.get("/keys", headers={"Authorization": f"Bearer {publisher}"}).status_code == 403
    out = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/capsules/web", follow_redirects=False).status_code == 303


def test_a_revoked_token_logs_the_browser_out(private_site: Site) -> None:
    reader = private_site.token("read")
    client = private_site.client
    client.cookies.set("qlc_token", reader)
    assert client.get("/").status_code == 200
    with db.transaction(db.session_factory(private_site.app.state.engine), write=True) as session:
        name = session.scalars(__import__("sqlalchemy").select(tokens.TokenRow.name)).all()
        for n in name:
            tokens.revoke(session, n)
    answer = client.get("/", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=%2F&why=revoked"
    assert "your token is unknown or revoked" in client.get(answer.headers["location"]).text
    # the login page says only what the server chose: a crafted reason is not shown
    assert "paste your token" not in client.get("/login?why=paste+your+token+at+evil").text
