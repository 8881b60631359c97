"""Alembic's environment: run on the engine ``db.upgrade``/``db.downgrade`` put in the config.

Several ``serve`` processes starting together on one empty database (replicas that migrate on
start) migrate it once: the others wait, then find it current. On PostgreSQL the migration runs
under a transaction-scoped advisory lock; on SQLite its transaction takes the database's write lock
first (``BEGIN IMMEDIATE``: the driver would otherwise run the DDL before any transaction began).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from qlcapsule_server.models import Base

#: the advisory lock's key: any constant the catalog alone uses ("qlcapsul" as 8 bytes)
MIGRATION_LOCK = 0x71_6C_63_61_70_73_75_6C

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
