"""Exporter options without importing pydantic until they are needed.

pydantic costs more to import (~0.3 s) than a whole ``qlcapsule export -f tar``
of a small capsule takes otherwise, and every exporter module is imported when
the first exporter is looked up. So the option models live in ``_options``
and each exporter's ``Options`` is ``lazy_options(model(NAME))``, imported on
first access; exporters that list :attr:`defaults` are built without pydantic
when no option is given at all (the common case: ``export -f tar``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from qlcapsule import Exporter


def model(name: str) -> Callable[[], Any]:
    """``Options = lazy_options(model("TarOptions"))``: the model from ``_options``, imported on first access."""

    def load() -> Any:
        from . import _options

        return getattr(_options, name)

    return load


class DefaultOptions:
    """The default option values of a model, as attributes (what ``Model()`` would hold)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def model_dump(self, **_: Any) -> dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"Options({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


class FastDefaultsExporter(Exporter):
    """An exporter whose default options need no pydantic (``tests`` check them against the model)."""

    #: exactly the defaults of the ``Options`` model
    defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def from_options(cls, raw: Any = None, *, where: str = "") -> Any:
        if not raw:
            return cls(DefaultOptions(dict(cls.defaults)))
        return super().from_options(raw, where=where)


def check_prefix(v: str) -> str:
    """A prefix is empty or a relative directory path ending in '/'."""
    if v == "":
        return v
    if not v.endswith("/") or v.startswith("/") or "\\" in v or any(p in ("", ".", "..") for p in v[:-1].split("/")):
        raise ValueError("must be a relative directory ending in '/', like 'orders-1.0.0/'")
    return v
