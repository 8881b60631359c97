"""The ``signature`` validator: capsule.sig against the capsule's signature policy.

``qlcapsule validate`` is a diagnostic: it reports what ``verify`` would refuse
later, while there is still time to re-sign. The statement is read here
*without* checking signatures first (rules ``stale``, ``expired``, ``expiring``
say "unverified"); only ``signature.untrusted`` comes from a real verification,
against the operator's trust file (``$QLCAPSULE_TRUST_FILE``) and
``policy.threshold``. The capsule's own ``policy.trust`` is never a trust root:
the content under test does not choose the keys that judge it. ``verify`` is the
command that decides.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

from pydantic import Field

from qlcapsule import (
    ENV_TRUST,
    Capsule,
    Envelope,
    Finding,
    Options,
    QlcapsuleError,
    Register,
    Rule,
    Severity,
    Statement,
    Validator,
    hookimpl,
    operator_trust_file,
    verify_signatures,
)

SIG = "capsule.sig"


class SignatureOptions(Options):
    expiring_days: int = Field(default=14, ge=0, description="warn when a signature expires within this many days")


class SignatureValidator(Validator):
    name = "signature"
    description = "capsule.sig: present when required, well-formed, current, unexpired, trusted"
    Options = SignatureOptions
    rules = (
        Rule("signature.missing", "capsule.sig is missing but policy.require_signature or min_version is set"),
        Rule("signature.malformed", "capsule.sig is not a DSSE envelope carrying a qlcapsule statement"),
        Rule("signature.stale", "the signed statement names another capsule, version or digest than the lock"),
        Rule("signature.expired", "the signature has expired"),
        Rule("signature.expiring", "the signature expires soon", Severity.WARNING),
        Rule("signature.untrusted", "the signatures do not satisfy $QLCAPSULE_TRUST_FILE and policy.threshold"),
        Rule(
            "signature.no-trust",
            "no trusted keys to check a required signature ($QLCAPSULE_TRUST_FILE unset; policy.trust is no trust root)",
            Severity.NOTE,
        ),
    )

    def check_capsule(self, capsule: Capsule) -> Iterable[Finding]:
        policy = capsule.setting("policy") or {}  # validated by the model when the run loaded the capsule
        # the policy keys that make a signature required (min_version is read from a verified statement)
        required = next((k for k in ("require_signature", "min_version") if policy.get(k)), None)
        try:
            raw = capsule.sig_bytes()  # a symlink, a FIFO or an oversized file is refused, not read
            if raw is not None:
                envelope = Envelope.from_json(raw, SIG)
                statement = Statement.parse(envelope.payload, SIG)
        except QlcapsuleError as exc:
            yield Finding("signature.malformed", Severity.ERROR, exc.message, SIG)
            return
        except OSError as exc:
            yield Finding("signature.malformed", Severity.ERROR, f"{SIG}: cannot read: {exc.strerror}", SIG)
            return
        if raw is None:
            if required:
                yield Finding(
                    "signature.missing",
                    Severity.ERROR,
                    f"the capsule is not signed but policy.{required} is set (run 'qlcapsule sign')",
                    SIG,
                )
            return
        if not envelope.signatures:
            yield Finding("signature.malformed", Severity.ERROR, f"{SIG}: the envelope holds no signatures", SIG)
            return
        findings = list(self._statement(capsule, statement))
        yield from findings
        if operator_trust_file() is None:
            if required or policy.get("trust"):
                why = f"policy.{required} is set" if required else "policy.trust is set but is no trust root"
                yield Finding(
                    "signature.no-trust",
                    Severity.NOTE,
                    f"{why}: signatures are checked only against the verifier's keys "
                    f"('qlcapsule verify --key/--trust', or {ENV_TRUST})",
                    "capsule.yaml",
                )
            return
        if findings:
            return
        try:
            lock = capsule.require_lock()
            verify_signatures(capsule, lock, allow_rollback=True)
        except QlcapsuleError as exc:
            yield Finding("signature.untrusted", Severity.ERROR, exc.message, SIG)

    def _statement(self, capsule: Capsule, st: Statement) -> Iterable[Finding]:
        if st.subject_name != capsule.ref:
            yield Finding(
                "signature.stale",
                Severity.ERROR,
                f"signed for {st.subject_name} but capsule.yaml says {capsule.ref} (unverified; sign again)",
                SIG,
            )
            return
        try:
            lock = capsule.read_lock()
        except QlcapsuleError:
            lock = None  # the integrity validator reports a malformed lock
        if lock is not None and st.digest != lock.digest:
            yield Finding(
                "signature.stale",
                Severity.ERROR,
                f"signed digest sha256:{st.digest[:16]}... differs from the lock's sha256:{lock.digest[:16]}... "
                f"(re-sealed after signing; sign again)",
                SIG,
            )
        if st.expires is not None:
            now = _dt.datetime.now(_dt.timezone.utc)
            stamp = st.expires.strftime("%Y-%m-%dT%H:%M:%SZ")
            days: Any = getattr(self.options, "expiring_days", 14)
            if now >= st.expires:
                yield Finding("signature.expired", Severity.ERROR, f"the signature expired at {stamp}", SIG)
            elif st.expires - now <= _dt.timedelta(days=int(days)):
                yield Finding("signature.expiring", Severity.WARNING, f"the signature expires at {stamp}", SIG)


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(SignatureValidator)
