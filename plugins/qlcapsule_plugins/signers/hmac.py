"""The ``hmac-sha256`` signer: a shared secret of at least 32 bytes.

Key material (a file, an environment variable or stdin) is text or bytes:

- text made only of hexadecimal digits, an even number of them, is hex-decoded
  (``qlcapsule keygen --type hmac`` writes 64); it must therefore be at least 64
  digits long (shorter hex is refused as too short, not read as text);
- ``base64:<text>`` is base64-decoded;
- anything else is used as raw bytes.

Surrounding whitespace is ignored. After decoding the secret must be at least
32 bytes; PEM text is refused, so a public key can never be mistaken for an
HMAC secret (the algorithm-confusion attack). MACs are compared in constant time
(:func:`hmac.compare_digest`). The standard library's ``hmac`` is used rather
than ``cryptography`` because it is the same primitive and verifying an HMAC
signature then costs no extra import.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from typing import TYPE_CHECKING, Any

from qlcapsule import CredentialsError, Register, Signer, hookimpl, redact

if TYPE_CHECKING:
    from qlcapsule import KeyPair

MIN_BYTES = 32
_HEX = re.compile(rb"^(?:[0-9a-fA-F]{2})+$")


class HmacKey:
    """A secret that never shows itself in a repr or a log line."""

    __slots__ = ("secret", "keyid")

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        # a keyid must not reveal the secret: a domain-separated hash of it
        self.keyid = hashlib.sha256(b"qlcapsule:hmac-sha256:keyid:" + secret).hexdigest()

    def __repr__(self) -> str:
        return f"HmacKey(keyid={self.keyid[:16]})"


def decode_secret(material: bytes | str) -> bytes:
    """Decode key material into the secret bytes, refusing short secrets and PEM keys."""
    raw = material.encode("utf-8") if isinstance(material, str) else bytes(material)
    text = raw.strip()
    if not text:
        raise CredentialsError("HMAC key is empty")
    if text.startswith((b"-----BEGIN", b"ssh-")):
        raise CredentialsError("HMAC key looks like a public/private key (PEM or OpenSSH), not a shared secret")
    if text.startswith(b"base64:"):
        try:
            secret = base64.b64decode(text[7:], validate=True)
        except (binascii.Error, ValueError):
            raise CredentialsError("HMAC key: 'base64:' prefix but the rest is not valid base64") from None
    elif _HEX.match(text):
        secret = bytes.fromhex(text.decode("ascii"))
        if len(secret) < MIN_BYTES:
            raise CredentialsError(
                f"HMAC key is {len(secret)} bytes; at least {MIN_BYTES} bytes are required "
                f"(it was read as {len(text)} hex digits; a hex secret needs {2 * MIN_BYTES})"
            )
    elif b"\n" in text or b"\r" in text:
        # a raw secret is one line of text; several lines means the wrong file (a YAML, a source file)
        raise CredentialsError(
            "HMAC key spans several lines: expected hex (as 'qlcapsule keygen --type hmac' writes), "
            "'base64:...', or one line of text"
        )
    else:
        secret = text
    if len(secret) < MIN_BYTES:
        raise CredentialsError(f"HMAC key is {len(secret)} bytes; at least {MIN_BYTES} bytes are required")
    return secret


class HmacSha256Signer(Signer):
    name = "hmac-sha256"
    description = "HMAC-SHA256 with a shared secret (at least 32 bytes), constant-time compare"

    @classmethod
    def sniff_private(cls, material: bytes) -> bool:
        """True for material this signer would sign with (anything that is not a PEM/SSH key)."""
        head = material.lstrip()[:16]
        return not (head.startswith((b"-----BEGIN", b"ssh-")))

    @classmethod
    def sniff_public(cls, material: bytes) -> bool:
        # a shared secret is never a "public key": it must be given as one explicitly
        return False

    def generate_key(self) -> KeyPair:
        from qlcapsule import KeyPair  # noqa: PLC0415 -- start-up: the record class loads only for keygen; verify never builds it

        secret = os.urandom(MIN_BYTES)
        return KeyPair(private=secret.hex().encode("ascii") + b"\n", public=None, keyid=HmacKey(secret).keyid)

    def load_signing_key(self, material: bytes) -> HmacKey:
        key = HmacKey(decode_secret(material))
        # never let the secret (in any of its spellings) reach a log line or an error
        redact(key.secret.hex())
        redact(
            bytes(material).strip().decode("utf-8", "replace") if isinstance(material, bytes) else str(material).strip()
        )
        return key

    def load_verify_key(self, material: bytes) -> HmacKey:
        return self.load_signing_key(material)

    def keyid(self, key: Any) -> str:
        return _check(key).keyid

    def sign(self, key: Any, pae: bytes) -> bytes:
        return hmac.new(_check(key).secret, pae, hashlib.sha256).digest()

    def verify(self, key: Any, pae: bytes, signature: bytes) -> bool:
        expected = hmac.new(_check(key).secret, pae, hashlib.sha256).digest()
        return hmac.compare_digest(expected, bytes(signature))


def _check(key: Any) -> HmacKey:
    # the algorithm is fixed per key: only a key this signer loaded is accepted
    if not isinstance(key, HmacKey):
        raise TypeError(f"hmac-sha256 cannot use a {type(key).__name__} key")
    return key


@hookimpl
def qlcapsule_register_signers(register: Register) -> None:
    register(HmacSha256Signer)
