"""Labels and rule help links, from a real ``qlcapsule ship`` to the catalog's list and pages, on SQLite and a
real PostgreSQL: a publication's capsule.yaml gives the capsule its labels only when the lock seals that text;
``label=key`` and ``label=key=value`` filter the API's list and the capsules page; a finding keeps the help page
of its rule and the version page links it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from catalog_fixtures import Key, LiveServer, Serve, Ship
from pages_seed import publication as crafted

from qlcapsule import VerificationError
from qlcapsule_server.client import publication, publish
from qlcapsule_server.sync import sync

#: a workflow whose schema error is reported as a warning, so ship goes on and publishes the finding
WORKFLOW = {".github/workflows/ci.yml": "on: push\njobs: 5\n", "app.py": "print(1)\n"}
AS_WARNING = "validate:\n  rules:\n    github-workflow.schema: warning\n"
WORKFLOW_HELP = "https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-syntax"


def _names(server: LiveServer, token: str, query: str) -> tuple[list[str], int]:
    status, found = server.call(f"/api/v1/capsules?{query}", token)
    assert status == 200, found
    return [i["name"] for i in found["items"]], found["total"]


def test_labels_of_the_newest_version_filter_the_list_and_the_page(serve: Serve, ship: Ship, release_key: Key) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    labels = "labels:\n  team: payments\n  tier: gold\n"
    publish(server.url, token, ship("orders", key=release_key, files=WORKFLOW, more=labels + AS_WARNING))
    publish(server.url, token, ship("billing", key=release_key, more="labels:\n  team: ledger\n"))
    publish(server.url, token, ship("ledger", key=release_key))

    assert _names(server, token, "label=team") == (["billing", "orders"], 2)
    assert _names(server, token, "label=team=payments") == (["orders"], 1)
    assert _names(server, token, "label=tier=gold&q=ord") == (["orders"], 1)
    assert _names(server, token, "label=tier=gold&q=bill") == ([], 0)
    assert _names(server, token, "label=team=nobody") == ([], 0)
    assert _names(server, token, "label=team&limit=1&offset=1") == (["orders"], 2)  # paged in the database
    assert _names(server, token, "") == (["billing", "ledger", "orders"], 3)
    status, found = server.call("/api/v1/capsules?q=orders", token)
    assert found["items"][0]["labels"] == {"team": "payments", "tier": "gold"}
    status, answer = server.call('/api/v1/capsules?label=te"am', token)
    assert status == 422 and "label" in answer["error"]

    pages = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    with pages:
        html = pages.get("/", params={"label": "team=payments"}).text
        assert 'href="/capsules/orders"' in html and 'href="/capsules/billing"' not in html
        assert "team=payments" in html and "1 capsule<" in html
        assert "0 capsules" in pages.get("/", params={"label": 'te"am'}).text  # a page clamps, never refuses

        # the finding keeps its rule's help page through ship --json, the publication and the catalog
        _, version = server.call("/api/v1/capsules/orders/versions/1.0.0", token)
        (finding,) = [f for f in version["findings"] if f["rule"] == "github-workflow.schema"]
        assert finding["extra"]["help_uri"] == WORKFLOW_HELP
        html = pages.get("/capsules/orders/versions/1.0.0").text
        assert (
            f'<a href="{WORKFLOW_HELP}" rel="noopener noreferrer nofollow"><code>github-workflow.schema</code></a>'
            in html
        )

    # the version published last gives the capsule its labels
    publish(server.url, token, ship("orders", "1.1.0", key=release_key, more="labels:\n  team: platform\n"))
    assert _names(server, token, "label=team=payments") == ([], 0)
    assert _names(server, token, "label=team=platform") == (["orders"], 1)
    assert _names(server, token, "label=tier") == ([], 0)


def test_catalog_sync_records_the_labels_too(serve: Serve, ship: Ship, release_key: Key, tmp_path: Path) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    ship("orders", key=release_key, more="labels:\n  team: payments\n")  # into tmp_path/store.git, not published
    result = sync(server.url, token, str(tmp_path / "store.git"))
    assert result.published == 1
    assert _names(server, token, "label=team=payments") == (["orders"], 1)


def test_a_capsule_yaml_the_lock_does_not_seal_is_refused(serve: Serve, ship: Ship, release_key: Key) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    report = ship("orders", key=release_key, more="labels:\n  team: payments\n")
    definition = Path(report["capsules"][0]["path"]) / "capsule.yaml"
    definition.write_text(definition.read_text(encoding="utf-8").replace("payments", "admins"), encoding="utf-8")
    with pytest.raises(VerificationError, match="not the one orders@1.0.0's lock seals"):
        publish(server.url, token, report)
    assert _names(server, token, "") == ([], 0)  # refused before anything was written


def _with_definition(text: str) -> dict[str, Any]:
    pub = crafted("odd", "1.0.0", files={"capsule.yaml": text, "app.py": "x = 1\n"})
    lock = json.loads(pub["lock"])
    assert any(f["sha256"] == hashlib.sha256(text.encode()).hexdigest() for f in lock["files"])
    return {**pub, "definition": text}


@pytest.mark.parametrize(
    ("labels", "error"),
    [
        ("labels: [a, b]\n", "labels: expected a mapping of strings to strings"),
        ("labels:\n  tier: 1\n", "labels: expected a mapping of strings to strings"),
        ("labels: {" + ", ".join(f"k{i}: v" for i in range(65)) + "}\n", "at most 64 labels"),
        (f"labels:\n  team: {'x' * 257}\n", "values of at most 256 characters"),
        ("labels: {a: b\n", "definition (capsule.yaml)"),
    ],
)
def test_labels_are_bounded_and_checked_before_anything_is_written(serve: Serve, labels: str, error: str) -> None:
    """A sealed capsule.yaml the core's model would refuse still reaches the server through the API: its labels
    are checked for shape and size, one line naming the field, 400."""
    server = serve(unsigned="mark")
    token = server.token("publish", "read")
    status, answer = server.call(
        "/api/v1/publish", token, "POST", _with_definition(f"name: odd\nversion: 1.0.0\n{labels}")
    )
    assert (status, error in answer["error"]) == (400, True), answer
    assert "\n" not in answer["error"]
    assert _names(server, token, "") == ([], 0)
    status, answer = server.call("/api/v1/publish", token, "POST", _with_definition("name: odd\nversion: 1.0.0\n"))
    assert status == 201, answer
    assert _names(server, token, "") == (["odd"], 1)
    assert server.call("/api/v1/capsules", token)[1]["items"][0]["labels"] == {}


def test_the_cli_sends_the_exact_bytes_of_capsule_yaml(ship: Ship, release_key: Key) -> None:
    """CRLF line ends and all: the SHA-256 the server checks is the file's, not a newline-translated copy."""
    report = ship("orders", key=release_key, more="labels:\r\n  team: payments\r\n")
    body = publication(report["capsules"][0])
    assert "\r\n" in body["definition"]
    lock = json.loads(body["lock"])
    sealed = next(f["sha256"] for f in lock["files"] if f["path"] == "capsule.yaml")
    assert hashlib.sha256(body["definition"].encode("utf-8")).hexdigest() == sealed
