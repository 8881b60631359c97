"""The qlcapsule catalog service: every capsule, version, signature, artifact and delivery, with an HTTP API.

``pip install "qlcapsule[server]"`` installs the dependencies; the plugin (``plugin.py``, entry point
``commands.server``) adds ``qlcapsule serve`` and ``qlcapsule catalog`` through the
``qlcapsule_register_commands`` hook. It is a plugin like any other: it imports only ``qlcapsule``'s public API
(an import-linter contract holds it to that).

Modules, each importing only those below it:

    plugin       the hook implementation (imports click only: it runs for ``qlcapsule --help``)
    commands     the click commands: serve, catalog token/publish/migrate
    app          the FastAPI application: routes, limits, authentication, metrics, logs
    client       the Python client: publish a ship report (``catalog publish``, ``ship --publish``)
    catalog      the repository: idempotent writes keyed by digest, the queries
    verify       a publication's signatures against the server's own trust policy
    tokens       API tokens: created once, stored hashed, with scopes
    db           engines, sessions and the Alembic migrations shipped in ``migrations/``
    models       the SQLAlchemy 2 tables
    config       settings and defaults (the database under the user's data directory)
    bounds       size and shape checks of untrusted JSON before any work
"""

from __future__ import annotations
