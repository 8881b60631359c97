"""Renderers for a validation :class:`~qlcapsule.steps.validation.Report`.

- ``text``: one line per finding (``path:line:col: severity: message [rule]``),
  then the score per validator and a summary; control characters in paths and
  messages are escaped (``\\n``), so no name can start a line of its own;
- ``json``: :meth:`Report.to_dict`;
- ``sarif``: SARIF 2.1.0 for GitHub code scanning (``tool.driver.rules``, results
  with ``ruleId``/``ruleIndex``/``level``/``message`` and a physical location with
  a region); URIs are relative to the current directory (the repository root in CI);
- ``github``: workflow commands (``::error file=...,line=...,col=...,title=...::msg``)
  that GitHub Actions turns into annotations.

Paths in every format are the capsule directory joined with the file's path
inside the capsule, relative to the current directory when below it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..format.lock import atomic_write
from ..log import printable
from ..plugins.findings import Finding, Severity
from .validation import CapsuleReport, Report

FORMATS = ("text", "json", "sarif", "github")
INFORMATION_URI = "https://github.com/qlcapsule/qlcapsule"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _prefix(capsule: CapsuleReport) -> str:
    root = Path(capsule.directory).resolve()
    try:
        rel = root.relative_to(Path.cwd().resolve())
    except ValueError:
        return root.as_posix() + "/"
    text = rel.as_posix()
    return "" if text == "." else text + "/"


def finding_uri(capsule: CapsuleReport, finding: Finding) -> str:
    return _prefix(capsule) + (finding.path or "capsule.yaml")


def render(report: Report, fmt: str = "text") -> str:
    """The report in ``fmt`` (one of :data:`FORMATS`), ending with a newline."""
    renderers: dict[str, Callable[[Report], str]] = {
        "text": render_text,
        "json": lambda r: json.dumps(r.to_dict(), indent=2) + "\n",
        "sarif": lambda r: json.dumps(sarif(r), indent=2) + "\n",
        "github": render_github,
    }
    return renderers[fmt](report)


# -- text -------------------------------------------------------------------------

# the one escaping rule (control characters, separators, bidi overrides) lives in ``log``, which the store
# uses too: report sits above the store, log below both
_printable = printable


def render_text(report: Report) -> str:
    lines: list[str] = []
    for c in report.capsules:
        title = f"{c.name}@{c.version}" if c.name else c.directory
        verdict = "FAILED" if c.failed else "passed"
        lines.append(_printable(f"{title} ({c.directory}): score {c.score:.2f} {verdict}"))
        for f in c.findings:
            where = _prefix(c) + f.location() if f.path else _prefix(c) + "."
            lines.append("  " + _printable(f"{where}: {f.severity.value}: {f.message} [{f.rule}]"))
        if c.validators:
            parts = [f"{n} {v.score:.2f}" for n, v in sorted(c.validators.items())]
            lines.append("  validators: " + ", ".join(parts))
        if c.suppressed:
            lines.append(f"  ({c.suppressed} finding(s) switched off in capsule.yaml)")
        if c.baselined:
            lines.append(f"  ({c.baselined} finding(s) in the baseline, not counted)")
        if c.disabled:
            lines.append(_printable(f"  (validator(s) switched off in capsule.yaml, not run: {', '.join(c.disabled)})"))
        if c.score < c.min_score:
            lines.append(f"  score {c.score:.2f} is below the minimum {c.min_score:.2f}")
    n = report.counts()
    plural = "s" if len(report.capsules) != 1 else ""
    lines.append(
        f"{len(report.capsules)} capsule{plural}: {n['error']} error(s), {n['warning']} warning(s), {n['note']} note(s); "
        f"score {report.score:.2f}; {'FAILED' if report.failed else 'passed'}"
    )
    return "\n".join(lines) + "\n"


# -- SARIF ------------------------------------------------------------------------

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "note"}


def sarif(report: Report) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run."""
    rule_ids = sorted(set(report.rules) | {f.rule for f in report.findings})
    index = {rid: i for i, rid in enumerate(rule_ids)}
    # an engine's rules are too many to declare (hadolint's DL/SC codes, zizmor's audits): a finding of a
    # rule not declared up front carries the engine's help page in ``extra["help_uri"]``
    found_help = {f.rule: f.extra["help_uri"] for f in report.findings if isinstance(f.extra.get("help_uri"), str)}
    rules = []
    for rid in rule_ids:
        rule, validator = report.rules.get(rid, (None, rid.split(".", 1)[0]))
        entry: dict[str, Any] = {
            "id": rid,
            "name": rid.replace(".", "/"),
            "shortDescription": {"text": rule.description if rule else rid},
            "defaultConfiguration": {"level": _LEVEL[rule.severity] if rule else "error"},
            "properties": {"validator": validator},
        }
        help_uri = rule.help_uri if rule and rule.help_uri else found_help.get(rid)
        if help_uri:
            entry["helpUri"] = help_uri
        rules.append(entry)
    results = []
    for c in report.capsules:
        for f in c.findings:
            region: dict[str, int] = {"startLine": f.line or 1}
            if f.column:
                region["startColumn"] = f.column
            if f.end_line and f.end_line >= region["startLine"]:
                region["endLine"] = f.end_line
            result: dict[str, Any] = {
                "ruleId": f.rule,
                "ruleIndex": index[f.rule],
                "level": _LEVEL[f.severity],
                "message": {"text": f.message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": finding_uri(c, f), "uriBaseId": "%SRCROOT%"},
                            "region": region,
                        }
                    }
                ],
            }
            if f.capsule:
                result["properties"] = {"capsule": f.capsule}
            results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "qlcapsule",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "automationDetails": {"id": "qlcapsule/validate/"},
                "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().resolve().as_uri() + "/"}},
                "results": results,
                "properties": {
                    "score": round(report.score, 4),
                    "capsules": {c.directory: round(c.score, 4) for c in report.capsules},
                },
            }
        ],
    }


# -- GitHub workflow commands -------------------------------------------------------

_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(report: Report) -> str:
    lines = []
    for c in report.capsules:
        for f in c.findings:
            props = [f"file={_escape_property(finding_uri(c, f))}"]
            if f.line:
                props.append(f"line={f.line}")
                if f.column:
                    props.append(f"col={f.column}")
            props.append(f"title={_escape_property(f.rule)}")
            lines.append(f"::{_COMMAND[f.severity]} {','.join(props)}::{_escape_data(f.message)}")
    n = report.counts()
    lines.append(
        f"qlcapsule validate: {len(report.capsules)} capsule(s), {n['error']} error(s), {n['warning']} warning(s), "
        f"{n['note']} note(s); score {report.score:.2f}; {'FAILED' if report.failed else 'passed'}"
    )
    return "\n".join(lines) + "\n"


def write(text: str, output: str | None) -> None:
    """Write ``text`` to ``output`` atomically (or stdout when None or '-')."""
    if output in (None, "-"):
        import click  # noqa: PLC0415 -- start-up: click is not loaded for the Action and the API, which write to files

        click.echo(text, nl=False)
        return

    path = Path(output)
    if path.parent and not path.parent.exists():
        os.makedirs(path.parent, exist_ok=True)
    atomic_write(path, text.encode("utf-8"))


__all__ = ["FORMATS", "render", "render_text", "render_github", "sarif", "finding_uri", "write"]
