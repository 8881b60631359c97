"""Alembic's environment: run on the engine ``db.upgrade``/``db.downgrade`` put in the config."""

from __future__ import annotations

from alembic import context

from qlcapsule_server.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
