"""The ed25519 signer plugin, checked against cryptography's own serialization."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from qlcapsule import CredentialsError
from qlcapsule_plugins.signers.ed25519 import Ed25519Signer, load_public


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer.from_options({})  # type: ignore[return-value]


def test_registered(qlcapsule_registry) -> None:  # type: ignore[no-untyped-def]
    assert qlcapsule_registry.get("signer", "ed25519") is Ed25519Signer


def test_generated_pair_round_trip(signer: Ed25519Signer) -> None:
    pair = signer.generate_key()
    assert pair.private.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pair.public is not None and pair.public.startswith(b"-----BEGIN PUBLIC KEY-----")
    priv, pub = signer.load_signing_key(pair.private), signer.load_verify_key(pair.public)
    assert pair.keyid == priv.keyid == pub.keyid
    sig = signer.sign(priv, b"pae")
    assert len(sig) == 64 and signer.verify(pub, b"pae", sig)
    assert not signer.verify(pub, b"pa3", sig) and not signer.verify(pub, b"pae", sig[:63])
    # the fast PEM path agrees with cryptography's loader
    ref = ser.load_pem_public_key(pair.public)
    assert pub.raw_public == ref.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    ref.verify(sig, b"pae")  # type: ignore[call-arg,union-attr]


def test_public_key_forms(signer: Ed25519Signer) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    forms = [
        key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo),
        key.public_key().public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH),
        key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()),
        raw.hex().encode(),
    ]
    ids = {signer.load_verify_key(f).keyid for f in forms}
    assert len(ids) == 1
    with pytest.raises(CredentialsError):
        load_public(raw.hex().encode())  # raw hex only where the algorithm is explicit


@pytest.mark.parametrize(
    ("material", "message"),
    [
        (b"nothing", "not an Ed25519"),
        (b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n", "not valid base64"),
    ],
)
def test_bad_private_keys(signer: Ed25519Signer, material: bytes, message: str) -> None:
    with pytest.raises(CredentialsError, match=message):
        signer.load_signing_key(material)


def test_other_algorithms_and_encryption_are_refused(signer: Ed25519Signer) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    with pytest.raises(CredentialsError, match="not an Ed25519 key"):
        signer.load_signing_key(pem)
    with pytest.raises(CredentialsError, match="not an Ed25519 key"):
        signer.load_verify_key(
            ec_key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
        )
    enc = ed25519.Ed25519PrivateKey.generate().private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(CredentialsError, match="encrypted"):
        signer.load_signing_key(enc)


def test_public_key_cannot_sign_and_foreign_keys_refused(signer: Ed25519Signer) -> None:
    pair = signer.generate_key()
    assert pair.public is not None
    with pytest.raises(CredentialsError):
        signer.sign(signer.load_verify_key(pair.public), b"x")
    with pytest.raises(TypeError):
        signer.verify(b"\x00" * 32, b"x", b"\x00" * 64)
