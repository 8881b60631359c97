"""DSSE envelope and in-toto statement: exact PAE bytes, parsing, and interop.

The envelope is checked by two implementations that share no code with
``qlcapsule.signing.envelope``: securesystemslib's DSSE (``securesystemslib.dsse``, the
reference Python implementation) and a from-scratch PAE written below from the
DSSE spec, with signatures checked by ``cryptography`` / ``hmac`` directly.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from qlcapsule import Envelope, SignatureError, Statement
from qlcapsule.signing.envelope import MAX_SIGNATURES, PAYLOAD_TYPE, EnvelopeSignature, VerifyKey, pae, verify_envelope
from qlcapsule.signing.signatures import keygen, load_hmac_env, load_public_key, sign_capsule

FILES = {"app/main.py": "print('hi')\n", "README.md": "# demo\n"}


def spec_pae(payload_type: str, body: bytes) -> bytes:
    """PAE written from the DSSE v1 spec text, independently of qlcapsule.signing.envelope."""
    t = payload_type.encode("utf-8")
    parts = [b"DSSEv1", str(len(t)).encode("ascii"), t, str(len(body)).encode("ascii"), body]
    return b" ".join(parts)


def test_pae_matches_the_spec_example() -> None:
    # the worked example of the DSSE protocol document
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


@pytest.mark.parametrize("body", [b"", b"x", b"hello world", "\u00e9t\u00e9 \U0001f600".encode(), bytes(range(256))])
def test_pae_equals_independent_implementation(body: bytes) -> None:
    assert pae(PAYLOAD_TYPE, body) == spec_pae(PAYLOAD_TYPE, body)
    assert pae("t\u00fcpe", body) == spec_pae("t\u00fcpe", body)  # LEN counts bytes, not characters


@pytest.fixture
def signed(make_capsule, tmp_path: Path):  # type: ignore[no-untyped-def]
    capsule = make_capsule(FILES, name="orders", version="1.2.3")
    info = keygen("ed25519", tmp_path / "k.key")
    sign_capsule(capsule.root, info["private"])
    return capsule, info


def test_envelope_layout(signed) -> None:  # type: ignore[no-untyped-def]
    capsule, info = signed
    doc = json.loads(capsule.sig_path.read_bytes())
    assert set(doc) == {"payload", "payloadType", "signatures"}
    assert doc["payloadType"] == "application/vnd.in-toto+json"
    assert doc["signatures"][0]["keyid"] == info["keyid"]
    statement = json.loads(base64.b64decode(doc["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": "orders@1.2.3", "digest": {"sha256": capsule.digest}}]
    assert statement["predicateType"] == "https://qlcapsule.dev/attestation/capsule/v1"
    pred = statement["predicate"]
    assert pred["name"] == "orders" and pred["version"] == "1.2.3" and pred["files"] == 3
    assert pred["digest"] == {"sha256": capsule.digest}
    assert pred["created"].endswith("Z") and "expires" not in pred
    # the payload bytes are canonical: compact, sorted keys
    raw = base64.b64decode(doc["payload"])
    assert raw == json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_independent_pae_verifies_ed25519_signature(signed) -> None:  # type: ignore[no-untyped-def]
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    capsule, info = signed
    doc = json.loads(capsule.sig_path.read_bytes())
    body = base64.b64decode(doc["payload"])
    sig = base64.b64decode(doc["signatures"][0]["sig"])
    public = load_pem_public_key(Path(info["public"]).read_bytes())
    public.verify(sig, spec_pae(doc["payloadType"], body))  # type: ignore[call-arg,union-attr]
    with pytest.raises(InvalidSignature):
        public.verify(sig, body)  # never a signature over the bare payload  # type: ignore[call-arg,union-attr]


def test_independent_pae_verifies_hmac_signature(make_capsule, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule(FILES)
    secret = bytes(range(32))
    monkeypatch.setenv("HK", secret.hex())
    sign_capsule(capsule.root, key_env="HK")
    doc = json.loads(capsule.sig_path.read_bytes())
    body = base64.b64decode(doc["payload"])
    expected = hmac.new(secret, spec_pae(doc["payloadType"], body), hashlib.sha256).digest()
    assert base64.b64decode(doc["signatures"][0]["sig"]) == expected


def _sslib_key(info: dict) -> object:  # type: ignore[type-arg]
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
    from securesystemslib.signer import SSlibKey

    pub = load_pem_public_key(Path(info["public"]).read_bytes())
    raw = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return SSlibKey(info["keyid"], "ed25519", "ed25519", {"public": raw.hex()})


def test_securesystemslib_verifies_our_envelope(signed) -> None:  # type: ignore[no-untyped-def]
    from securesystemslib import exceptions
    from securesystemslib.dsse import Envelope as SslibEnvelope

    capsule, info = signed
    env = SslibEnvelope.from_dict(json.loads(capsule.sig_path.read_bytes()))
    key = _sslib_key(info)
    accepted = env.verify([key], 1)  # type: ignore[list-item]
    assert list(accepted) == [info["keyid"]]
    assert env.pae() == Envelope.from_json(capsule.sig_path.read_bytes()).pae()
    # and it rejects a payload we altered
    env.payload = env.payload.replace(b"1.2.3", b"9.9.9")
    with pytest.raises(exceptions.VerificationError):
        env.verify([key], 1)  # type: ignore[list-item]


def test_we_verify_an_envelope_signed_by_securesystemslib(signed, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.dsse import Envelope as SslibEnvelope
    from securesystemslib.signer import CryptoSigner

    capsule, info = signed
    ours = Envelope.from_json(capsule.sig_path.read_bytes())
    private = load_pem_private_key(Path(info["private"]).read_bytes(), password=None)
    signer = CryptoSigner(private, _sslib_key(info))  # type: ignore[arg-type]
    env = SslibEnvelope(ours.payload, PAYLOAD_TYPE, {})
    env.sign(signer)
    capsule.sig_path.write_text(json.dumps(env.to_dict()))
    res = qlcapsule_cli("verify", str(capsule.root), "--key", info["public"])
    assert res.exit_code == 0, res.output
    assert "signed by ed25519" in res.stdout


def test_envelope_round_trip_and_url_safe_base64() -> None:
    env = Envelope(b"\xfb\xff payload", PAYLOAD_TYPE, [EnvelopeSignature("k1", b"\xff\xfe\xfd")])
    again = Envelope.from_json(env.to_json())
    assert again == env
    doc = env.to_dict()
    doc["payload"] = base64.urlsafe_b64encode(env.payload).decode().rstrip("=")
    assert Envelope.from_json(json.dumps(doc).encode()).payload == env.payload


@pytest.mark.parametrize(
    ("raw", "cause"),
    [
        (b"not json", "invalid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"payloadType": "x", "signatures": []}', "'payload' is missing"),
        (b'{"payload": "", "payloadType": "text/plain", "signatures": []}', "payloadType is 'text/plain'"),
        (b'{"payload": "@@@", "payloadType": "application/vnd.in-toto+json", "signatures": []}', "not valid base64"),
        (b'{"payload": "", "payloadType": "application/vnd.in-toto+json", "signatures": {}}', "expected a list"),
        (b'{"payload": "", "payloadType": "application/vnd.in-toto+json", "signatures": [{}]}', "signatures[0]"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_envelopes_are_named(raw: bytes, cause: str) -> None:
    with pytest.raises(SignatureError, match="capsule.sig") as err:
        Envelope.from_json(raw)
    assert cause in str(err.value)


def _statement(**over: object) -> dict:  # type: ignore[type-arg]
    payload = Statement.build(
        name="demo", version="1.0.0", digest="a" * 64, files=2, created=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    )
    doc = json.loads(payload)
    doc.update(over)
    return doc


@pytest.mark.parametrize(
    ("over", "cause"),
    [
        ({"_type": "https://in-toto.io/Statement/v0.1"}, "_type"),
        ({"predicateType": "https://slsa.dev/provenance/v1"}, "predicateType"),
        ({"subject": []}, "exactly one subject"),
        ({"subject": [{"name": "demo@1.0.0", "digest": {"sha256": "XYZ"}}]}, "sha256 digest"),
        ({"predicate": "nope"}, "predicate"),
        ({"predicate": {"name": "demo", "version": "1.0.0", "created": "yesterday"}}, "RFC 3339"),
    ],
)
def test_malformed_statements_are_named(over: dict, cause: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SignatureError) as err:
        Statement.parse(json.dumps(_statement(**over)).encode())
    assert cause in str(err.value)


def test_statement_round_trip() -> None:
    st = Statement.parse(json.dumps(_statement()).encode())
    assert (st.subject_name, st.name, st.version, st.digest, st.files) == ("demo@1.0.0", "demo", "1.0.0", "a" * 64, 2)
    assert st.created == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) and st.expires is None


def test_keyids_are_hints_and_keys_verify_only_their_algorithm(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    a = keygen("ed25519", tmp_path / "a.key")
    monkeypatch.setenv("HK", "ab" * 32)
    ka, kh = load_public_key(a["public"]), load_hmac_env("HK")
    env = Envelope(b"{}", PAYLOAD_TYPE)
    # an Ed25519 signature under a bogus keyid still verifies: the keyid is only a hint
    from qlcapsule.signing.signatures import load_signing_key

    sk = load_signing_key(a["private"])
    env.signatures = [EnvelopeSignature("bogus", sk.signer.sign(sk.key, env.pae()))]
    assert verify_envelope(env, [ka, kh], 1) == [ka]
    # the Ed25519 signer handed an HMAC key (or the reverse) refuses instead of verifying
    crossed = VerifyKey(ka.signer, kh.key, kh.keyid, "crossed")
    assert crossed.check(env.pae(), env.signatures[0].sig) is False
    with pytest.raises(SignatureError, match="not signed by a trusted key"):
        verify_envelope(env, [kh], 1)


def test_deeply_nested_envelope_and_payload_are_named() -> None:
    """json.loads raised RecursionError, reported as 'verification failed: RecursionError: ...'."""
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(SignatureError, match=r"^capsule\.sig: not a DSSE envelope: invalid JSON: nested too deeply$"):
        Envelope.from_json(deep)
    with pytest.raises(
        SignatureError, match=r"^capsule\.sig: payload is not a JSON statement: invalid JSON: nested too deeply$"
    ):
        Statement.parse(deep)


def test_the_number_of_signatures_is_capped() -> None:
    sig = {"keyid": "", "sig": base64.b64encode(b"\0" * 64).decode()}
    doc = {
        "payload": base64.b64encode(b"{}").decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [sig] * MAX_SIGNATURES,
    }
    assert len(Envelope.from_json(json.dumps(doc).encode()).signatures) == MAX_SIGNATURES == 256
    doc["signatures"] = [sig] * (MAX_SIGNATURES + 1)
    with pytest.raises(SignatureError, match="257 signatures; at most 256 are accepted"):
        Envelope.from_json(json.dumps(doc).encode())
