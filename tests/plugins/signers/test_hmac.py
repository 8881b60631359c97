"""The hmac-sha256 signer plugin."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from qlcapsule import CredentialsError, Signer
from qlcapsule_plugins.signers.hmac import HmacKey, HmacSha256Signer, decode_secret


def test_registered(qlcapsule_registry) -> None:  # type: ignore[no-untyped-def]
    cls = qlcapsule_registry.get("signer", "hmac-sha256")
    assert cls is HmacSha256Signer and issubclass(cls, Signer)


def test_sign_verify_matches_stdlib_hmac() -> None:
    s = HmacSha256Signer.from_options({})
    pair = s.generate_key()
    key = s.load_signing_key(pair.private)
    assert pair.public is None and pair.keyid == key.keyid == s.keyid(key)
    sig = s.sign(key, b"message")
    assert sig == hmac.new(key.secret, b"message", hashlib.sha256).digest()
    assert s.verify(key, b"message", sig)
    assert not s.verify(key, b"messagE", sig)
    assert not s.verify(key, b"message", sig[:-1])
    other = s.load_verify_key(s.generate_key().private)
    assert not s.verify(other, b"message", sig)


@pytest.mark.parametrize(
    ("material", "secret"),
    [
        (b"ab" * 32, bytes([0xAB]) * 32),
        (b"  AB" * 1 + b"ab" * 31 + b"\n", bytes([0xAB]) * 32),
        (b"base64:" + base64.b64encode(b"s" * 33), b"s" * 33),
        (b"a plain passphrase that is long enough!", b"a plain passphrase that is long enough!"),
    ],
)
def test_key_formats(material: bytes, secret: bytes) -> None:
    assert decode_secret(material) == secret


@pytest.mark.parametrize(
    ("material", "message"),
    [
        (b"", "empty"),
        (b"ab" * 31, "31 bytes"),
        (b"short", "5 bytes"),
        (b"base64:!!!", "not valid base64"),
        (
            b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA" + b"A" * 43 + b"=\n-----END PUBLIC KEY-----\n",
            "not a shared secret",
        ),
        (b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + b"A" * 40, "not a shared secret"),
    ],
)
def test_refused_keys(material: bytes, message: str) -> None:
    with pytest.raises(CredentialsError, match=message):
        HmacSha256Signer.from_options({}).load_signing_key(material)


def test_key_never_shows_its_secret() -> None:
    key = HmacKey(b"x" * 32)
    assert "x" * 8 not in repr(key) and key.keyid[:16] in repr(key)
    assert key.keyid != hashlib.sha256(b"x" * 32).hexdigest()  # domain-separated


def test_refuses_foreign_key_objects() -> None:
    s = HmacSha256Signer.from_options({})
    with pytest.raises(TypeError):
        s.verify(b"x" * 32, b"m", b"sig")  # raw bytes are not a loaded key: algorithm fixed per key


def test_sniffing() -> None:
    assert HmacSha256Signer.sniff_private(b"ab" * 32)
    assert not HmacSha256Signer.sniff_private(b"-----BEGIN PRIVATE KEY-----")
    assert not HmacSha256Signer.sniff_public(b"ab" * 32)  # never offered as a public key


def test_short_hex_is_refused_as_hex_not_read_as_text() -> None:
    """36 hex digits are 18 bytes: too short, and the message says it was read as hex."""
    with pytest.raises(CredentialsError, match=r"HMAC key is 18 bytes; .*read as 36 hex digits; a hex secret needs 64"):
        decode_secret(b"ab" * 18)
    assert decode_secret(b"ab" * 32) == bytes([0xAB]) * 32
