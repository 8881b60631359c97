"""Publishing ship reports to a real server (uvicorn on 127.0.0.1) on SQLite and on a real PostgreSQL: the
server's own trust policy decides, writes are idempotent by digest, tokens and scopes are enforced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from catalog_fixtures import Key, Serve, Ship

from qlcapsule import CredentialsError, VerificationError
from qlcapsule_server.client import publication, publish


def _body(report: dict[str, Any]) -> dict[str, Any]:
    return publication(report["capsules"][0])


def test_a_signed_ship_is_verified_by_the_servers_trust_and_recorded_once(
    serve: Serve, ship: Ship, release_key: Key
) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    report = ship("orders", "2.1.0", key=release_key)

    first = publish(server.url, token, report)
    again = publish(server.url, token, report)

    assert first[0]["created"] is True and again[0]["created"] is False
    assert first[0]["signature_status"] == "verified"
    assert first[0]["signed_by"] == [release_key.keyid]
    status, versions = server.call("/api/v1/capsules/orders/versions", token)
    assert status == 200 and versions["total"] == 1
    (version,) = versions["items"]
    assert version["digest"] == report["capsules"][0]["digest"]
    assert version["signature"]["keys"] == [{"keyid": release_key.keyid, "algorithm": "ed25519", "verified": True}]
    assert version["commit"] == report["capsules"][0]["commit"]


def test_a_presigned_url_is_never_stored_whatever_the_publisher_sends(
    serve: Serve, ship: Ship, release_key: Key, tmp_path: Path
) -> None:
    """A presigned URL is a bearer credential until it expires: the catalog keeps receipts' and live statuses'
    URLs without their query, even from a publisher that does not strip them (this one is hand-made)."""
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    report = ship("orders", "2.2.0", key=release_key)
    signed = "https://b.s3.amazonaws.com/orders.tgz?X-Amz-Credential=AKIA&X-Amz-Signature=feedface#frag"
    shipped = report["capsules"][0]
    assert shipped["receipts"], "the ship fixture delivers to a local target"
    for r in shipped["receipts"]:
        r["url"], r["location"] = signed, signed
    publish(server.url, token, report)
    status, answer = server.call(
        "/api/v1/deliveries",
        token,
        "POST",
        {
            "capsule": "orders",
            "version": "2.2.0",
            "target": "s3",
            "provider": "s3",
            "status": "uploading",
            "url": signed,
        },
    )
    assert status == 200, answer
    status, deliveries = server.call("/api/v1/capsules/orders/versions/2.2.0/deliveries", token)
    assert status == 200
    text = json.dumps(deliveries)
    assert "https://b.s3.amazonaws.com/orders.tgz" in text
    assert "X-Amz" not in text and "feedface" not in text and "#frag" not in text
    status, version = server.call("/api/v1/capsules/orders/versions/2.2.0", token)
    assert status == 200 and "X-Amz" not in json.dumps(version)


def test_untrusted_and_unsigned_are_refused_by_default_and_recorded_when_marked(
    serve: Serve, ship: Ship, release_key: Key, other_key: Key
) -> None:
    strict = serve(trust_file=str(release_key.trust))
    token = strict.token("publish")
    untrusted = ship("billing", key=other_key)
    unsigned = ship("ledger", key=None)
    with pytest.raises(
        VerificationError, match=r"refused billing@1\.0\.0: billing@1\.0\.0: untrusted: .*not signed by a trusted key"
    ):
        publish(strict.url, token, untrusted)
    with pytest.raises(VerificationError, match=r"ledger@1\.0\.0: unsigned"):
        publish(strict.url, token, unsigned)
    strict.stop()

    lenient = serve(trust_file=str(release_key.trust), unsigned="mark", untrusted="mark")
    token = lenient.token("publish", "read")
    assert publish(lenient.url, token, untrusted)[0]["signature_status"] == "untrusted"
    assert publish(lenient.url, token, unsigned)[0]["signature_status"] == "unsigned"
    # the other key's id is kept as the envelope's hint, never as verified
    status, found = lenient.call(f"/api/v1/keys/{other_key.keyid}/versions", token)
    assert status == 200 and found["total"] == 0
    _, billing = lenient.call("/api/v1/capsules/billing/versions/1.0.0", token)
    assert billing["signature"]["keys"] == [{"keyid": other_key.keyid, "algorithm": None, "verified": False}]


def test_a_report_names_no_keys_the_server_trusts(serve: Serve, ship: Ship, release_key: Key, other_key: Key) -> None:
    """Content under test decides nothing: a report cannot add a trusted key or claim a verdict."""
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish")
    body = _body(ship("billing", key=other_key))
    body["capsule"]["signed_by"] = [release_key.keyid]
    body["trust"] = [{"algorithm": "ed25519", "key": other_key.public.read_text()}]
    status, answer = server.call("/api/v1/publish", token, "POST", body)
    assert status == 422 and "trust: Extra inputs are not permitted" in answer["error"]
    del body["trust"]
    status, answer = server.call("/api/v1/publish", token, "POST", body)
    assert status == 422 and "untrusted" in answer["error"]


def test_tampering_is_refused_whatever_the_policy(serve: Serve, ship: Ship, release_key: Key) -> None:
    server = serve(trust_file=str(release_key.trust), unsigned="mark", untrusted="mark")
    token = server.token("publish", "read")
    signed = _body(ship("orders", key=release_key))
    other = _body(ship("orders", "1.0.1", key=release_key))

    # another version's lock under this envelope: the statement names another digest and version
    swapped = {**signed, "lock": other["lock"], "capsule": other["capsule"]}
    status, answer = server.call("/api/v1/publish", token, "POST", swapped)
    assert status == 422 and "signed for orders@1.0.0 but the lock is orders@1.0.1" in answer["error"]

    # a file's digest changed in the lock, its digest field left: an edited lock
    lock = json.loads(signed["lock"])
    lock["files"][0]["sha256"] = "0" * 64
    status, answer = server.call("/api/v1/publish", token, "POST", {**signed, "lock": json.dumps(lock)})
    assert status == 422 and "the lock was edited" in answer["error"]

    # the report's digest is not the lock's
    wrong = {**signed, "capsule": {**signed["capsule"], "digest": "1" * 64}}
    status, answer = server.call("/api/v1/publish", token, "POST", wrong)
    assert status == 422 and "is not the lock's" in answer["error"]

    status, versions = server.call("/api/v1/capsules/orders/versions", token)
    assert versions["total"] == 0


def test_tokens_scopes_and_revocation(serve: Serve, ship: Ship, release_key: Key) -> None:
    from qlcapsule_server import db, tokens

    server = serve(trust_file=str(release_key.trust))
    report = ship("orders", key=release_key)
    reader = server.token("read")
    with pytest.raises(CredentialsError, match=r"lacks the 'publish' scope"):
        publish(server.url, reader, report)
    with pytest.raises(CredentialsError, match=r"unknown or revoked token"):
        publish(server.url, "qlc_" + "x" * 43, report)
    assert server.call("/api/v1/capsules")[0] == 401
    assert server.call("/api/v1/capsules", "not-a-token")[0] == 401

    admin = server.token("admin")
    assert publish(server.url, admin, report)[0]["created"] is True  # admin implies publish
    with db.transaction(db.session_factory(server.app.state.engine)) as session:
        from sqlalchemy import select

        from qlcapsule_server.models import AuditRow, TokenRow

        name = session.scalars(select(TokenRow.name).where(TokenRow.token_sha256 == tokens.digest(admin))).one()
        assert tokens.revoke(session, name)
        # only the hash is stored, and the write was audited under the token's name
        assert session.scalars(select(TokenRow).where(TokenRow.token_sha256 == admin)).first() is None
        audit = session.scalars(select(AuditRow).where(AuditRow.actor == name)).all()
        assert [(a.action, a.outcome) for a in audit] == [("publish", "created")]
    assert server.call("/api/v1/capsules", admin)[0] == 401


def test_anonymous_reads_only_when_the_operator_allows_them(serve: Serve) -> None:
    server = serve(anonymous_read=True)
    status, answer = server.call("/api/v1/capsules")
    assert status == 200 and answer == {"items": [], "total": 0, "offset": 0, "limit": 50}
    assert server.call("/api/v1/publish", None, "POST", {})[0] == 401


def test_bodies_are_bounded_before_they_are_parsed(serve: Serve, release_key: Key) -> None:
    server = serve(trust_file=str(release_key.trust), max_body=4096, max_depth=8)
    token = server.token("publish")
    status, answer = server.call("/api/v1/publish", token, "POST", {"lock": "x" * 5000})
    assert status == 413 and "at most 4096 bytes" in answer["error"]
    deep: Any = []
    for _ in range(20):
        deep = [deep]
    status, answer = server.call("/api/v1/publish", token, "POST", {"capsule": deep})
    assert status == 400 and "nested 22 levels deep; at most 8" in answer["error"]
    status, answer = server.call("/api/v1/publish", token, "POST", {"capsule": {}, "lock": "{}"})
    assert status == 422 and answer["error"].startswith("request body: capsule.name: Field required")


def test_publish_command_reads_the_report_and_the_token_from_the_environment(
    serve: Serve, ship: Ship, release_key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from qlcapsule.cli import main

    server = serve(trust_file=str(release_key.trust))
    report = tmp_path / "report.json"
    shipped = ship("orders", "3.0.0", key=release_key)  # what 'ship --json' prints: the answer around it
    answer = {"ok": True, "command": "ship", "exit_code": 0, "error": None, "result": shipped}
    report.write_text(json.dumps(answer), encoding="utf-8")
    monkeypatch.setenv("CATALOG_TOKEN", server.token("publish"))
    args = ["catalog", "publish", "--url", server.url, "--token-env", "CATALOG_TOKEN", str(report)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("published orders@3.0.0 sha256:") and result.output.endswith("signature verified\n")
    result = CliRunner().invoke(main, [*args, "--json"])
    assert json.loads(result.output)["result"]["published"][0]["created"] is False
    # the token never goes over plain HTTP to another machine
    result = CliRunner().invoke(
        main, ["catalog", "publish", "--url", "http://catalog.example", "--token-env", "CATALOG_TOKEN", str(report)]
    )
    assert result.exit_code == 2 and "use https so the token is not sent in clear" in result.output
    monkeypatch.delenv("CATALOG_TOKEN")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "environment variable CATALOG_TOKEN is not set" in result.output
