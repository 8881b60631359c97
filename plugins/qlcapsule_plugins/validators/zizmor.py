"""The ``zizmor`` validator: workflow and action security audits by zizmor, run offline.

`zizmor <https://docs.zizmor.sh>`_ finds template injection, excessive
permissions, unpinned actions, credentials persisted into artifacts, dangerous
triggers and more. It is a dependency (its wheels carry the binary for Linux,
macOS and Windows); this validator runs it as a subprocess on the workflows
and ``action.yml`` files of many capsules at once (zizmor's start costs ~0.2 s
of CPU, its audits little), written into a private temporary folder from the
bytes validation read, and maps its JSON findings back to each file:

- rule id ``zizmor.<audit>`` (``zizmor.template-injection``), help URI the
  audit's documentation page (zizmor's ``url``);
- severity: zizmor's ``high`` and ``medium`` are warnings, ``low`` and
  ``informational`` are notes. They are advice about security, not invalid
  files: a valid workflow pinned to a tag (``actions/checkout@v4``) is
  ``high`` for zizmor; ``--fail-on warning`` makes them fail a run;
- line and column: the first location zizmor names (its "primary" one).

What the capsule under test decides: nothing about what runs. The binary is
the one installed beside this Python (the scripts folder of its environment),
else ``zizmor`` on the operator's PATH; it runs with ``--offline`` (no network,
no token: the environment handed to it holds no ``GH_TOKEN``/``GITHUB_TOKEN``)
and ``--no-config`` (a ``zizmor.yml`` in the capsule is not read). zizmor's own
inline suppressions (``# zizmor: ignore[audit]``) in the file are honoured, as
zizmor documents them. Each run is bounded (``_engines.run_files``: 100 files,
60 seconds, and output over 16 MiB is not parsed; one finding says so); a run
that fails is run again per capsule, so one capsule never fails another's audit.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from typing import Any, Iterable, Sequence

from qlcapsule import Capsule, Engine, FileToCheck, Finding, Register, Rule, Severity, Validator, hookimpl

from . import _engines
from ._yaml import parses

_SEVERITY = {
    "high": Severity.WARNING,
    "medium": Severity.WARNING,
    "low": Severity.NOTE,
    "informational": Severity.NOTE,
    "unknown": Severity.NOTE,
}
DOCS = "https://docs.zizmor.sh/audits/"
UNREADABLE = "zizmor did not audit it: it cannot read it as a workflow or action"


def binary() -> str | None:
    return _engines.binary("zizmor")


@lru_cache(maxsize=1)
def _engine() -> Engine:
    found = binary()
    version = None
    if found is not None:
        try:
            version = metadata.version("zizmor")
        except metadata.PackageNotFoundError:
            version = _engines.version_of(found)
    return Engine("zizmor", version, "pip install zizmor", "zizmor's workflow security audits")


class ZizmorValidator(Validator):
    name = "zizmor"
    description = "GitHub Actions security audits by zizmor (offline): injection, permissions, pinning, credentials"
    patterns = (".github/workflows/*.yml", ".github/workflows/*.yaml", "action.yml", "action.yaml")
    rules = (
        Rule("zizmor.template-injection", "code injection via template expansion", Severity.WARNING, DOCS + "#template-injection"),
        Rule("zizmor.excessive-permissions", "overly broad permissions", Severity.WARNING, DOCS + "#excessive-permissions"),
        Rule("zizmor.unpinned-uses", "an action not pinned to a commit", Severity.WARNING, DOCS + "#unpinned-uses"),
        Rule("zizmor.artipacked", "credentials persisted through checkout", Severity.WARNING, DOCS + "#artipacked"),
        Rule("zizmor.dangerous-triggers", "a fundamentally insecure trigger", Severity.WARNING, DOCS + "#dangerous-triggers"),
        Rule("zizmor.failed", "zizmor could not audit the file", Severity.WARNING),
        Rule("zizmor.engine-missing", "zizmor is not installed", Severity.WARNING),
    )  # fmt: skip

    def engines(self) -> Sequence[Engine]:
        return (_engine(),)

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        return self.check_files([FileToCheck(capsule, path, data)])[0]

    def check_files(self, files: Sequence[FileToCheck]) -> list[list[Finding]]:
        """Every file in as few zizmor processes as :func:`_engines.run_files` allows (its start costs ~0.2 s)."""
        exe = binary()
        if exe is None:
            return [[] for _ in files]  # validation reports the missing engine (zizmor.engine-missing)
        cmd = [exe, "--offline", "--no-config", "--no-exit-codes", "--no-progress", "--format", "json-v1"]
        wanted = lambda f: parses(f.data)  # noqa: E731 -- else the yaml validator's finding; zizmor would only fail
        answers = _engines.run_selected("zizmor", cmd, files, wanted, _given_path)
        return [_findings(a, f.path) for f, a in zip(files, answers, strict=True)]


def _findings(answer: _engines.Answer | None, path: str) -> list[Finding]:
    if answer is None:
        return []
    found = []
    # zizmor reads only files that fit its model of a workflow or action: one the schema rejects (the
    # github-workflow findings say why) it skips, saying so on stderr, or fails on when alone
    if answer.error is not None and "no audit was performed" not in answer.error:
        found.append(Finding("zizmor.failed", Severity.WARNING, answer.error, path))
    elif answer.error is not None or f"failed to validate file://{answer.given} " in answer.stderr:
        found.append(Finding("zizmor.failed", Severity.NOTE, UNREADABLE, path))
    return found + [_finding(item, path) for item in answer.items if not item.get("ignored")]


def _given_path(item: dict[str, Any]) -> str | None:
    """The path zizmor was given for the file a finding is about (its primary location's)."""
    for loc in item.get("locations") or ():
        symbolic = loc.get("symbolic") if isinstance(loc, dict) else None
        key = symbolic.get("key") if isinstance(symbolic, dict) else None
        local = key.get("Local") if isinstance(key, dict) else None
        if isinstance(local, dict) and isinstance(local.get("verbatim_path"), str):
            return str(local["verbatim_path"])
    return None


def _finding(item: dict[str, Any], path: str) -> Finding:
    audit = str(item.get("ident", "unknown"))
    det = item.get("determinations")
    det = det if isinstance(det, dict) else {}
    severity = str(det.get("severity", "unknown")).lower()
    confidence = str(det.get("confidence", "unknown")).lower()
    line = column = None
    notes: list[str] = []
    for loc in item.get("locations") or ():
        symbolic, concrete = loc.get("symbolic") or {}, loc.get("concrete") or {}
        if symbolic.get("kind") != "Primary" and line is not None:
            continue
        start = (concrete.get("location") or {}).get("start_point") or {}
        if isinstance(start.get("row"), int):
            line, column = start["row"] + 1, int(start.get("column", 0)) + 1
        if symbolic.get("annotation"):
            notes.append(str(symbolic["annotation"]))
        if symbolic.get("kind") == "Primary":
            break
    message = f"{item.get('desc', audit)}" + (f": {notes[-1]}" if notes else "")
    extra = {"engine": "zizmor", "severity": severity, "confidence": confidence}
    url = item.get("url")
    if isinstance(url, str) and url.startswith("https://"):
        extra["help_uri"] = url
    sev = _SEVERITY.get(severity, Severity.NOTE)
    return Finding(
        f"zizmor.{audit}", sev, f"{message} ({severity}, confidence {confidence})", path, line, column, extra=extra
    )


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(ZizmorValidator)
