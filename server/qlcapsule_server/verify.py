"""A publication's signatures, judged by the server's own trust policy.

The report, its lock and its envelope are untrusted: the keys come only from the operator's trust file
(``serve --trust FILE`` or ``$QLCAPSULE_TRUST_FILE``), loaded once at start. The order is the core's
(docs/security.md): the lock's digest must be the digest of its own file list; the DSSE PAE bytes are verified
with the trusted keys before the payload is read; then the statement must name exactly this capsule, version
and digest, and must not have expired.

Verdicts: ``verified``; ``unsigned`` (no envelope); ``untrusted`` (an envelope no trusted key signed). A
statement that contradicts the lock, an expired one, or an edited lock is tampering, raised as
:class:`qlcapsule.VerificationError` and always refused, whatever the policy.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from qlcapsule import (
    Envelope,
    Lock,
    SignatureError,
    Statement,
    VerificationError,
    VerifyKey,
    load_trust_file,
    operator_trust_file,
    verify_envelope,
)


@dataclass
class Verdict:
    status: str  # verified | unsigned | untrusted
    reason: str | None = None
    #: (keyid, algorithm, verified) for each signature: trusted keys by their own id, others by the envelope's hint
    signatures: list[tuple[str, str | None, bool]] = field(default_factory=list)
    statement: Statement | None = None


def load_keys(trust_file: str | None) -> list[VerifyKey]:
    """The server's trusted keys: ``trust_file``, else ``$QLCAPSULE_TRUST_FILE``, else none."""
    path = trust_file or operator_trust_file()
    return load_trust_file(path) if path else []


def judge(lock: Lock, envelope_raw: bytes | None, keys: list[VerifyKey], *, now: dt.datetime | None = None) -> Verdict:
    """The server's verdict on one publication's signature (see the module docstring)."""
    if lock.edited:
        raise VerificationError("capsule.lock: digest does not match its file list (the lock was edited)")
    if envelope_raw is None:
        return Verdict("unsigned", "the publication carries no capsule.sig")
    where = "capsule.sig"
    envelope = Envelope.from_json(envelope_raw, where)  # SignatureError: bad input, refused
    hints = [(s.keyid or "(none)", None, False) for s in envelope.signatures]
    if not keys:
        return Verdict("untrusted", "the server has no trusted keys (serve --trust)", _distinct(hints))
    try:
        accepted = verify_envelope(envelope, keys, 1, where)
    except SignatureError as exc:
        return Verdict("untrusted", exc.message, _distinct(hints))
    statement = Statement.parse(envelope.payload, where)  # only now, with the PAE bytes verified
    _check(statement, lock, now or dt.datetime.now(dt.timezone.utc))
    verified = [(k.keyid, k.algorithm, True) for k in accepted]
    ids = {k for k, _, _ in verified}
    return Verdict("verified", None, _distinct(verified + [h for h in hints if h[0] not in ids]), statement)


def _check(st: Statement, lock: Lock, now: dt.datetime) -> None:
    ref = f"{lock.name}@{lock.version}"
    if st.subject_name != ref or st.name != lock.name or st.version != lock.version:
        raise VerificationError(f"capsule.sig: signed for {st.subject_name} but the lock is {ref}")
    if st.digest != lock.digest:
        raise VerificationError(
            f"capsule.sig: subject digest mismatch: signed sha256:{st.digest[:16]}... "
            f"but the lock's digest is sha256:{lock.digest[:16]}..."
        )
    if st.expires is not None and now >= st.expires:
        raise VerificationError(f"capsule.sig: signature expired at {st.expires.isoformat()}")


def _distinct(items: list[tuple[str, Any, bool]]) -> list[tuple[str, Any, bool]]:
    seen: dict[str, tuple[str, Any, bool]] = {}
    for item in items:
        seen.setdefault(item[0][:128], (item[0][:128], item[1], item[2]))
    return list(seen.values())
