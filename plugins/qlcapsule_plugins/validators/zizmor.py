"""The ``zizmor`` validator: workflow and action security audits by zizmor, run offline.

`zizmor <https://docs.zizmor.sh>`_ finds template injection, excessive
permissions, unpinned actions, credentials persisted into artifacts, dangerous
triggers and more. It is a dependency (its wheels carry the binary for Linux,
macOS and Windows); this validator runs it as a subprocess on each workflow
and ``action.yml``, handing the file on stdin, and maps its JSON findings:

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
zizmor documents them. Each run is bounded (``_engines.run``: 60 seconds, and
output over 16 MiB is not parsed; one finding says so).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from typing import Any, Iterable, Sequence

from qlcapsule import Capsule, Engine, Finding, Register, Rule, Severity, Validator, hookimpl

from . import _engines
from ._yaml import compose_all

_SEVERITY = {
    "high": Severity.WARNING,
    "medium": Severity.WARNING,
    "low": Severity.NOTE,
    "informational": Severity.NOTE,
    "unknown": Severity.NOTE,
}
DOCS = "https://docs.zizmor.sh/audits/"


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
        exe = binary()
        if exe is None:
            return  # validation reports the missing engine (zizmor.engine-missing)
        docs, error = compose_all(data.decode("utf-8", "replace"))
        if error is not None or not docs:
            return  # the yaml validator's finding; zizmor would only fail on it
        out = _run(exe, data)
        if isinstance(out, str):
            if "no audit was performed" in out:
                # zizmor reads only files that fit its model of a workflow or action: one the schema
                # rejects (the github-workflow findings say why) it does not audit, and says so
                out += " (zizmor cannot read it as a workflow or action)"
                yield Finding("zizmor.failed", Severity.NOTE, out, path)
            else:
                yield Finding("zizmor.failed", Severity.WARNING, out, path)
            return
        for item in out:
            if isinstance(item, dict) and not item.get("ignored"):
                yield _finding(item, path)


def _run(exe: str, data: bytes) -> list[Any] | str:
    """zizmor's JSON findings for ``data``, or one line saying why there are none."""
    cmd = [exe, "--offline", "--no-config", "--no-exit-codes", "--no-progress", "--format", "json-v1", "-"]
    return _engines.run("zizmor", cmd, data)


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
