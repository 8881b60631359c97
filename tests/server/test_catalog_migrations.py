"""The Alembic migrations shipped in the package: upgrade and downgrade on SQLite and a real PostgreSQL, the
models and the migrations agree, and /readyz tells a database that is behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from catalog_fixtures import Serve, cli
from sqlalchemy import inspect

from qlcapsule_server import db
from qlcapsule_server.models import Base


def _tables(url: str) -> set[str]:
    engine = db.make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_downgrade_removes_them(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        assert db.current_revision(engine) is None
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
        assert _tables(database_url) == set(Base.metadata.tables)
        db.upgrade(engine)  # again: nothing to do
        db.downgrade(engine, "base")
        assert db.current_revision(engine) is None
        assert _tables(database_url) == set()
        db.upgrade(engine)
        assert _tables(database_url) == set(Base.metadata.tables)
    finally:
        engine.dispose()


def test_processes_migrating_one_empty_database_together_all_succeed(database_url: str) -> None:
    """Replicas that migrate on start: four processes upgrade the same empty database at once; each exits 0
    and the schema is current once (PostgreSQL: the advisory lock in migrations/env.py; SQLite: its write
    lock). Without the lock, the losers on PostgreSQL failed creating tables that already existed."""
    script = "import sys; from qlcapsule_server import db; db.upgrade(db.make_engine(sys.argv[1]))"
    procs = [
        subprocess.Popen([sys.executable, "-c", script, database_url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)[-2000:]
    engine = db.make_engine(database_url)
    try:
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()
    assert _tables(database_url) == set(Base.metadata.tables)


def test_the_models_and_the_migrations_agree(database_url: str) -> None:
    """A model change without a migration fails here (alembic's own autogenerate comparison)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_readyz_answers_503_until_the_schema_is_current(serve: Serve, database_url: str) -> None:
    server = serve(migrate=False)
    assert server.call("/healthz") == (200, {"status": "ok"})
    status, answer = server.call("/readyz")
    assert status == 503 and answer == {"status": "migrating", "database": None, "expected": db.head_revision()}
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    engine.dispose()
    assert server.call("/readyz") == (200, {"status": "ready", "database": db.head_revision()})


def test_migrate_command_up_and_down(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert cli("catalog", "migrate", "--database", url).output == f"database at {db.head_revision()} (was base)\n"
    assert cli("catalog", "migrate", "--database", url, "--downgrade", "--to", "base").output.startswith(
        "database at base"
    )
    assert _tables(url) == set()


def test_an_unsupported_database_is_refused_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from qlcapsule.cli import main

    result = CliRunner().invoke(main, ["catalog", "migrate", "--database", "mysql://db/catalog"])
    assert result.exit_code == 2
    assert result.output.strip().endswith(
        "unsupported URL scheme 'mysql'; use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    )
    assert "Traceback" not in result.output


@pytest.mark.e2e
def test_readyz_reports_an_unreachable_database(postgres, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from catalog_fixtures import LiveServer, free_port

    from qlcapsule_server.config import Settings

    # nothing listens on this port: the server starts (no migration) and says why it is not ready
    server = LiveServer(Settings(database_url=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/x", migrate=False))
    try:
        status, answer = server.call("/readyz")
        assert status == 503 and answer == {"status": "unavailable", "error": "database unreachable: OperationalError"}
    finally:
        server.stop()
