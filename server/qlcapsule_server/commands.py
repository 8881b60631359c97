"""``qlcapsule serve`` and ``qlcapsule catalog ...``: thin click commands over the server's modules.

The server's dependencies are imported inside each command; without them the command says which extra to
install (exit 2) instead of failing at import.
"""

from __future__ import annotations

from typing import Any

import click

from qlcapsule import UsageError, emit, json_option, read_secret

from .config import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_DEPTH,
    ENV_DATABASE,
    POLICIES,
    Settings,
    check_database_url,
    default_database_url,
)


def _need_extra() -> None:
    missing = []
    for module in ("fastapi", "uvicorn", "sqlalchemy", "alembic", "prometheus_client", "platformdirs"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UsageError(f'the catalog service needs {", ".join(missing)}: pip install "qlcapsule[server]"')


database_option = click.option(
    "--database",
    metavar="URL",
    envvar=ENV_DATABASE,
    default=None,
    help=f"sqlite:///PATH or postgresql+psycopg://USER@HOST/DB (${ENV_DATABASE}; default: SQLite in the user's "
    "data directory).",
)


def _engine(database: str | None) -> Any:
    _need_extra()
    from . import db  # noqa: PLC0415 -- start-up: these commands load with every qlcapsule command line; the service's modules (and the [server] extra) only when one runs

    return db.make_engine(check_database_url(database or default_database_url()))


@click.command()
@database_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option(
    "--trust",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Trust file: the keys publications are verified against ($QLCAPSULE_TRUST_FILE when not given).",
)
@click.option(
    "--unsigned", type=click.Choice(POLICIES), default="refuse", show_default=True, help="Unsigned publications."
)
@click.option(
    "--untrusted",
    type=click.Choice(POLICIES),
    default="refuse",
    show_default=True,
    help="Publications no trusted key signed.",
)
@click.option("--anonymous-read", is_flag=True, help="Serve the read API without a token.")
@click.option(
    "--max-body",
    default=DEFAULT_MAX_BODY,
    show_default=True,
    type=click.IntRange(1024),
    help="Largest request body, bytes.",
)
@click.option(
    "--max-depth",
    default=DEFAULT_MAX_DEPTH,
    show_default=True,
    type=click.IntRange(4, 256),
    help="Deepest JSON nesting.",
)
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the schema on start (/readyz stays 503 until it is).")
@click.option(
    "--graceful-timeout",
    default=20,
    show_default=True,
    type=click.IntRange(0),
    help="Seconds in-flight requests get on SIGTERM.",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@json_option
def serve(
    database: str | None,
    host: str,
    port: int,
    trust: str | None,
    unsigned: str,
    untrusted: str,
    anonymous_read: bool,
    max_body: int,
    max_depth: int,
    no_migrate: bool,
    graceful_timeout: int,
    log_level: str,
    as_json: bool,
) -> None:
    """Run the catalog service (HTTP API, OpenAPI at /docs, /metrics). Needs the [server] extra.

    Logs are JSON lines on stderr; with --json, one answer on stdout when the service has stopped.
    """
    _need_extra()
    import uvicorn  # noqa: PLC0415 -- extra: uvicorn ([server]) loads only for 'serve'

    from .app import create_app  # noqa: PLC0415 -- start-up: these commands load with every qlcapsule command line; the service's modules (and the [server] extra) only when one runs
    from .logs import log_config  # noqa: PLC0415 -- start-up: these commands load with every qlcapsule command line; the service's modules (and the [server] extra) only when one runs

    settings = Settings(
        database_url=database or default_database_url(),
        trust_file=trust,
        unsigned=unsigned,
        untrusted=untrusted,
        anonymous_read=anonymous_read,
        max_body=max_body,
        max_depth=max_depth,
        migrate=not no_migrate,
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=log_config(log_level),
        access_log=False,
        timeout_graceful_shutdown=graceful_timeout,
        server_header=False,
    )
    _graceful_server(app)(config).run()
    emit(as_json, {"host": host, "port": port, "stopped": True}, None)


def _graceful_server(app: Any) -> Any:
    import uvicorn  # noqa: PLC0415 -- extra: uvicorn ([server]) loads only for 'serve'

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; a finished graceful stop is what the
        signal asked for, so ``serve`` exits 0 with its last JSON log line instead of the CLI's interruption."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            app.state.hub.close_soon()  # event streams end now, not at the graceful timeout
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return GracefulServer


@click.group()
def catalog() -> None:
    """The catalog service's administration and client commands."""


@catalog.command()
@database_option
@click.option("--to", "revision", default="head", show_default=True, help="Revision to migrate to ('base': none).")
@click.option("--downgrade", is_flag=True, help="Migrate down to --to (which must then be given).")
@json_option
def migrate(database: str | None, revision: str, downgrade: bool, as_json: bool) -> None:
    """Upgrade (or downgrade) the catalog database's schema."""
    from . import db  # noqa: PLC0415 -- start-up: these commands load with every qlcapsule command line; the service's modules (and the [server] extra) only when one runs

    if downgrade and revision == "head":
        raise UsageError("--downgrade needs --to REVISION (or --to base)")
    engine = _engine(database)
    try:
        before = db.current_revision(engine)
        if downgrade:
            db.downgrade(engine, revision)
        else:
            db.upgrade(engine, revision)
        now = db.current_revision(engine)
        emit(as_json, {"revision": now, "was": before}, f"database at {now or 'base'} (was {before or 'base'})")
    finally:
        engine.dispose()


@catalog.group()
def token() -> None:
    """API tokens (stored hashed; shown once)."""


@token.command("create")
@database_option
@click.option("--name", required=True, help="Who or what holds it (unique).")
@click.option(
    "--scope", "scopes", multiple=True, default=("read",), show_default=True, help="read, publish, admin. Repeatable."
)
@json_option
def token_create(database: str | None, name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create a token; it is printed once and only its SHA-256 is kept."""
    from . import db, tokens  # noqa: PLC0415 -- start-up: these commands load with every qlcapsule command line; the service's modules (and the [server] extra) only when one runs

    engine = _engine(database)
    try:
        db.upgrade(engine)
        with db.transaction(db.session_factory(engine)) as session:
            secret = tokens.create(session, name, list(scopes))
    finally:
        engine.dispose()

    def text() -> None:
        click.echo(secret)
        click.echo(f"token {name!r} ({', '.join(sorted(set(scopes)))}): shown once, store it now", err=True)

    emit(as_json, {"name": name, "scopes": sorted(set(scopes)), "token": secret}, text)


@token.command("revoke")
@database_option
@click.option("--name", required=True)
def token_revoke(database: str | None, name: str) -> None:
    """Revoke a token by name."""
    from . import db, tokens  # noqa: PLC0415 -- start-up: these commands load with every qlcapsule command line; the service's modules (and the [server] extra) only when one runs

    engine = _engine(database)
    try:
        with db.transaction(db.session_factory(engine)) as session:
            done = tokens.revoke(session, name)
    finally:
        engine.dispose()
    if not done:
        raise UsageError(f"--name: no live token named {name!r}")
    click.echo(f"revoked {name}")


def _client_options(command: Any) -> Any:
    """``--url`` and ``--token-env``: where a client command sends, and the variable holding its token."""
    command = click.option(
        "--token-env",
        default="QLCAPSULE_CATALOG_TOKEN",
        show_default=True,
        metavar="NAME",
        help="Environment variable holding a publish token (the same default as ship --publish-token-env).",
    )(command)
    return click.option(
        "--url", required=True, metavar="URL", help="The catalog server (https, or http on this machine)."
    )(command)


@catalog.command()
@_client_options
@click.argument("report", type=click.File("rb"))
@json_option
def publish(url: str, token_env: str, report: Any, as_json: bool) -> None:
    """Publish REPORT.json (the output of 'qlcapsule ship --json'; '-' for stdin) to a catalog server."""
    from .bounds import load_json  # noqa: PLC0415 -- start-up: these commands load with every qlcapsule command line; the service's modules (and the [server] extra) only when one runs
    from .client import publish as publish_report  # noqa: PLC0415 -- start-up: these commands load with every qlcapsule command line; the service's modules (and the [server] extra) only when one runs

    secret = read_secret(token_env, what="a catalog token with the publish scope")
    assert secret is not None
    name = "<stdin>" if report.name == "<stdin>" else report.name
    data = load_json(
        report.read(DEFAULT_MAX_BODY + 1), max_bytes=DEFAULT_MAX_BODY, max_depth=DEFAULT_MAX_DEPTH, where=name
    )
    results = publish_report(url, secret, data)

    def text() -> None:
        for r in results:
            what = "published" if r.get("created") else "already published"
            sig = r.get("signature_status")
            click.echo(f"{what} {r.get('ref')} sha256:{str(r.get('digest'))[:12]} signature {sig}")
        if not results:
            click.echo("nothing to publish (no capsule in the report shipped successfully)", err=True)

    emit(as_json, {"published": results}, text)


@catalog.command("sync")
@_client_options
@click.argument("repo")
@json_option
def sync_command(url: str, token_env: str, repo: str, as_json: bool) -> None:
    """Index the capsule versions of REPO (a version store: a path or a git URL) into the catalog.

    Only commits newer than the last sync are read; runs at once are safe. Each version is judged by the
    server's trust policy like a publication; refused ones are listed, and the exit code is then 1.
    """
    from .sync import sync  # noqa: PLC0415 -- start-up: these commands load with every qlcapsule command line; the service's modules (and the [server] extra) only when one runs

    secret = read_secret(token_env, what="a catalog token with the publish scope")
    assert secret is not None
    result = sync(url, secret, repo)

    def text() -> None:
        click.echo(
            f"{result.repository}: {result.refs} ref(s), {result.published} version(s) published, "
            f"{result.unchanged} already there, {len(result.refused)} refused, {len(result.skipped)} skipped"
        )
        for line in result.refused:
            click.echo(f"refused {line}", err=True)
        for line in result.skipped:
            click.echo(f"skipped {line}", err=True)

    emit(as_json, result.to_dict(), text)
    if result.refused:
        raise SystemExit(1)
