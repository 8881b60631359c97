"""Helpers for the validator tests: write a capsule, validate it, pick findings."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from qlcapsule import Finding
from qlcapsule.steps.validation import CapsuleReport, validate_one
from qlcapsule.testing import write_capsule

DEFINITION = "name: demo\nversion: 1.0.0\ndescription: a test capsule\nlicense: MIT\n"


def report(
    root: Path, files: Mapping[str, str | bytes], *, definition: str | None = None, seal: bool = True
) -> CapsuleReport:
    write_capsule(root, files, definition=definition or DEFINITION, seal=seal)
    return validate_one(root)


def findings(root: Path, files: Mapping[str, str | bytes], validator: str, **kw: object) -> list[Finding]:
    """The findings of one validator for a capsule holding ``files``."""
    return [f for f in report(root, files, **kw).findings if f.validator == validator]  # type: ignore[arg-type]


def rules(found: list[Finding]) -> list[str]:
    return [f.rule for f in found]
