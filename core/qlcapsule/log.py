"""Structured logs (key=value or JSON) that never carry secrets.

``-v`` turns on INFO, ``-vv`` DEBUG; ``--log-format json`` switches to JSON
lines. Logs go to stderr. Any value registered with :func:`redact` is replaced
by ``***`` in every record, whatever the level — deliverers register the
credentials they read.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any

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


def _fmt_value(v: Any) -> str:
    s = str(v)
    if not s or any(c in s for c in ' "=\n\t'):
        return json.dumps(s)
    return s


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


def configure(verbosity: int = 0, fmt: str = "kv") -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger("qlcapsule")
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("qlcapsule") else f"qlcapsule.{name}")


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **kv: Any) -> None:
    """Log ``name`` with structured fields: ``event(log, "seal.done", digest=d)``."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"kv": kv})
