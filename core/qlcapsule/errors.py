"""The one exception hierarchy of qlcapsule.

Every error the tool expects carries an exit code and a one-line message that
names the file, field or line at fault. The CLI prints ``str(error)`` and exits
with ``error.exit_code``; the traceback only appears with ``--debug``.

Exit codes (documented in docs/commands.md, where a test holds every command to them):

- ``0`` success
- ``1`` findings, tampering, failed verification, merge conflicts
- ``2`` bad usage or bad input (malformed YAML, unknown keys, bad options, missing credentials)
- ``3`` a remote side failed (unreachable server, rejected upload) after retries
- ``70`` an internal error (a bug: ``--debug`` shows the traceback)
"""

from __future__ import annotations

import json
import sys
from typing import Any

try:
    import _signal  # the C module, loaded by the interpreter: see signal_module()
except ImportError:  # pragma: no cover - not CPython
    import signal as _signal  # type: ignore[no-redef]

__all__ = [
    "QlcapsuleError",
    "UsageError",
    "InputError",
    "DefinitionError",
    "OptionsError",
    "UnsafePathError",
    "IntegrityError",
    "VerificationError",
    "SignatureError",
    "PluginError",
    "StoreError",
    "ConflictError",
    "CredentialsError",
    "RemoteError",
    "Terminated",
    "interruption",
    "signal_module",
    "signals_deferred",
    "long_number",
    "parse_json",
]


class QlcapsuleError(Exception):
    """Base class: an expected failure with a one-line message and an exit code."""

    exit_code: int = 2
    #: where the fault is, when known: the file as the user named it, its 1-based line, the key
    #: (dotted path) or option; the CLI's ``--json`` answer carries them beside the message
    file: str | None = None
    line: int | None = None
    key: str | None = None

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.file, self.line, self.key = file, line, key

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class UsageError(QlcapsuleError):
    """The command line itself is wrong."""

    exit_code = 2


class InputError(QlcapsuleError):
    """A file or value given to the tool is malformed."""

    exit_code = 2


class DefinitionError(InputError):
    """capsule.yaml (or capsule.lock) is malformed; the message names file, key and line."""


class OptionsError(InputError):
    """A component's options failed validation; the message names the field."""


class UnsafePathError(InputError):
    """A symlink, device, non-UTF-8 name or a path escaping the capsule was met."""


class IntegrityError(QlcapsuleError):
    """The files on disk do not match the lock."""

    exit_code = 1


class VerificationError(QlcapsuleError):
    """Verification failed (integrity, signature, policy)."""

    exit_code = 1


class SignatureError(VerificationError):
    """A signature is missing, invalid, expired or does not meet the trust policy."""


class PluginError(QlcapsuleError):
    """A plugin or component is unknown, failed to load, or misbehaved."""

    exit_code = 2


class StoreError(QlcapsuleError):
    """The version store refused an operation (unknown revision, moved tag, ...)."""

    exit_code = 2


class ConflictError(QlcapsuleError):
    """A merge or update left conflicts; ``paths`` lists them."""

    exit_code = 1

    def __init__(self, message: str, paths: list[str] | None = None) -> None:
        super().__init__(message)
        self.paths = list(paths or [])


class CredentialsError(InputError):
    """Credentials are missing or unusable. Never include the secret itself."""


class RemoteError(QlcapsuleError):
    """A remote service failed after bounded retries."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived (CI cancelled the job, ``timeout``, ``docker stop``).

    A KeyboardInterrupt, so it unwinds exactly like Ctrl-C: temp files and
    half-written exports are removed on the way out. The CLI exits with
    128 + the signal number, as a shell reports a process killed by it.
    """

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum = signum
        self.name = name


def interruption(exc: KeyboardInterrupt) -> tuple[str, int]:
    """What to say and the exit code for Ctrl-C (130) or :class:`Terminated` (128 + the signal number)."""
    if isinstance(exc, Terminated):
        return f"terminated ({exc.name})", 128 + exc.signum
    return "interrupted", 130


def signal_module() -> Any:
    """The C ``_signal`` module: ``signal`` builds its enums at import (~1 ms of every command)."""
    return _signal


class signals_deferred:  # noqa: N801 - used as ``with signals_deferred():``
    """Hold SIGINT, SIGTERM and SIGHUP back for a few statements (the calling thread; POSIX only).

    Between creating a temp file and entering the ``try`` that removes it,
    Ctrl-C or a SIGTERM would leave it behind. Inside this block the signal
    waits; it is delivered when the block ends, once the caller has recorded
    what to clean up.
    """

    def __enter__(self) -> None:
        sig = signal_module()
        self._sig = sig
        self._old: object = None
        if hasattr(sig, "pthread_sigmask"):
            self._old = sig.pthread_sigmask(sig.SIG_BLOCK, {sig.SIGINT, sig.SIGTERM, sig.SIGHUP})

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            self._sig.pthread_sigmask(self._sig.SIG_SETMASK, self._old)


def parse_json(raw: bytes, where: str, error: type[QlcapsuleError], prefix: str = "") -> Any:
    """Untrusted JSON bytes as data; anything Python cannot read (not UTF-8, bad JSON, nested too
    deeply, an integer too long) is one ``error`` naming ``where`` (and the line when known), with
    ``prefix`` ("not a DSSE envelope: ") before the reason."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{where}: not UTF-8", file=where) from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}:{exc.lineno}: {prefix}invalid JSON: {exc.msg}", file=where, line=exc.lineno) from None
    except RecursionError:
        raise error(f"{where}: {prefix}invalid JSON: nested too deeply", file=where) from None
    except ValueError:  # an integer longer than int_max_str_digits
        raise error(f"{where}: {prefix}invalid JSON: {long_number()}", file=where) from None


def long_number() -> str:
    """What a JSON document holding an integer too long for Python to read is told (Python's own
    words differ from one version to the next, so they are not passed on)."""
    return f"a number longer than {sys.get_int_max_str_digits()} digits"
