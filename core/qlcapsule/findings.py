"""Findings: what validators report, and the score computed from them."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"

    @property
    def rank(self) -> int:
        return {"error": 2, "warning": 1, "note": 0}[self.value]


@dataclass(frozen=True)
class Rule:
    """A check a validator can report: ``id`` like ``python.syntax``."""

    id: str
    description: str
    severity: Severity = Severity.ERROR
    help_uri: str | None = None


@dataclass
class Finding:
    """One problem found in a capsule. Lines and columns are 1-based."""

    rule: str
    severity: Severity
    message: str
    path: str | None = None
    line: int | None = None
    column: int | None = None
    end_line: int | None = None
    end_column: int | None = None
    validator: str = ""
    capsule: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return {k: v for k, v in data.items() if v not in (None, {}, "")}

    def location(self) -> str:
        where = self.path or "."
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return where

    def text(self) -> str:
        return f"{self.location()}: {self.severity.value}: {self.message} [{self.rule}]"


def meets(severity: Severity, fail_on: str) -> bool:
    """True when a finding of ``severity`` fails a run with ``--fail-on fail_on``."""
    if fail_on == "never":
        return False
    return severity.rank >= Severity(fail_on).rank
