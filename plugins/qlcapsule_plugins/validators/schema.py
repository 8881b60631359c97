"""The ``schema`` validator: capsule.yaml against the capsule model.

A capsule.yaml that does not validate cannot be loaded at all; ``validate``
then reports ``schema.invalid`` with the line the model names, and skips the
other validators for that capsule. For a loadable definition this validator
adds the softer checks: a description and a license, and rule switches that
name no known rule (reported by the validation run, which knows every rule).
"""

from __future__ import annotations

from typing import Iterable

from qlcapsule import Capsule, Finding, Register, Rule, Severity, Validator, hookimpl


class SchemaValidator(Validator):
    name = "schema"
    description = "capsule.yaml matches the capsule model"
    rules = (
        Rule(
            "schema.invalid",
            "capsule.yaml does not match the capsule model (the capsule cannot be loaded)",
            Severity.ERROR,
        ),
        Rule("schema.unknown-rule", "validate.rules names no known validator or rule", Severity.WARNING),
        Rule(
            "schema.unknown-exporter",
            "exports names no installed exporter (a typo is otherwise silent)",
            Severity.WARNING,
        ),
        Rule("schema.export-options", "exports.<exporter> holds options its exporter refuses", Severity.ERROR),
        Rule("schema.description", "capsule.yaml has no description", Severity.NOTE),
        Rule("schema.license", "capsule.yaml names no license", Severity.NOTE),
    )

    def check_capsule(self, capsule: Capsule) -> Iterable[Finding]:
        # capsule.setting: the validation run has checked the definition, and
        # reading it this way needs no pydantic.
        if not (capsule.setting("description") or "").strip():
            line = _top_key_line(capsule, "description") or 1
            yield Finding("schema.description", Severity.NOTE, "no description", "capsule.yaml", line)
        if not capsule.setting("license"):
            yield Finding(
                "schema.license", Severity.NOTE, "no license (an SPDX identifier such as Apache-2.0)", "capsule.yaml", 1
            )


def _top_key_line(capsule: Capsule, key: str) -> int | None:
    text = (capsule.root / "capsule.yaml").read_text("utf-8", "replace")
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(f"{key}:"):
            return number
    return None


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(SchemaValidator)
