"""What every command does with an exception: one line on stderr, an exit code, and the ``error`` of
the ``--json`` answer.

The click group (``_common``) calls :func:`handle` for whatever a command raises; :func:`failure` is
the one mapping from an exception to its message and exit code, so the stderr line and the JSON
answer's ``error.message`` are the same words. :class:`Envelope` is the shape of every ``--json``
answer; ``qlcapsule schema envelope`` prints its JSON Schema.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import QlcapsuleError, interruption
from ..log import scrub

if TYPE_CHECKING:
    import click


class Failure(NamedTuple):
    """An exception as the CLI reports it: the line after ``error:``, the exit code, and where."""

    message: str
    exit_code: int
    file: str | None = None
    line: int | None = None
    key: str | None = None
    problems: list[dict[str, object]] = []  # noqa: RUF012 - a NamedTuple default, never mutated
    traceback: bool = False  # an unexpected error: its traceback is what --debug shows

    def error(self) -> dict[str, Any]:
        """The ``error`` member of the ``--json`` answer."""
        return {
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "key": self.key,
            "problems": self.problems,
        }


def problems(exc: BaseException) -> list[dict[str, object]]:
    """Every error a refused YAML file had (file, line, key, message), for ``--json``; empty otherwise."""
    return [p._asdict() for p in getattr(exc, "problems", ())]


def failure(exc: BaseException) -> Failure | None:
    """How the CLI reports ``exc``; None for a closed stdout (``| head``), which is not reported."""
    if isinstance(exc, QlcapsuleError):
        found = problems(exc)
        first = found[0] if found else {}
        return Failure(
            scrub(exc.message),
            exc.exit_code,
            exc.file or first.get("file"),  # type: ignore[arg-type]
            exc.line or first.get("line"),  # type: ignore[arg-type]
            exc.key or first.get("key"),  # type: ignore[arg-type]
            found,
        )
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or Terminated (SIGTERM/SIGHUP)
        what, code = interruption(exc)
        return Failure(what, code)
    if isinstance(exc, BrokenPipeError):
        return None
    if isinstance(exc, OSError):
        filename = getattr(exc, "filename", None)
        where = f"{filename}: " if filename else ""
        return Failure(f"{where}{scrub(exc.strerror or str(exc))}", 2, str(filename) if filename else None)
    pygit2 = sys.modules.get("pygit2")  # never imported here: only a command that used it can raise its errors
    if pygit2 is not None and isinstance(exc, pygit2.GitError):
        # a damaged or unreadable repository is bad input, not a bug of ours
        return Failure(f"git store: {scrub(str(exc))}", 2)
    return Failure(f"internal error: {type(exc).__name__}: {scrub(str(exc))}", 70, traceback=True)


def usage_failure(exc: click.ClickException) -> Failure:
    """A click usage error (exit 2) as the JSON answer reports it; click itself prints it on stderr."""
    import click  # noqa: PLC0415 -- start-up: click loads only in the commands that use it, not for --help

    key: str | None = None
    param = getattr(exc, "param", None)
    if isinstance(exc, click.NoSuchOption):
        key = exc.option_name
    elif isinstance(exc, click.BadParameter) and param is not None:  # MissingParameter too
        key = max(param.opts, key=len) if param.opts else param.name  # --jobs for -j/--jobs
    return Failure(scrub(exc.format_message()), exc.exit_code, key=key)


def print_traceback() -> None:
    """--debug: the traceback, with registered secrets scrubbed like every other line."""
    import traceback  # noqa: PLC0415 -- start-up: traceback loads only with --debug

    sys.stderr.write(scrub(traceback.format_exc()))


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def handle(exc: BaseException, *, debug: bool = False) -> tuple[int, Failure | None]:
    """Report ``exc`` (being handled) on stderr; its exit code and :class:`Failure`. Call from ``except``."""
    found = failure(exc)
    if found is None:  # stdout went away (``| head``): stop quietly like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141, None
    if debug and not isinstance(exc, KeyboardInterrupt):
        print_traceback()
        if found.traceback:  # an unexpected bug: the traceback is the report
            return found.exit_code, found
    tail = " (run with --debug for the traceback)" if found.traceback else ""
    _say(f"error: {found.message}{tail}")
    return found.exit_code, found


def envelope_schema() -> dict[str, Any]:
    """The JSON Schema of the ``--json`` answer, from the :class:`Envelope` model."""
    schema = _models().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://qlcapsule.dev/schema/envelope.json"
    return schema


def envelope(command: str, exit_code: int, error: Failure | None, result: Any) -> dict[str, Any]:
    """The one ``--json`` answer of every command, checked by the :class:`Envelope` model."""
    doc = {
        "ok": exit_code == 0,
        "command": command,
        "exit_code": exit_code,
        "error": error.error() if error is not None else None,
        "result": result,
    }
    _models().model_validate(doc)
    return doc


def _models() -> Any:
    """The pydantic models of the answer (built on first use: pydantic is not imported on every start)."""
    global _ENVELOPE
    if _ENVELOPE is None:
        from pydantic import BaseModel, ConfigDict, Field  # noqa: PLC0415 -- start-up: pydantic loads only in the commands that use it, not for --help

        class Problem(BaseModel):
            """One error of a YAML file the models refused."""

            model_config = ConfigDict(extra="forbid")
            file: str = Field(description="the file, as the user named it")
            line: int | None = Field(description="1-based line, when known")
            key: str = Field(description="dotted key path, (root) for the document")
            message: str

        class Error(BaseModel):
            """Why the command failed: the line printed on stderr after 'error: ', and where."""

            model_config = ConfigDict(extra="forbid")
            message: str
            file: str | None = Field(description="the file at fault, as the user named it")
            line: int | None = Field(description="1-based line in file, when known")
            key: str | None = Field(description="the key (dotted path) or option at fault, when known")
            problems: list[Problem] = Field(description="every error of a refused YAML file; empty otherwise")

        class Envelope(BaseModel):
            """What every qlcapsule command prints on stdout under --json: exactly one such document."""

            model_config = ConfigDict(extra="forbid", title="qlcapsule --json answer")
            ok: bool = Field(description="exit_code == 0")
            command: str = Field(description="the command, e.g. 'verify' or 'hook verify'")
            exit_code: int = Field(
                description="0 ok; 1 findings, tampering, failed verification; 2 bad usage or input; "
                "3 remote failure after retries; 70 internal error; 128+N a signal (130 Ctrl-C)"
            )
            error: Error | None = Field(description="null unless the command printed an error line on stderr")
            result: Any = Field(description="the command's data (documented per command), or null")

        _ENVELOPE = Envelope
    return _ENVELOPE


_ENVELOPE: Any = None
