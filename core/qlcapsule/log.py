"""Structured logs (key=value or JSON) that never carry secrets.

``-v`` turns on INFO, ``-vv`` DEBUG; ``--log-format json`` switches to JSON
lines. Logs go to stderr. Any value registered with :func:`redact` is replaced
by ``***`` in every record, whatever the level — deliverers register the
credentials they read.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

# The standard levels, so that callers need not import logging (~8 ms) to log.
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def redact(value: str | None) -> None:
    """Never let ``value`` appear in a log line again (values shorter than 4 chars are ignored)."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    """Replace every registered secret in ``text`` by ``***``."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


# C0/C1 controls, line and paragraph separators, bidi overrides: a file named
# "x\n::error file=README.md::…" must not start a line of its own in a CI log
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ``\\u202e``), on one line: the one escaping
    rule, for validation reports and for text the store shows (authors, messages, names)."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), m.group().encode("unicode_escape").decode("ascii")), text)


def _fmt_value(v: Any) -> str:
    s = str(v)
    if not s or any(c in s for c in ' "=\n\t'):
        return json.dumps(s)
    return s


def _formatters() -> tuple[type[logging.Formatter], type[logging.Formatter]]:
    import logging  # noqa: PLC0415 -- start-up: logging (~3 ms) loads only when a record gets through the level

    class KeyValueFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            fields = {"level": record.levelname.lower(), "logger": record.name, "event": record.getMessage()}
            fields.update(getattr(record, "kv", {}))
            if record.exc_info:
                fields["exc"] = self.formatException(record.exc_info)
            return scrub(" ".join(f"{k}={_fmt_value(v)}" for k, v in fields.items()))

    class JsonFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            fields: dict[str, Any] = {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": record.getMessage(),
            }
            fields.update(getattr(record, "kv", {}))
            if record.exc_info:
                fields["exc"] = self.formatException(record.exc_info)
            return scrub(json.dumps(fields, default=str))

    return KeyValueFormatter, JsonFormatter


#: the level configure() asked for, and its format, until logging is really set up
_pending: tuple[int, str] | None = None
_threshold = WARNING


def configure(verbosity: int = 0, fmt: str = "kv") -> None:
    """Set the level and format of qlcapsule's logs (on stderr).

    The logging package is imported when the first record at or above the
    level is emitted, not here: most commands log nothing at the default level.
    """
    global _pending, _threshold
    _threshold = WARNING if verbosity <= 0 else INFO if verbosity == 1 else DEBUG
    _pending = (_threshold, fmt)
    if "logging" in sys.modules:
        _setup()


def _setup() -> None:
    global _pending
    import logging  # noqa: PLC0415 -- start-up: logging (~3 ms) loads only when a record gets through the level

    if _pending is None:
        return
    level, fmt = _pending
    _pending = None
    kv_formatter, json_formatter = _formatters()
    root = logging.getLogger("qlcapsule")
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else kv_formatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


class Logger:
    """A named qlcapsule logger that imports logging only when a record gets through."""

    __slots__ = ("name", "_logger")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: logging.Logger | None = None

    def real(self) -> logging.Logger:
        if self._logger is None:
            import logging  # noqa: PLC0415 -- start-up: logging (~3 ms) loads only when a record gets through the level

            _setup()
            self._logger = logging.getLogger(self.name)
        return self._logger

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802  (logging's name)
        if self._logger is None and "logging" not in sys.modules:
            return level >= _threshold  # nothing else can have configured it
        return self.real().isEnabledFor(level)

    def __getattr__(self, attr: str) -> Any:  # debug, info, warning, log, ...: the real logger's
        return getattr(self.real(), attr)


def get_logger(name: str) -> Logger:
    return Logger(name if name.startswith("qlcapsule") else f"qlcapsule.{name}")


def event(logger: Logger | logging.Logger, name: str, level: int = INFO, **kv: Any) -> None:
    """Log ``name`` with structured fields: ``event(log, "seal.done", digest=d)``."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"kv": kv})
