"""Engines, sessions, and the schema migrations (Alembic, shipped in ``migrations/``).

SQLite gets WAL, foreign keys and a busy timeout, so several writers (threads of one server, or a server and a
``catalog`` command) wait for each other instead of failing. PostgreSQL is used through psycopg 3. The schema
is only ever changed by the Alembic revisions; ``serve`` upgrades to the newest on start unless told not to,
and ``/readyz`` answers 503 while the database is behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from qlcapsule import RemoteError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; the SQLite file's directory is created (``serve`` on a fresh machine)."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL with NORMAL: a commit is durable once checkpointed, never corrupt (SQLite's documented pairing)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


#: engine id -> the lock its writers take turns on (SQLite engines only)
_WRITE_LOCKS: dict[int, threading.Lock] = {}


def session_factory(engine: Engine) -> sessionmaker[Session]:
    if engine.dialect.name == "sqlite":
        _WRITE_LOCKS.setdefault(id(engine), threading.Lock())
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session], *, write: bool = False) -> Iterator[Session]:
    """One unit of work: committed when the block ends, rolled back when it raises.

    ``write``: on SQLite, the writers of this process take turns on a lock first. SQLite admits one writer at
    a time anyway; waiting on a lock is immediate where its busy handler sleeps in steps of up to 100 ms.
    """
    lock = _WRITE_LOCKS.get(id(factory.kw.get("bind"))) if write else None
    with lock or nullcontext(), factory() as session, session.begin():
        yield session


# -- migrations -----------------------------------------------------------------


def _config(engine: Engine) -> Any:
    from alembic.config import Config  # noqa: PLC0415 -- start-up: alembic loads only for migrations and /readyz

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema up to ``revision`` (the newest by default)."""
    from alembic import command  # noqa: PLC0415 -- start-up: alembic loads only for migrations and /readyz

    command.upgrade(_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the schema down to ``revision`` (``base``: no tables left)."""
    from alembic import command  # noqa: PLC0415 -- start-up: alembic loads only for migrations and /readyz

    command.downgrade(_config(engine), revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory  # noqa: PLC0415 -- start-up: alembic loads only for migrations and /readyz

    head = ScriptDirectory.from_config(_config(None)).get_current_head()  # type: ignore[arg-type]
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated); RemoteError when it cannot be reached."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415 -- start-up: alembic loads only for migrations and /readyz

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise RemoteError(f"database unreachable: {type(getattr(exc, 'orig', None) or exc).__name__}") from None
