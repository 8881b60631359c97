"""The ``terraform`` validator: ``.tf`` files parse as HCL2, and ``var.X`` is declared.

Parsing uses python-hcl2 (imported only when a capsule has ``.tf`` files).
Variables are looked up in every ``.tf`` file of the same directory (a
Terraform module is a directory). No provider schemas are consulted — that is
``terraform validate``'s job.
"""

from __future__ import annotations

import re
from typing import Iterable

from qlcapsule import Capsule, Finding, Register, Rule, Severity, Validator, clip, hookimpl

_VAR_REF = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")
_VAR_DECL = re.compile(r"""^\s*variable\s+"?([A-Za-z_][A-Za-z0-9_-]*)"?\s*\{""", re.M)
_COMMENT = re.compile(r"(#|//)[^\n]*|/\*.*?\*/", re.S)
_AT = re.compile(r"line (\d+), col(?:umn)? (\d+)")


class TerraformValidator(Validator):
    name = "terraform"
    description = "Terraform .tf files parse (HCL2); referenced variables are declared"
    patterns = ("*.tf",)
    rules = (
        Rule("terraform.syntax", "the file is not valid HCL2", Severity.ERROR),
        Rule(
            "terraform.undeclared-variable", "var.X is used but no 'variable \"X\"' block declares it", Severity.ERROR
        ),
    )

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        import hcl2  # noqa: PLC0415 -- start-up: hcl2 (lark, ~50 ms) loads only when a .tf file is checked

        text = data.decode("utf-8", "replace")
        try:
            hcl2.loads(text)
        except Exception as exc:  # noqa: BLE001 - lark raises many types; each is a parse failure
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            line = getattr(exc, "line", None)
            column = getattr(exc, "column", None)
            m = _AT.search(first)
            if line is None and m:
                line, column = int(m.group(1)), int(m.group(2))
            yield Finding(
                "terraform.syntax",
                Severity.ERROR,
                f"invalid HCL: {first}",
                path,
                line if line and line > 0 else None,
                column if column and column > 0 else None,
            )
            return
        directory = (capsule.root / path).parent
        declared: set[str] = set()
        for tf in sorted(directory.glob("*.tf")):
            declared.update(_VAR_DECL.findall(_strip_comments(tf.read_text("utf-8", "replace"))))
        stripped = _strip_comments(text)
        reported: set[str] = set()
        for m in _VAR_REF.finditer(stripped):
            name = m.group(1)
            if name in declared or name in reported:
                continue
            reported.add(name)
            line = stripped.count("\n", 0, m.start()) + 1
            column = m.start() - (stripped.rfind("\n", 0, m.start()) + 1) + 1
            yield Finding(
                "terraform.undeclared-variable",
                Severity.ERROR,
                f"var.{clip(name)} is not declared in this module",
                path,
                line,
                column,
            )


def _strip_comments(text: str) -> str:
    """Blank out comments, keeping every newline so positions stay right."""
    return _COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(TerraformValidator)
