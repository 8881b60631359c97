"""The qlcapsule catalog service: every capsule, version, signature, artifact and delivery, with an HTTP API.

``pip install "qlcapsule[server]"`` installs the dependencies; the plugin (``plugin.py``, entry point
``commands.server``) adds ``qlcapsule serve`` and ``qlcapsule catalog`` through the
``qlcapsule_register_commands`` hook. It is a plugin like any other: it imports only ``qlcapsule``'s public API
(an import-linter contract holds it to that).

Modules, each importing only those below it (an import-linter layers contract holds them to it):

    plugin       the hook implementation (imports click only: it runs for ``qlcapsule --help``)
    commands     the click commands: serve, catalog migrate/token/publish/sync
    app          the FastAPI application: start and stop, probes, errors, metrics, the request log
    routes_*     the routes: ingest (publish, delivery status, sync), catalog (queries, events), webhooks
    web          what the routes share: authentication, bounded bodies, ETags, pages
    sync         ``catalog sync``: a version store's new commits, through the publish API
    client       the Python client: publish a ship report (``catalog publish``, ``ship --publish``)
    gitstore     getting at a version store (a path, or a git URL mirrored); qlcapsule.read_store reads it
    webhooks     signed webhook sends, claimed once per event across processes
    catalog      the repository: idempotent writes keyed by digest, and the queries
    events       the event hub: new delivery events to SSE subscribers and webhooks (LISTEN/NOTIFY on PostgreSQL)
    verify       a publication's signatures against the server's own trust policy
    tokens       API tokens: created once, stored hashed, with scopes
    db           engines, sessions and the Alembic migrations shipped in ``migrations/``
    models       the SQLAlchemy 2 tables
    schemas      the request bodies (pydantic), bounded
    metrics, logs, config, bounds
"""

from __future__ import annotations
