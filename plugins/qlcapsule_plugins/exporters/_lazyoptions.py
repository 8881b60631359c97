"""Exporter options without importing pydantic until they are needed.

pydantic costs more to import (~0.3 s) than a whole ``qlcapsule export -f tar``
of a small capsule takes otherwise, and every exporter module is imported when
the first exporter is looked up. So the option models live in ``_options``
and each exporter's ``Options`` is ``lazy_options(model(NAME))``, imported on
first access; tar and zip also give ``lazy_options`` their defaults, so they
are built without pydantic when no option is given at all (the common case:
``export -f tar``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def model(name: str) -> Callable[[], Any]:
    """``Options = lazy_options(model("TarOptions"))``: the model from ``_options``, imported on first access."""

    def load() -> Any:
        from . import _options

        return getattr(_options, name)

    return load


def check_prefix(v: str) -> str:
    """A prefix is empty or a relative directory path ending in '/'."""
    if v == "":
        return v
    if not v.endswith("/") or v.startswith("/") or "\\" in v or any(p in ("", ".", "..") for p in v[:-1].split("/")):
        raise ValueError("must be a relative directory ending in '/', like 'orders-1.0.0/'")
    return v
