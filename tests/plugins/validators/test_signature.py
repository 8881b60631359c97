"""The signature validator: policy findings for 'qlcapsule validate'."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from qlcapsule import Capsule, Severity
from qlcapsule.signing.signatures import keygen, sign_capsule
from qlcapsule.testing import write_capsule
from qlcapsule_plugins.validators.signature import SignatureValidator


def findings(root: Path, **options):  # type: ignore[no-untyped-def]
    v = SignatureValidator.from_options(options)
    return [(f.rule, f.severity, f.message) for f in v.check_capsule(Capsule.load(root))]  # type: ignore[attr-defined]


@pytest.fixture
def key(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    return keygen("ed25519", tmp_path / "k.key")


def test_registered(qlcapsule_registry) -> None:  # type: ignore[no-untyped-def]
    assert qlcapsule_registry.get("validator", "signature") is SignatureValidator


def test_unsigned_without_policy_is_fine(tmp_path: Path) -> None:
    root = tmp_path / "c"
    write_capsule(root, {"a": "a\n"})
    assert findings(root) == []


def test_unsigned_with_policy_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "c"
    write_capsule(root, {"a": "a\n"}, definition="name: c\nversion: 1.0.0\npolicy: {require_signature: true}\n")
    [(rule, sev, msg)] = findings(root)
    assert rule == "signature.missing" and sev is Severity.ERROR and "require_signature" in msg


def test_unsigned_with_a_minimum_version_is_an_error(tmp_path: Path) -> None:
    """'verify' needs a verified statement to compare policy.min_version with: a signature is required."""
    root = tmp_path / "c"
    write_capsule(root, {"a": "a\n"}, definition="name: c\nversion: 1.0.0\npolicy: {min_version: 1.0.0}\n")
    [(rule, sev, msg)] = findings(root)
    assert (rule, sev) == ("signature.missing", Severity.ERROR) and "policy.min_version is set" in msg


def test_clean_signed_capsule_has_no_findings(tmp_path: Path, key: dict) -> None:  # type: ignore[type-arg]
    root = tmp_path / "c"
    write_capsule(root, {"a": "a\n"})
    sign_capsule(root, key["private"], expires="90d")
    assert findings(root) == []


def test_stale_after_reseal(tmp_path: Path, key: dict) -> None:  # type: ignore[type-arg]
    root = tmp_path / "c"
    write_capsule(root, {"a": "a\n"})
    sign_capsule(root, key["private"])
    (root / "a").write_text("b\n")
    Capsule.load(root).seal()
    assert [f[0] for f in findings(root)] == ["signature.stale"]
    (root / "capsule.yaml").write_text("name: demo\nversion: 2.0.0\n")
    Capsule.load(root).seal()
    [(rule, _, msg)] = findings(root)
    assert rule == "signature.stale" and "demo@1.0.0" in msg and "demo@2.0.0" in msg


def test_expired_and_expiring(tmp_path: Path, key: dict) -> None:  # type: ignore[type-arg]
    root = tmp_path / "c"
    write_capsule(root, {"a": "a\n"})
    sign_capsule(root, key["private"], expires="1h", now=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    assert [f[0] for f in findings(root)] == ["signature.expired"]
    sign_capsule(root, key["private"], expires="3d")
    [(rule, sev, _)] = findings(root)
    assert rule == "signature.expiring" and sev is Severity.WARNING
    assert findings(root, expiring_days=1) == []


def test_malformed(tmp_path: Path) -> None:
    root = tmp_path / "c"
    write_capsule(root, {"a": "a\n"})
    (root / "capsule.sig").write_text("{}")
    [(rule, _, msg)] = findings(root)
    assert rule == "signature.malformed" and "'payload' is missing" in msg


def test_untrusted_against_the_operator_trust_file(tmp_path: Path, key: dict, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    other = keygen("ed25519", tmp_path / "other.key")
    (tmp_path / "trust.yaml").write_text(f"- {{algorithm: ed25519, key_file: {key['public']}}}\n")
    monkeypatch.setenv("QLCAPSULE_TRUST_FILE", str(tmp_path / "trust.yaml"))
    root = tmp_path / "c"
    write_capsule(root, {"a": "a\n"})
    sign_capsule(root, key["private"])
    assert findings(root) == []
    (root / "capsule.sig").unlink()
    sign_capsule(root, other["private"])
    [(rule, _, msg)] = findings(root)
    assert rule == "signature.untrusted" and "not signed by a trusted key" in msg
    doc = json.loads((root / "capsule.sig").read_text())
    assert doc["signatures"][0]["keyid"] == other["keyid"]


def test_policy_trust_is_not_a_trust_root(tmp_path: Path, key: dict, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A capsule re-signed with the attacker's key, whose policy.trust names the attacker's own
    trust file, is reported untrusted against the operator's keys, never found trusted."""
    monkeypatch.delenv("QLCAPSULE_TRUST_FILE", raising=False)
    attacker = keygen("ed25519", tmp_path / "attacker.key")
    root = tmp_path / "c"
    own = f"- {{algorithm: ed25519, key_file: {attacker['public']}}}\n"
    write_capsule(
        root, {"a": "a\n", "trust.yaml": own}, definition="name: c\nversion: 1.0.0\npolicy: {trust: trust.yaml}\n"
    )
    sign_capsule(root, attacker["private"])
    [(rule, sev, msg)] = findings(root)
    assert rule == "signature.no-trust" and sev is Severity.NOTE and "no trust root" in msg
    (tmp_path / "operator.yaml").write_text(f"- {{algorithm: ed25519, key_file: {key['public']}}}\n")
    monkeypatch.setenv("QLCAPSULE_TRUST_FILE", str(tmp_path / "operator.yaml"))
    [(rule, _, msg)] = findings(root)
    assert rule == "signature.untrusted" and "not signed by a trusted key" in msg


def test_options_are_strict() -> None:
    from qlcapsule import OptionsError

    with pytest.raises(OptionsError, match="unknown key"):
        SignatureValidator.from_options({"expiring": 3})


def test_required_without_trust_is_a_note(tmp_path: Path, key: dict) -> None:  # type: ignore[type-arg]
    root = tmp_path / "c"
    write_capsule(root, {"a": "a\n"}, definition="name: c\nversion: 1.0.0\npolicy: {require_signature: true}\n")
    sign_capsule(root, key["private"])
    [(rule, sev, msg)] = findings(root)
    assert rule == "signature.no-trust" and sev is Severity.NOTE and "--key" in msg
