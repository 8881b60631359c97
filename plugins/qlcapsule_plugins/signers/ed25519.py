"""The ``ed25519`` signer (``cryptography``).

Private keys: PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``, what ``qlcapsule
keygen`` writes) or an OpenSSH private key (``ssh-keygen -t ed25519``),
unencrypted. Public keys: SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC
KEY-----``), an OpenSSH ``ssh-ed25519 AAAA...`` line, or — only where the
algorithm is stated explicitly (a trust file entry) — the raw 32 bytes as 64
hex characters. A private key given where a public one is expected is reduced
to its public half.

The key id is the SHA-256 of the raw 32-byte public key, in hex. The common
PEM forms are decoded here without ``cryptography``'s serialization module,
which keeps ``qlcapsule verify`` fast; anything else goes through it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import TYPE_CHECKING, Any

from qlcapsule import CredentialsError, Register, Signer, hookimpl

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
    from cryptography.hazmat.primitives.serialization import SSHPrivateKeyTypes

    from qlcapsule import KeyPair

# DER prefixes of the two fixed-size Ed25519 encodings (RFC 8410)
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.S)
_HEX32 = re.compile(rb"^[0-9a-fA-F]{64}$")


def _pem_block(material: bytes) -> tuple[bytes, bytes] | None:
    m = _PEM.search(material)
    if not m:
        return None
    try:
        return m.group(1), base64.b64decode(b"".join(m.group(2).split()), validate=True)
    except (binascii.Error, ValueError):
        raise CredentialsError("ed25519 key: the PEM block is not valid base64") from None


def _raw_public(pub: Any) -> bytes:
    # public_bytes_raw (cryptography >= 40) spares importing the serialization
    # package (~20 ms with its SSH module) on every sign.
    return pub.public_bytes_raw()


class Ed25519Key:
    """A public (and maybe private) Ed25519 key with its key id."""

    __slots__ = ("private", "public", "raw_public", "keyid")

    def __init__(self, public: Any, raw_public: bytes, private: Any = None) -> None:
        self.private = private
        self.public = public
        self.raw_public = raw_public
        self.keyid = hashlib.sha256(raw_public).hexdigest()

    def __repr__(self) -> str:
        return f"Ed25519Key(keyid={self.keyid[:16]}, private={self.private is not None})"


def _from_private(private: Any) -> Ed25519Key:
    return Ed25519Key(private.public_key(), _raw_public(private.public_key()), private)


def load_private(material: bytes) -> Ed25519Key:
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415 -- start-up: cryptography (~20 ms) loads only when a key is used

    block = _pem_block(material)
    if block and block[0] == b"PRIVATE KEY" and len(block[1]) == 48 and block[1].startswith(_PKCS8_PREFIX):
        return _from_private(ed25519.Ed25519PrivateKey.from_private_bytes(block[1][16:]))
    if block is None:
        raise CredentialsError(
            "ed25519 key: not an Ed25519 private key (expected PEM 'PRIVATE KEY' or an OpenSSH private key)"
        )
    if block[0] == b"PUBLIC KEY":
        raise CredentialsError("ed25519 key: a public key; signing needs the private key")
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 -- start-up: cryptography (~20 ms) loads only when a key is used

    key: PrivateKeyTypes | SSHPrivateKeyTypes
    try:
        if b"OPENSSH PRIVATE KEY" in material:
            key = serialization.load_ssh_private_key(material, password=None)
        else:
            key = serialization.load_pem_private_key(material, password=None)
    except TypeError:
        raise CredentialsError(
            "ed25519 key: an encrypted private key: refused (decrypt it into a pipe: ... | qlcapsule sign --key -)"
        ) from None
    except (ValueError, binascii.Error) as exc:
        raise CredentialsError(f"ed25519 key: not a readable private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        kind = type(key).__name__.lstrip("_").removesuffix("PrivateKey").replace("EllipticCurve", "EC")
        raise CredentialsError(f"ed25519 key: unsupported key type ({kind} private key), not an Ed25519 key")
    return _from_private(key)


def load_public(material: bytes, *, allow_raw: bool = False) -> Ed25519Key:
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415 -- start-up: cryptography (~20 ms) loads only when a key is used

    text = material.strip()
    block = _pem_block(text)
    raw: bytes | None = None
    if block and block[0] == b"PUBLIC KEY":
        der = block[1]
        if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
            raise CredentialsError("ed25519 key: the PEM public key is not an Ed25519 key")
        raw = der[12:]
    elif block and b"PRIVATE KEY" in block[0]:
        key = load_private(text)
        return Ed25519Key(key.public, key.raw_public)
    elif text.startswith(b"ssh-ed25519 "):
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 -- start-up: cryptography (~20 ms) loads only when a key is used

        try:
            pub = serialization.load_ssh_public_key(text)
        except (ValueError, binascii.Error) as exc:
            raise CredentialsError(f"ed25519 key: not a readable OpenSSH public key ({exc})") from None
        return Ed25519Key(pub, _raw_public(pub))
    elif allow_raw and _HEX32.match(text):
        raw = bytes.fromhex(text.decode("ascii"))
    if raw is None:
        raise CredentialsError(
            "ed25519 key: not an Ed25519 public key (expected PEM 'PUBLIC KEY' or 'ssh-ed25519 ...')"
        )
    return Ed25519Key(ed25519.Ed25519PublicKey.from_public_bytes(raw), raw)


class Ed25519Signer(Signer):
    name = "ed25519"
    description = "Ed25519 signatures (cryptography); PEM or OpenSSH keys"

    @classmethod
    def sniff_private(cls, material: bytes) -> bool:
        head = material.lstrip()[:40]
        return head.startswith((b"-----BEGIN PRIVATE KEY", b"-----BEGIN OPENSSH PRIVATE KEY"))

    @classmethod
    def sniff_public(cls, material: bytes) -> bool:
        head = material.lstrip()[:40]
        return head.startswith((b"-----BEGIN PUBLIC KEY", b"ssh-ed25519 ")) or cls.sniff_private(material)

    def generate_key(self) -> KeyPair:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 -- start-up: cryptography (~20 ms) loads only when a key is used
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415 -- start-up: cryptography (~20 ms) loads only when a key is used

        from qlcapsule import KeyPair  # noqa: PLC0415 -- start-up: the record class loads only for keygen; verify never builds it

        private = ed25519.Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        pub = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return KeyPair(private=pem, public=pub, keyid=_from_private(private).keyid)

    def load_signing_key(self, material: bytes) -> Ed25519Key:
        return load_private(material)

    def load_verify_key(self, material: bytes) -> Ed25519Key:
        return load_public(material, allow_raw=True)

    def keyid(self, key: Any) -> str:
        return _check(key).keyid

    def sign(self, key: Any, pae: bytes) -> bytes:
        k = _check(key)
        if k.private is None:
            raise CredentialsError("ed25519: a public key cannot sign")
        return k.private.sign(pae)

    def verify(self, key: Any, pae: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 -- start-up: cryptography (~20 ms) loads only when a key is used

        k = _check(key)
        if len(signature) != 64:
            return False
        try:
            k.public.verify(bytes(signature), pae)
        except InvalidSignature:
            return False
        return True


def _check(key: Any) -> Ed25519Key:
    # the algorithm is fixed per key: an HMAC secret can never reach Ed25519 and back
    if not isinstance(key, Ed25519Key):
        raise TypeError(f"ed25519 cannot use a {type(key).__name__} key")
    return key


@hookimpl
def qlcapsule_register_signers(register: Register) -> None:
    register(Ed25519Signer)
