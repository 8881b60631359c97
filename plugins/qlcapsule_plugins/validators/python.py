"""The ``python`` validator: every ``.py`` file compiles.

``compile()`` (not just ``ast.parse``) so that errors only the compiler sees
(``return`` outside a function, ``nonlocal`` at module level) are reported
too. Warnings the compiler emits (an invalid escape sequence, ``is`` with a
literal) become warnings. Nothing is executed and no bytecode is written.
"""

from __future__ import annotations

import warnings
from typing import Iterable

from qlcapsule import Capsule, Finding, Register, Rule, Severity, Validator, hookimpl


class PythonValidator(Validator):
    name = "python"
    description = "Python files compile (syntax errors with line and column)"
    patterns = ("*.py", "*.pyi")
    rules = (
        Rule("python.syntax", "the file does not compile", Severity.ERROR),
        Rule(
            "python.warning", "the compiler warns (invalid escape sequence, 'is' with a literal...)", Severity.WARNING
        ),
        Rule("python.encoding", "the file cannot be decoded", Severity.ERROR),
    )

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                compile(data, path, "exec", dont_inherit=True)
            except SyntaxError as exc:
                msg = exc.msg or "invalid syntax"
                rule = "python.encoding" if "decode" in msg or "encoding" in msg else "python.syntax"
                text = (exc.text or "").rstrip("\n")
                column = exc.offset if exc.offset and exc.offset > 0 else None
                if column is not None and text:
                    column = min(column, len(text) + 1)
                yield Finding(
                    rule,
                    Severity.ERROR,
                    f"{type(exc).__name__}: {msg}",
                    path,
                    exc.lineno or 1,
                    column,
                    end_line=getattr(exc, "end_lineno", None),
                )
                return
            except (RecursionError, MemoryError) as exc:  # nesting the compiler gives up on (CPython raises these)
                what = "nested too deeply" if isinstance(exc, RecursionError) else "too complex to compile"
                yield Finding("python.syntax", Severity.ERROR, f"{what} for the compiler", path, 1, None)
                return
            except ValueError as exc:  # NUL bytes in source
                yield Finding("python.encoding", Severity.ERROR, f"cannot compile: {exc}", path, 1, 1)
                return
        seen: set[tuple[int, str]] = set()
        for w in caught:
            if not issubclass(w.category, (SyntaxWarning, DeprecationWarning)):
                continue
            key = (w.lineno, str(w.message))
            if key in seen:
                continue
            seen.add(key)
            yield Finding(
                "python.warning", Severity.WARNING, f"{w.category.__name__}: {w.message}", path, w.lineno or None
            )


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(PythonValidator)
