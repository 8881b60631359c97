"""``qlcapsule seal [DIR]`` and ``qlcapsule verify [DIR] [--key PUB]...`` without click.

These are the commands CI loops and pre-commit hooks run most, and importing
click is a third of a small ``verify``. When the arguments are this plain (no
other option, an existing directory, no ``QLCAPSULE_DEBUG``), the console
script runs them directly; anything else, ``--help`` included, goes to the click
command line. Both paths share the work (``pipeline``), the output
(``_text``) and the error handling (``_errors``); a test runs a matrix of cases
through both and compares stdout, stderr and exit codes byte for byte.
``QLCAPSULE_NO_FAST_CLI=1`` turns the fast path off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

ENV_OFF = "QLCAPSULE_NO_FAST_CLI"


def parse(argv: Sequence[str]) -> tuple[str, str, list[str]] | None:
    """``(command, directory, keys)`` when ``argv`` is plain enough, else None."""
    if os.environ.get(ENV_OFF) or os.environ.get("QLCAPSULE_DEBUG"):
        return None
    if not argv or argv[0] not in ("seal", "verify"):
        return None
    command, rest = argv[0], list(argv[1:])
    directory: str | None = None
    keys: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if command == "verify" and arg == "--key" and i + 1 < len(rest) and rest[i + 1] and not rest[i + 1].startswith("-"):
            keys.append(rest[i + 1])
            i += 2
            continue
        if arg.startswith("-") or not arg or directory is not None:
            return None  # any other option, or a second argument: click decides
        directory = arg
        i += 1
    directory = "." if directory is None else directory
    if not os.path.isdir(directory):
        return None  # click's own message for a file or a missing path
    return command, directory, keys


def run(argv: Sequence[str]) -> int | None:
    """Run a plain ``seal``/``verify``; None when click must handle ``argv``."""
    parsed = parse(argv)
    if parsed is None:
        return None
    command, directory, keys = parsed
    from pathlib import Path

    from ..log import configure
    from ._errors import handle
    from ._text import seal_text, verify_text

    configure(0, "kv")
    try:
        if command == "seal":
            from ..pipeline import seal_capsule

            text = seal_text(seal_capsule(Path(directory)))
        else:
            from ..pipeline import verify_capsule

            report = verify_capsule(
                Path(directory),
                keys=keys,
                hmac_key_envs=[],
                trust=None,
                threshold=None,
                require_signature=False,
                min_version=None,
                allow_rollback=False,
            )
            text = verify_text(report)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001  (one line and an exit code, as in click)
        return handle(exc)
    return 0
