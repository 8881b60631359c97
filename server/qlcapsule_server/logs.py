"""Structured JSON logs for the server: one object per line on stderr, secrets scrubbed.

uvicorn's own loggers are routed through the same formatter (``log_config``); its access log is off, because
the application logs each request itself with the route template (never the query string or headers, where
tokens could be).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from qlcapsule import scrub

LOGGER = "qlcapsule.server"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields.update(getattr(record, "kv", {}))
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(fields, default=str))


def log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn and the application."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    quiet = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "loggers": {"uvicorn": quiet, "uvicorn.error": quiet, LOGGER: quiet},
    }


def log(event: str, level: int = logging.INFO, **kv: Any) -> None:
    logging.getLogger(LOGGER).log(level, event, extra={"kv": kv})
