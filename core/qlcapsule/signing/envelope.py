"""capsule.sig: a DSSE envelope carrying an in-toto Statement v1.

The envelope (https://github.com/secure-systems-lab/dsse, protocol v1)::

    {"payload": "<base64 statement>",
     "payloadType": "application/vnd.in-toto+json",
     "signatures": [{"keyid": "<hint>", "sig": "<base64>"}, ...]}

Every signature is over the Pre-Authentication Encoding (PAE) of the payload,
never over the payload alone::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

where ``LEN`` is the byte length as ASCII decimal without leading zeros and
``SP`` one space (0x20). Verification checks PAE signatures with the trusted
keys *before* the payload is parsed (:func:`verify_envelope`), so a forged
statement is never read. ``keyid`` is only a hint: every trusted key is tried
against every signature, and keys are counted by their own identity.

The statement (see docs/signing.md)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "<name>@<version>", "digest": {"sha256": "<capsule digest>"}}],
     "predicateType": "https://qlcapsule.dev/attestation/capsule/v1",
     "predicate": {"name", "version", "digest", "files", "generator"?, "created", "expires"?, "tool"}}

This module imports no cryptography: signers are plugins looked up in the
registry by whoever loads the keys (:mod:`qlcapsule.signing.signatures`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import SignatureError, parse_json

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://qlcapsule.dev/attestation/capsule/v1"
HEX64 = re.compile(r"^[0-9a-f]{64}\Z")  # \Z: "$" would accept a final newline
#: more signatures than any real envelope carries; each is tried with every trusted key
MAX_SIGNATURES = 256

__all__ = [
    "PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "PREDICATE_TYPE",
    "MAX_SIGNATURES",
    "pae",
    "EnvelopeSignature",
    "Envelope",
    "Statement",
    "VerifyKey",
    "verify_envelope",
    "format_time",
    "parse_time",
]


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 Pre-Authentication Encoding of ``payload``."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def format_time(when: _dt.datetime) -> str:
    """RFC 3339 UTC with a ``Z`` and whole seconds."""
    return when.astimezone(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str, where: str) -> _dt.datetime:
    try:
        when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise SignatureError(f"{where}: {text!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise SignatureError(f"{where}: {text!r} has no time zone")
    return when


def _b64decode(text: Any, where: str) -> bytes:
    """Standard or URL-safe base64, padded or not (the DSSE spec allows both)."""
    if not isinstance(text, str):
        raise SignatureError(f"{where}: expected a base64 string")
    s = text.strip().replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{where}: not valid base64") from None


@dataclass
class EnvelopeSignature:
    keyid: str
    sig: bytes


@dataclass
class Envelope:
    """A parsed DSSE envelope; ``payload`` is still unauthenticated bytes."""

    payload: bytes
    payload_type: str = PAYLOAD_TYPE
    signatures: list[EnvelopeSignature] = field(default_factory=list)

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [{"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")} for s in self.signatures],
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, where: str = "capsule.sig") -> Envelope:
        """Parse the envelope structure only (the payload is not looked at)."""
        data = parse_json(raw, where, SignatureError, "not a DSSE envelope: ")
        if not isinstance(data, dict):
            raise SignatureError(f"{where}: not a DSSE envelope: expected a JSON object")
        for key in ("payload", "payloadType", "signatures"):
            if key not in data:
                raise SignatureError(f"{where}: not a DSSE envelope: {key!r} is missing")
        ptype = data["payloadType"]
        if ptype != PAYLOAD_TYPE:
            raise SignatureError(f"{where}: payloadType is {ptype!r}, expected {PAYLOAD_TYPE!r}")
        payload = _b64decode(data["payload"], f"{where}: payload")
        sigs = data["signatures"]
        if not isinstance(sigs, list):
            raise SignatureError(f"{where}: signatures: expected a list")
        if len(sigs) > MAX_SIGNATURES:
            raise SignatureError(f"{where}: {len(sigs)} signatures; at most {MAX_SIGNATURES} are accepted")
        out: list[EnvelopeSignature] = []
        for i, item in enumerate(sigs):
            if not isinstance(item, dict) or "sig" not in item:
                raise SignatureError(f"{where}: signatures[{i}]: expected an object with 'sig'")
            keyid = item.get("keyid", "")
            if not isinstance(keyid, str):
                raise SignatureError(f"{where}: signatures[{i}].keyid: expected a string")
            out.append(EnvelopeSignature(keyid, _b64decode(item["sig"], f"{where}: signatures[{i}].sig")))
        return cls(payload, ptype, out)


@dataclass
class Statement:
    """The in-toto Statement v1 a capsule signature carries."""

    subject_name: str
    digest: str
    name: str
    version: str
    created: _dt.datetime
    expires: _dt.datetime | None = None
    files: int | None = None
    generator: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        name: str,
        version: str,
        digest: str,
        files: int,
        created: _dt.datetime,
        expires: _dt.datetime | None = None,
        generator: dict[str, Any] | None = None,
        tool_version: str = "",
    ) -> bytes:
        """The payload bytes: compact JSON with sorted keys (deterministic)."""
        predicate: dict[str, Any] = {
            "name": name,
            "version": version,
            "digest": {"sha256": digest},
            "files": files,
            "created": format_time(created),
            "tool": {"name": "qlcapsule", "version": tool_version},
        }
        if generator:
            predicate["generator"] = generator
        if expires is not None:
            predicate["expires"] = format_time(expires)
        doc = {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": f"{name}@{version}", "digest": {"sha256": digest}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": predicate,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def parse(cls, payload: bytes, where: str = "capsule.sig") -> Statement:
        """Parse payload bytes. Call only on a payload whose PAE signature verified."""
        doc = parse_json(payload, where, SignatureError, "payload is not a JSON statement: ")
        if not isinstance(doc, dict):
            raise SignatureError(f"{where}: payload: expected a JSON object")
        if doc.get("_type") != STATEMENT_TYPE:
            raise SignatureError(f"{where}: payload _type is {doc.get('_type')!r}, expected {STATEMENT_TYPE!r}")
        if doc.get("predicateType") != PREDICATE_TYPE:
            raise SignatureError(f"{where}: predicateType is {doc.get('predicateType')!r}, expected {PREDICATE_TYPE!r}")
        subjects = doc.get("subject")
        if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
            raise SignatureError(f"{where}: subject: expected exactly one subject")
        subject = subjects[0]
        sname = subject.get("name")
        digests = subject.get("digest")
        digest = digests.get("sha256") if isinstance(digests, dict) else None
        if not isinstance(sname, str) or not isinstance(digest, str) or not HEX64.match(digest):
            raise SignatureError(f"{where}: subject: needs a name and a sha256 digest")
        pred = doc.get("predicate")
        if not isinstance(pred, dict):
            raise SignatureError(f"{where}: predicate: expected an object")
        name, version, created = pred.get("name"), pred.get("version"), pred.get("created")
        if not isinstance(name, str) or not isinstance(version, str) or not isinstance(created, str):
            raise SignatureError(f"{where}: predicate: name, version and created are required strings")
        expires_raw = pred.get("expires")
        if expires_raw is not None and not isinstance(expires_raw, str):
            raise SignatureError(f"{where}: predicate.expires: expected a string")
        files = pred.get("files")
        generator = pred.get("generator")
        return cls(
            subject_name=sname,
            digest=digest,
            name=name,
            version=version,
            created=parse_time(created, f"{where}: predicate.created"),
            expires=parse_time(expires_raw, f"{where}: predicate.expires") if expires_raw else None,
            files=files if isinstance(files, int) else None,
            generator=generator if isinstance(generator, dict) else None,
            raw=doc,
        )


@dataclass
class VerifyKey:
    """A trusted key bound to ONE signer (algorithm): it never verifies another algorithm."""

    signer: Any  # a qlcapsule.Signer instance
    key: Any  # what signer.load_verify_key returned
    keyid: str  # computed from the key itself, never taken from the envelope
    source: str  # where it came from, for messages

    @property
    def algorithm(self) -> str:
        return str(self.signer.name)

    def check(self, message: bytes, sig: bytes) -> bool:
        """True only when the signer says so; any exception is a failure."""
        try:
            return self.signer.verify(self.key, message, sig) is True
        except Exception:  # noqa: BLE001 - a crashing verifier must never pass
            return False


def _short(keyid: str) -> str:
    return keyid[:16] if keyid else "(none)"


def verify_envelope(
    envelope: Envelope, keys: Sequence[VerifyKey], threshold: int, where: str = "capsule.sig"
) -> list[VerifyKey]:
    """Check PAE signatures; return the distinct trusted keys that signed.

    Raises :class:`SignatureError` naming the cause when fewer than ``threshold``
    distinct keys verified. The payload is not parsed here.
    """
    distinct: dict[str, VerifyKey] = {}
    for k in keys:
        distinct.setdefault(f"{k.algorithm}:{k.keyid}", k)
    if threshold < 1:
        raise SignatureError(f"threshold must be at least 1, got {threshold}")
    if threshold > len(distinct):
        raise SignatureError(
            f"threshold {threshold} needs {threshold} distinct trusted keys, but only {len(distinct)} "
            f"distinct key(s) were given (the same key listed twice counts once)",
            exit_code=2,
        )
    if not envelope.signatures:
        raise SignatureError(f"{where}: the envelope holds no signatures")
    message = envelope.pae()
    accepted: dict[str, VerifyKey] = {}
    for ident, key in distinct.items():
        # keyids are hints only: every trusted key is tried against every signature
        if any(key.check(message, s.sig) for s in envelope.signatures):
            accepted[ident] = key
    if len(accepted) >= threshold:
        return list(accepted.values())
    trusted_ids = {k.keyid for k in distinct.values()}
    hinted = [s for s in envelope.signatures if s.keyid in trusted_ids]
    signed_by = ", ".join(sorted({_short(s.keyid) for s in envelope.signatures}))
    if accepted:
        raise SignatureError(
            f"{where}: only {len(accepted)} of {threshold} required distinct trusted keys signed "
            f"(verified: {', '.join(_short(k.keyid) for k in accepted.values())}; "
            f"signatures by the same key count once)"
        )
    if hinted:
        ids = ", ".join(sorted({_short(s.keyid) for s in hinted}))
        raise SignatureError(
            f"{where}: invalid signature by trusted key {ids}: the PAE bytes do not verify "
            f"(payload or signature altered, or a signature made with another algorithm)"
        )
    trusted = ", ".join(f"{k.algorithm} {_short(k.keyid)}" for k in distinct.values())
    raise SignatureError(
        f"{where}: not signed by a trusted key (signatures name key(s) {signed_by}; trusted: {trusted}): "
        f"wrong or unknown key"
    )
