"""The ``json`` validator: JSON files parse, and no object repeats a key."""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from qlcapsule import Capsule, Finding, Register, Rule, Severity, Validator, hookimpl, quote


class JsonValidator(Validator):
    name = "json"
    description = "JSON files parse; no duplicate keys"
    patterns = ("*.json",)
    rules = (
        Rule("json.syntax", "the file is not valid JSON", Severity.ERROR),
        Rule("json.duplicate-key", "an object repeats a key (parsers silently keep the last one)", Severity.WARNING),
        Rule("json.encoding", "the file is not UTF-8", Severity.ERROR),
    )

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            yield Finding("json.encoding", Severity.ERROR, f"not UTF-8 (byte {exc.start})", path, 1, 1)
            return
        dupes: list[str] = []

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            for k, v in items:
                if k in seen:
                    dupes.append(k)
                seen[k] = v
            return seen

        try:
            # parse_int=str: a number of any length is valid JSON; int() would refuse one past 4300 digits
            json.loads(text, object_pairs_hook=pairs, parse_int=str)
        except json.JSONDecodeError as exc:
            yield Finding("json.syntax", Severity.ERROR, f"invalid JSON: {exc.msg}", path, exc.lineno, exc.colno)
            return
        except RecursionError:
            yield Finding("json.syntax", Severity.ERROR, "invalid JSON: nested too deeply", path, 1, 1)
            return
        for key in dict.fromkeys(dupes):
            line, column = _second_occurrence(text, key)
            yield Finding("json.duplicate-key", Severity.WARNING, f"duplicate key {quote(key)}", path, line, column)


def _second_occurrence(text: str, key: str) -> tuple[int | None, int | None]:
    """Best-effort position of the repeated key (the parser does not keep positions)."""
    hits = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
    if len(hits) < 2:
        return None, None
    offset = hits[1]
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(JsonValidator)
