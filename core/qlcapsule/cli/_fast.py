"""Plain ``seal``, ``verify``, ``sign`` and ``commit`` without click.

These are the commands CI loops and pre-commit hooks run most, and importing
click is a third of a small ``verify``. When the arguments are this plain, the
console script runs them directly:

- ``seal [DIR]``
- ``verify [DIR] [--key PUB]...``
- ``sign [DIR] --key FILE``
- ``commit [DIR] [-m MSG] [--store PATH]`` (``--store`` defaults to ``$QLCAPSULE_STORE``)

with an existing directory and no ``QLCAPSULE_DEBUG``. Anything else,
``--help`` and ``--json`` included, goes to the click command line. Both paths
share the work (``pipeline``, ``signing``, ``store``), the output (``_text``)
and the error handling (``_errors``); a test runs a matrix of cases through
both and compares stdout, stderr and exit codes byte for byte.
``QLCAPSULE_NO_FAST_CLI=1`` turns the fast path off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

ENV_OFF = "QLCAPSULE_NO_FAST_CLI"

#: the options each command takes here, option -> (destination, repeatable)
_OPTIONS: dict[str, dict[str, tuple[str, bool]]] = {
    "seal": {},
    "verify": {"--key": ("keys", True)},
    "sign": {"--key": ("key", False)},
    "commit": {"-m": ("message", False), "--message": ("message", False), "--store": ("store", False)},
}


def parse(argv: Sequence[str]) -> tuple[str, str, dict[str, list[str]]] | None:
    """``(command, directory, options)`` when ``argv`` is plain enough, else None."""
    if os.environ.get(ENV_OFF) or os.environ.get("QLCAPSULE_DEBUG"):
        return None
    if not argv or argv[0] not in _OPTIONS:
        return None
    command, rest, known = argv[0], list(argv[1:]), _OPTIONS[argv[0]]
    directory: str | None = None
    options: dict[str, list[str]] = {}
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in known and i + 1 < len(rest) and rest[i + 1] and not rest[i + 1].startswith("-"):
            dest, repeatable = known[arg]
            if dest in options and not repeatable:
                return None  # click decides what a repeated option means
            options.setdefault(dest, []).append(rest[i + 1])
            i += 2
            continue
        if arg.startswith("-") or not arg or directory is not None:
            return None  # any other option, or a second argument: click decides
        directory = arg
        i += 1
    if command == "sign" and "key" not in options:
        return None  # click words the missing-key error
    directory = "." if directory is None else directory
    if not os.path.isdir(directory):
        return None  # click's own message for a file or a missing path
    return command, directory, options


def _one(options: dict[str, list[str]], name: str) -> str | None:
    values = options.get(name)
    return values[0] if values else None


def _text(command: str, directory: str, options: dict[str, list[str]]) -> str:
    from pathlib import Path

    from . import _text as text

    if command == "seal":
        from ..pipeline import seal_capsule

        return text.seal_text(seal_capsule(Path(directory)))
    if command == "sign":
        from ..signing import sign_capsule

        return text.sign_text(sign_capsule(directory, _one(options, "key"), key_env=None, key_type=None, expires=None))
    if command == "commit":
        from ..store import commit_capsule

        store = _one(options, "store") or os.environ.get("QLCAPSULE_STORE") or None
        return text.commit_text(commit_capsule(Path(directory), message=_one(options, "message"), store=store))
    from ..pipeline import verify_capsule

    report = verify_capsule(
        Path(directory),
        keys=options.get("keys", []),
        hmac_key_envs=[],
        trust=None,
        threshold=None,
        require_signature=False,
        min_version=None,
        allow_rollback=False,
    )
    for line in text.unlocked_warnings(report):  # what the click command echoes to stderr
        sys.stderr.write(line + "\n")
    return text.verify_text(report)


def run(argv: Sequence[str]) -> int | None:
    """Run a plain ``seal``/``verify``/``sign``/``commit``; None when click must handle ``argv``."""
    parsed = parse(argv)
    if parsed is None:
        return None
    from ..log import configure
    from ._errors import handle

    configure(0, "kv")
    try:
        out = _text(*parsed)
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001  (one line and an exit code, as in click)
        return handle(exc)
    return 0
