"""What every command does with an exception: one line on stderr and an exit code.

The click group (``_common``) calls :func:`handle` for whatever a command raises.
"""

from __future__ import annotations

import os
import sys

from ..errors import QlcapsuleError, interruption
from ..log import scrub


def problems(exc: BaseException) -> list[dict[str, object]]:
    """Every error a refused YAML file had (file, line, key, message), for ``--json``; empty otherwise."""
    return [p._asdict() for p in getattr(exc, "problems", ())]


def print_traceback() -> None:
    """--debug: the traceback, with registered secrets scrubbed like every other line."""
    import traceback  # noqa: PLC0415 -- start-up: traceback loads only with --debug

    sys.stderr.write(scrub(traceback.format_exc()))


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def handle(exc: BaseException, *, debug: bool = False) -> int:
    """Report ``exc`` (being handled) and return the exit code; call from an ``except`` block."""
    if isinstance(exc, QlcapsuleError):
        if debug:
            print_traceback()
        _say(f"error: {scrub(exc.message)}")
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or Terminated (SIGTERM/SIGHUP)
        what, code = interruption(exc)
        _say(f"error: {what}")
        return code
    if isinstance(exc, BrokenPipeError):
        # stdout went away (``| head``): stop quietly like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    if isinstance(exc, OSError):
        if debug:
            print_traceback()
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _say(f"error: {where}{scrub(exc.strerror or str(exc))}")
        return 2
    pygit2 = sys.modules.get("pygit2")  # never imported here: only a command that used it can raise its errors
    if pygit2 is not None and isinstance(exc, pygit2.GitError):
        # a damaged or unreadable repository is bad input, not a bug of ours
        if debug:
            print_traceback()
        _say(f"error: git store: {scrub(str(exc))}")
        return 2
    if debug:  # an unexpected bug: still one line unless --debug
        print_traceback()
        return 70
    _say(f"error: internal error: {type(exc).__name__}: {scrub(str(exc))} (run with --debug for the traceback)")
    return 70
