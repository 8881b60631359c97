"""The questions the catalog answers, against a real server on SQLite and a real PostgreSQL: which versions
only key K signed, which capsules are N template versions behind, where name@version was delivered, which
version contains a file."""

from __future__ import annotations

import hashlib

from catalog_fixtures import Key, Serve, Ship

from qlcapsule_server.client import publication, publish


def test_versions_signed_only_by_a_key(serve: Serve, ship: Ship, release_key: Key, other_key: Key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    both = tmp_path / "both-trust.yaml"
    both.write_text(
        f"- {{algorithm: ed25519, key_file: {release_key.public}}}\n- {{algorithm: ed25519, key_file: {other_key.public}}}\n",
        encoding="utf-8",
    )
    server = serve(trust_file=str(both))
    token = server.token("publish", "read")
    publish(server.url, token, ship("orders", key=release_key))
    publish(server.url, token, ship("billing", key=other_key))
    # co-signed: the same sealed capsule signed by both keys (``qlcapsule sign`` adds to the envelope)
    cosigned = ship("ledger", key=release_key)
    from catalog_fixtures import cli

    cli("sign", cosigned["capsules"][0]["path"], "--key", str(other_key.private), "--trust", str(both))
    publish(server.url, token, cosigned)

    def names(path: str) -> list[str]:
        status, found = server.call(path, token)
        assert status == 200
        return sorted(i["capsule"] for i in found["items"])

    assert names(f"/api/v1/keys/{release_key.keyid}/versions") == ["ledger", "orders"]
    assert names(f"/api/v1/keys/{release_key.keyid}/versions?only=true") == ["orders"]
    assert names(f"/api/v1/keys/{other_key.keyid[:16]}/versions?only=true") == ["billing"]
    assert server.call("/api/v1/keys/zz/versions", token)[0] == 422  # a key id is 8+ characters


def test_capsules_behind_their_template(serve: Serve, ship: Ship, release_key: Key) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    for name, template_version in (("orders", "1.0.0"), ("billing", "1.10.0"), ("ledger", "1.2.0")):
        publish(server.url, token, ship(name, key=release_key, template=("fastapi-service", template_version)))
    status, found = server.call("/api/v1/templates/behind?at_least=1", token)
    assert status == 200
    # release order, not text order: 1.10.0 is the newest
    assert [(i["capsule"], i["template_version"], i["behind"]) for i in found["items"]] == [
        ("orders", "1.0.0", 2),
        ("ledger", "1.2.0", 1),
    ]
    assert {i["newest_template_version"] for i in found["items"]} == {"1.10.0"}
    _, two = server.call("/api/v1/templates/behind?at_least=2", token)
    assert [i["capsule"] for i in two["items"]] == ["orders"]


def test_delivery_status_of_a_version_and_its_timeline(serve: Serve, ship: Ship, release_key: Key) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    publish(server.url, token, ship("orders", "2.1.0", key=release_key))
    status, found = server.call("/api/v1/capsules/orders/versions/2.1.0/deliveries", token)
    assert status == 200
    (local,) = found["items"]
    assert (local["target"], local["provider"], local["status"]) == ("local", "local", "delivered")
    assert local["url"].startswith("file://") and local["url"].endswith("orders-2.1.0.tar.gz")

    report = {"capsule": "orders", "version": "2.1.0", "target": "production", "provider": "s3"}
    for step in ("planned", "uploading", "uploading", "verifying", "delivered"):
        status, answer = server.call("/api/v1/deliveries", token, "POST", {**report, "status": step, "bytes": 1124})
        assert status == 200
    _, found = server.call("/api/v1/capsules/orders/versions/2.1.0/deliveries", token)
    production = next(d for d in found["items"] if d["target"] == "production")
    # the repeated report added nothing
    assert [e["status"] for e in production["timeline"]] == ["planned", "uploading", "verifying", "delivered"]
    assert production["status"] == "delivered"
    status, answer = server.call(
        "/api/v1/deliveries", token, "POST", {**report, "version": "9.9.9", "status": "failed"}
    )
    assert status == 404 and answer["error"] == "orders@9.9.9 is not in the catalog"
    status, answer = server.call("/api/v1/deliveries", token, "POST", {**report, "status": "done"})
    assert status == 422 and answer["error"].startswith("request body: status: String should match pattern")


def test_which_version_contains_a_file(serve: Serve, ship: Ship, release_key: Key) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    shared = "def health():\n    return 'ok'\n"
    files = {"health.py": shared, "tools/health.py": shared, "a.py": "a = 1\n"}
    publish(server.url, token, ship("orders", key=release_key, files=files))
    publish(server.url, token, ship("billing", key=release_key, files={"lib/health.py": shared}))
    publish(server.url, token, ship("ledger", key=release_key, files={"other.py": "b = 2\n"}))
    digest = hashlib.sha256(shared.encode()).hexdigest()
    status, found = server.call(f"/api/v1/files/{digest}/versions", token)
    assert status == 200 and found["total"] == 3
    # newest version first; within a version, paths in reverse (the index read backwards)
    assert [(i["capsule"], i["path"]) for i in found["items"]] == [
        ("billing", "lib/health.py"),
        ("orders", "tools/health.py"),
        ("orders", "health.py"),
    ]
    _, second = server.call(f"/api/v1/files/{digest}/versions?offset=1&limit=1", token)
    assert [(i["capsule"], i["path"]) for i in second["items"]] == [("orders", "tools/health.py")]
    assert server.call("/api/v1/files/NOTHEX/versions", token)[0] == 422


def test_lists_are_paginated_and_carry_etags(serve: Serve, ship: Ship, release_key: Key) -> None:
    import urllib.request

    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        publish(server.url, token, ship("orders", version, key=release_key))
    status, first = server.call("/api/v1/capsules/orders/versions?limit=2", token)
    assert status == 200 and first["total"] == 3 and [i["version"] for i in first["items"]] == ["1.2.0", "1.1.0"]
    _, rest = server.call("/api/v1/capsules/orders/versions?limit=2&offset=2", token)
    assert [i["version"] for i in rest["items"]] == ["1.0.0"]
    assert server.call("/api/v1/capsules/orders/versions?limit=100000", token)[0] == 422

    def get(etag: str | None = None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}", **({"If-None-Match": etag} if etag else {})}
        req = urllib.request.Request(f"{server.url}/api/v1/capsules/orders/versions/1.0.0", headers=headers)
        try:
            with urllib.request.urlopen(req) as answer:
                return answer.status, answer.headers["ETag"]
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["ETag"]

    status, etag = get()
    assert status == 200 and etag.startswith('"')
    assert get(etag) == (304, etag)
    assert get('"stale"')[0] == 200


def test_a_publication_with_its_report_fields(serve: Serve, ship: Ship, release_key: Key) -> None:
    """Findings, score, artifacts and lineage fields of the report land on the version."""
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    report = ship("orders", key=release_key)
    body = publication(report["capsules"][0])
    body.update(parents=["a" * 40], tags=["1.0.0"], branches=["main"], committer="ci <ci@example.org>")
    status, _ = server.call("/api/v1/publish", token, "POST", body)
    assert status == 201
    _, version = server.call("/api/v1/capsules/orders/versions/1.0.0", token)
    shipped = report["capsules"][0]
    assert version["score"] == shipped["score"] and version["findings"] == shipped["findings"]
    assert version["parents"] == ["a" * 40] and version["tags"] == ["1.0.0"] and version["branches"] == ["main"]
    assert [a["sha256"] for a in version["artifacts"]] == [a["sha256"] for a in shipped["artifacts"]]
    assert sorted(f["path"] for f in version["files"]) == ["app.py", "capsule.yaml"]


def test_lineage_diff_scores_and_templates(serve: Serve, ship: Ship, release_key: Key) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    template = ("fastapi-service", "1.0.0")
    publish(
        server.url,
        token,
        ship("orders", "1.0.0", key=release_key, files={"a.py": "a = 1\n", "b.py": "b\n"}, template=template),
    )
    publish(
        server.url,
        token,
        ship("orders", "1.1.0", key=release_key, files={"a.py": "a = 2\n", "c.py": "c\n"}, template=template),
    )

    status, graph = server.call("/api/v1/capsules/orders/lineage", token)
    assert status == 200 and [n["version"] for n in graph["items"]] == ["1.1.0", "1.0.0"] and graph["total"] == 2
    newest, first = graph["items"]
    assert set(newest) == {"version", "digest", "commit", "parents", "published_at"}
    assert newest["parents"] == [first["commit"]] and first["parents"] == []

    status, diff = server.call("/api/v1/capsules/orders/diff?from=1.0.0&to=1.1.0", token)
    assert status == 200
    assert (diff["added"], diff["removed"]) == (["c.py"], ["b.py"])
    assert [c["path"] for c in diff["changed"]] == ["a.py", "capsule.yaml"]
    assert server.call("/api/v1/capsules/orders/diff?from=1.0.0&to=9.0.0", token)[0] == 404

    _, scores = server.call("/api/v1/capsules/orders/scores", token)
    assert [s["version"] for s in scores["items"]] == ["1.1.0", "1.0.0"]
    assert all(isinstance(s["score"], float) for s in scores["items"])

    _, templates = server.call("/api/v1/templates", token)
    assert templates["items"] == [
        {"name": "fastapi-service", "version": "1.0.0", "source": None, "capsules": ["orders"]}
    ]
