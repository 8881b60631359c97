"""The ``actionlint`` validator: actionlint's workflow checks, when the operator has actionlint on PATH.

`actionlint <https://github.com/rhysd/actionlint>`_ checks what no schema
states: expression syntax and types, contexts and functions where they are
available, ``needs`` cycles, matrix values, cron syntax, runner labels, action
inputs, reusable workflow calls, and ShellCheck and pyflakes on ``run:``
(when ``shellcheck``/``pyflakes`` are on the operator's PATH, as actionlint
finds them). It is a Go binary with no wheel: its only PyPI distribution
downloads the binary when installed, which qlcapsule must not require. So it
is optional and never downloaded: the ``actionlint`` installed beside this
Python, else the one on the operator's PATH; without it ``qlcapsule validate
--engines`` lists it as missing (optional) and nothing else is said.

Findings are mapped as:

- rule id ``actionlint.<kind>`` (``actionlint.expression``,
  ``actionlint.runner-label``), help URI the kind's section of actionlint's
  checks page (ShellCheck's wiki page for a ShellCheck code);
- severity: every one is a **warning**. actionlint has one level, error, but
  its errors are errors in its own model of GitHub Actions — runner labels,
  permission scopes, contexts, action inputs, YAML features — which lags
  GitHub's (measured on tests/corpus: actionlint v1.6.22 fires on valid
  workflows, for ``ubuntu-slim`` or YAML anchors), and a self-hosted runner's
  label is an error for it without the repository's config, which is never
  read here. A workflow GitHub refuses is the ``github-workflow`` validator's
  error; ``--fail-on warning`` makes actionlint's fail a run, as zizmor's and
  hadolint's (the same mapping: the engine's top level one step down);
- actionlint's line and column; the message clipped to
  :data:`MESSAGE_LIMIT` characters, secrets hidden (actionlint quotes source).

What the capsule decides: nothing about what runs. The workflows of many
capsules go to one actionlint process, written into a private temporary
folder (``_engines.run_files``: 100 files, 60 seconds, 16 MiB of output),
with ``-config-file`` set to an empty config there: actionlint would
otherwise read ``.github/actionlint.yaml`` of the nearest folder above a file
holding ``.github/workflows`` and ``.git`` (which only the operator's
temporary folder could be), and a capsule's own is never written there. With
no such repository around the files, actionlint reads no local action or
reusable workflow (``uses: ./…``) either. A file that is not YAML is the
``yaml`` validator's finding, and is not handed to actionlint.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterable, Sequence

from qlcapsule import Capsule, Engine, FileToCheck, Finding, Register, Rule, Severity, Validator, clip, hookimpl

from . import _engines
from ._yaml import parses

CHECKS = "https://github.com/rhysd/actionlint/blob/main/docs/checks.md"
SHELLCHECK_WIKI = "https://www.shellcheck.net/wiki/"
INSTALL = "put actionlint on PATH (https://github.com/rhysd/actionlint/blob/main/docs/install.md)"
#: actionlint's messages quote the source; its own test cases' longest is 372 characters
MESSAGE_LIMIT = 400
#: each kind's section of actionlint's checks page (its rule names: rule_*.go, "syntax-check" in parse.go)
ANCHORS = {
    "syntax-check": "check-unexpected-keys",
    "expression": "check-syntax-expression",
    "action": "check-action-format",
    "credentials": "check-hardcoded-credentials",
    "deprecated-commands": "check-deprecated-workflow-commands",
    "env-var": "check-env-var-names",
    "events": "check-webhook-events",
    "glob": "check-glob-pattern",
    "id": "check-job-step-ids",
    "if-cond": "if-cond-constant",
    "job-needs": "check-job-deps",
    "matrix": "check-matrix-values",
    "permissions": "permissions",
    "pyflakes": "check-pyflakes-integ",
    "runner-label": "check-runner-labels",
    "shell-name": "check-shell-names",
    "shellcheck": "check-shellcheck-integ",
    "workflow-call": "check-reusable-workflows",
}
_SHELLCHECK_CODE = re.compile(r"\b(SC\d{4})\b")


@lru_cache(maxsize=1)
def _engine() -> Engine:
    found = _engines.binary("actionlint")
    version = _engines.version_of(found, first_word=True) if found is not None else None
    return Engine("actionlint", version, INSTALL, "actionlint's workflow checks", optional=True)


def _help(kind: str) -> str:
    return f"{CHECKS}#{ANCHORS[kind]}" if kind in ANCHORS else CHECKS


class ActionlintValidator(Validator):
    name = "actionlint"
    description = "actionlint's workflow checks (expressions, needs, matrix, runner labels, ShellCheck…), when on PATH"
    patterns = (".github/workflows/*.yml", ".github/workflows/*.yaml")
    rules = (
        Rule("actionlint.syntax-check", "a key, value or section actionlint's model of workflows refuses", Severity.WARNING, _help("syntax-check")),
        Rule("actionlint.expression", "a ${{ }} expression's syntax, types or context", Severity.WARNING, _help("expression")),
        Rule("actionlint.job-needs", "a needs: on an unknown job, or a cycle", Severity.WARNING, _help("job-needs")),
        Rule("actionlint.runner-label", "a runs-on label actionlint does not know", Severity.WARNING, _help("runner-label")),
        Rule("actionlint.shellcheck", "ShellCheck on a run: script", Severity.WARNING, _help("shellcheck")),
        Rule("actionlint.failed", "actionlint could not check the file", Severity.WARNING),
    )  # fmt: skip

    def engines(self) -> Sequence[Engine]:
        return (_engine(),)

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        return self.check_files([FileToCheck(capsule, path, data)])[0]

    def check_files(self, files: Sequence[FileToCheck]) -> list[list[Finding]]:
        """Every workflow in as few actionlint processes as :func:`_engines.run_files` allows."""
        exe = _engines.binary("actionlint")
        if exe is None:
            return [[] for _ in files]  # optional: listed by --engines
        cmd = [exe, "-format", "{{json .}}", "-no-color", "-config-file", "{config}"]
        wanted = lambda f: parses(f.data)  # noqa: E731 -- else the yaml validator's finding, or an empty file
        answers = _engines.run_selected("actionlint", cmd, files, wanted, _given_path, config=b"{}\n", found=(1,))
        return [
            _engines.findings(a, f.path, "actionlint.failed", _finding) for f, a in zip(files, answers, strict=True)
        ]


def _given_path(item: dict[str, Any]) -> str | None:
    """The file a finding is about, as actionlint names it (relative to the folder it ran in)."""
    file = item.get("filepath")
    return file if isinstance(file, str) else None


def _finding(item: dict[str, Any], path: str) -> Finding:
    kind = str(item.get("kind", "unknown"))
    message = str(item.get("message", kind))
    line, column = item.get("line"), item.get("column")
    help_uri = _help(kind)
    code = _SHELLCHECK_CODE.search(message) if kind == "shellcheck" else None
    if code:
        help_uri = SHELLCHECK_WIKI + code.group(1)
    return Finding(
        f"actionlint.{kind}",
        Severity.WARNING,
        clip(message, MESSAGE_LIMIT),
        path,
        line if isinstance(line, int) and line > 0 else None,
        column if isinstance(column, int) and column > 0 else None,
        extra={"engine": "actionlint", "kind": kind, "help_uri": help_uri},
    )


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(ActionlintValidator)
