"""The ``qlcapsule`` command line: thin click commands over the Python API.

Command modules (one per area) attach their commands to :data:`main`. They are
imported on demand: ``qlcapsule verify`` loads only ``cli/verify.py``, so the
integrity path starts fast; ``--help`` and unknown names load them all.
Every command maps :class:`qlcapsule.QlcapsuleError` to its exit code and a
single line on stderr; ``--debug`` shows the traceback instead. Under ``--json``
every command prints exactly one answer on stdout, success or failure (the
envelope of ``cli._errors``, ``qlcapsule schema envelope``). The group adds
both, and the global options (``--debug``, ``-v``, ``--log-format``) that may
follow the command, to every command (``cli._common.Command``).

The console script enters through :func:`run`, which only turns SIGTERM/SIGHUP
into a clean stop and hands the arguments to the click group: click is the one
parser of every command line.
"""

from __future__ import annotations

from typing import Any

from ..errors import Terminated, signal_module

__all__ = ["main", "on_termination", "run"]


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum, {1: "SIGHUP", 15: "SIGTERM"}.get(signum, f"signal {signum}"))


def on_termination() -> None:
    """Turn SIGTERM and SIGHUP into :class:`qlcapsule.errors.Terminated`, so cleanup runs as on Ctrl-C."""
    signal = signal_module()
    for name in ("SIGTERM", "SIGHUP"):
        num = getattr(signal, name, None)
        if num is not None and signal.getsignal(num) == signal.SIG_DFL:  # leave a handler the caller chose
            signal.signal(num, _terminate)


def run() -> None:
    """Console-script entry point (``qlcapsule`` and ``python -m qlcapsule``): ``sys.argv`` to the click group.

    Usage lines say ``qlcapsule`` however it was started (the name the docs use).
    """
    from ._common import main  # noqa: PLC0415 -- start-up: click loads only for the command line, not when the Action imports on_termination

    on_termination()
    main(prog_name="qlcapsule")


def __getattr__(name: str) -> Any:  # PEP 562: the click group is built on first use
    if name == "main":
        from ._common import main  # noqa: PLC0415 -- start-up: click loads only for the command line, not when the Action imports on_termination

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
