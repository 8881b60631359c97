"""The plain records components exchange: what a generator recorded, key material, artifacts, receipts.

They live apart from the base classes (``components.py``, which re-exports
them) so that importing a component — a signer for ``verify --key``, say —
does not build four dataclasses it never uses.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GeneratorRecord", "TemplateInfo", "KeyPair", "Artifact", "Receipt"]


@dataclass
class GeneratorRecord:
    """What a generator recorded about a run; stored as ``generator`` in capsule.yaml."""

    template: str
    version: str | None = None
    commit: str | None = None
    source: str | None = None
    answers: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_definition(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("files")
        return {k: v for k, v in data.items() if v is not None}


@dataclass
class TemplateInfo:
    """What a generator says about one template (``qlcapsule templates``), read without rendering it.

    Each question is a mapping with ``name``, ``type``, ``help``, ``default`` (as written, possibly an
    expression over earlier answers), ``choices`` and ``when`` (the condition for asking it, or None).
    """

    template: str
    version: str | None = None
    description: str = ""
    source: str = ""
    questions: list[dict[str, Any]] = field(default_factory=list)
    #: the generator that describes (and renders) it; set by the core
    generator: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KeyPair:
    """Serialized key material as written by ``qlcapsule keygen``."""

    private: bytes
    public: bytes | None
    keyid: str


@dataclass
class Artifact:
    """A file to deliver, with its digest already known."""

    path: Path
    name: str
    sha256: str
    size: int
    media_type: str = "application/octet-stream"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Receipt:
    """Where one artifact went. Never holds a credential."""

    provider: str
    target: str
    location: str
    sha256: str
    size: int
    url: str | None = None
    time: str = field(default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
