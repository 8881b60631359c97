"""The ``integrity`` validator: the files on disk against capsule.lock.

``validate`` usually runs before ``seal`` (that is the order of ``ship``), so
files edited since the last seal are warnings here, not errors; ``verify`` is
the command that fails hard on any difference. A malformed lock is an error.
"""

from __future__ import annotations

from typing import Iterable

from qlcapsule import Capsule, Finding, QlcapsuleError, Register, Rule, Severity, Validator, hookimpl


class IntegrityValidator(Validator):
    name = "integrity"
    description = "files on disk match capsule.lock"
    rules = (
        Rule("integrity.unsealed", "the capsule has no capsule.lock yet", Severity.NOTE),
        Rule(
            "integrity.changed",
            "a file was modified, added, removed or changed mode since the last seal",
            Severity.WARNING,
        ),
        Rule("integrity.lock", "capsule.lock is malformed or sealed under another name/version", Severity.ERROR),
    )

    def check_capsule(self, capsule: Capsule) -> Iterable[Finding]:
        try:
            lock = capsule.read_lock()
        except QlcapsuleError as exc:
            yield Finding("integrity.lock", Severity.ERROR, exc.message, "capsule.lock")
            return
        if lock is None:
            yield Finding("integrity.unsealed", Severity.NOTE, "not sealed yet (run 'qlcapsule seal')", "capsule.lock")
            return
        status = capsule.status()
        for problem in status.problems + status.identity:
            yield Finding("integrity.lock", Severity.ERROR, problem, "capsule.lock")
        renamed_to = {b: a for a, b in status.renamed}
        renamed_from = set(renamed_to.values())
        for kind, paths in (
            ("modified", status.modified),
            ("added", [p for p in status.added if p not in renamed_to]),
            ("removed", [p for p in status.removed if p not in renamed_from]),
            ("mode changed", status.mode_changed),
        ):
            for p in paths:
                yield Finding("integrity.changed", Severity.WARNING, f"{kind} since the last seal", p)
        for old, new in status.renamed:
            yield Finding("integrity.changed", Severity.WARNING, f"renamed from {old} since the last seal", new)


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(IntegrityValidator)
