"""Settings of the catalog service, and where its data lives by default.

Everything here comes from the operator (flags, environment, files the operator names); nothing a client sends
changes it. In particular the keys that decide whether a publication is *verified* are the server's own
(``--trust FILE`` or ``$QLCAPSULE_TRUST_FILE``), never keys named in a report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from qlcapsule import UsageError

ENV_DATABASE = "QLCAPSULE_SERVER_DATABASE"
#: the largest request body the API reads (a ship report with its lock and envelope)
DEFAULT_MAX_BODY = 16 * 1024 * 1024
#: the deepest JSON nesting a request may have (a ship report needs about 6)
DEFAULT_MAX_DEPTH = 32
POLICIES = ("refuse", "mark")


def data_dir() -> Path:
    """The user's data directory for qlcapsule (``~/.local/share/qlcapsule`` on Linux)."""
    import platformdirs  # noqa: PLC0415 -- extra: platformdirs ([server]); config loads with the commands, which start without the extra

    return Path(platformdirs.user_data_dir("qlcapsule", appauthor=False))


def cache_dir() -> Path:
    """The user's cache directory for qlcapsule (``catalog sync``'s mirrors of git URLs)."""
    import platformdirs  # noqa: PLC0415 -- extra: platformdirs ([server]); config loads with the commands, which start without the extra

    return Path(platformdirs.user_cache_dir("qlcapsule", appauthor=False))


def default_database_url() -> str:
    """``$QLCAPSULE_SERVER_DATABASE``, else SQLite in the user's data directory (created on first use)."""
    value = os.environ.get(ENV_DATABASE, "").strip()
    if value:
        return value
    return f"sqlite:///{data_dir() / 'catalog.db'}"


def check_database_url(url: str) -> str:
    """Only the two databases the service is tested on: SQLite and PostgreSQL through psycopg 3."""
    scheme = url.split(":", 1)[0]
    if scheme not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise UsageError(
            f"--database: unsupported URL scheme {scheme!r}; use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        )
    return url


@dataclass(frozen=True)
class Settings:
    """What ``qlcapsule serve`` runs with."""

    database_url: str
    #: the operator's trust file: the keys a publication's signatures are checked against
    trust_file: str | None = None
    #: what happens to a publication without a signature: refused (422) or recorded as ``unsigned``
    unsigned: str = "refuse"
    #: what happens to one whose signatures no trusted key made: refused (422) or recorded as ``untrusted``
    untrusted: str = "refuse"
    #: read endpoints without a token
    anonymous_read: bool = False
    max_body: int = DEFAULT_MAX_BODY
    max_depth: int = DEFAULT_MAX_DEPTH
    #: migrate the database to the newest schema on start (``serve --no-migrate`` leaves it to the operator)
    migrate: bool = True

    def __post_init__(self) -> None:
        for field in ("unsigned", "untrusted"):
            if getattr(self, field) not in POLICIES:
                raise UsageError(f"--{field}: expected one of {', '.join(POLICIES)}, got {getattr(self, field)!r}")
        check_database_url(self.database_url)
