"""The ``toml`` validator: TOML files parse (line and column from the parser)."""

from __future__ import annotations

import re
import sys
from typing import Iterable

from qlcapsule import Capsule, Finding, Register, Rule, Severity, Validator, hookimpl

_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


class TomlValidator(Validator):
    name = "toml"
    description = "TOML files parse"
    patterns = ("*.toml",)
    rules = (Rule("toml.syntax", "the file is not valid TOML", Severity.ERROR),)

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        if sys.version_info >= (3, 11):
            import tomllib  # noqa: PLC0415 -- start-up: tomllib loads only when a TOML file is checked
        else:  # pragma: no cover - exercised on 3.10 only
            import tomli as tomllib  # noqa: PLC0415 -- start-up: tomli (Python 3.10) loads only when a TOML file is checked
        try:
            text = data.decode("utf-8")
            tomllib.loads(text)
        except UnicodeDecodeError as exc:
            yield Finding("toml.syntax", Severity.ERROR, f"not UTF-8 (byte {exc.start})", path, 1, 1)
        except RecursionError:
            yield Finding("toml.syntax", Severity.ERROR, "invalid TOML: nested too deeply", path, 1, 1)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc).splitlines()[0] if str(exc) else "invalid TOML"
            line = getattr(exc, "lineno", None)
            column = getattr(exc, "colno", None)
            m = _AT.search(msg)
            if m:
                line, column = int(m.group(1)), int(m.group(2))
                msg = msg[: m.start()]
            msg = getattr(exc, "msg", None) or msg
            if "(at end of document)" in str(exc):
                # tomllib gives no position at the end, tomli >= 2.1 one past the last line:
                # the end of the last line is where the parser ran out, on every Python
                if "end of document" not in msg:
                    msg = f"{msg} (at end of document)"
                last = text.rstrip("\r\n").rsplit("\n", 1)[-1]
                line = text.rstrip("\r\n").count("\n") + 1
                column = len(last) + 1
            yield Finding("toml.syntax", Severity.ERROR, f"invalid TOML: {msg}", path, line, column)
        except ValueError:  # after TOMLDecodeError (a ValueError too): int() of thousands of digits
            yield Finding("toml.syntax", Severity.ERROR, "invalid TOML: an integer too long to read", path, None, None)


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(TomlValidator)
