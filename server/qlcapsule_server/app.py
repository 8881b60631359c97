"""The FastAPI application: ``create_app(settings)``.

The routes live in ``routes_ingest`` (publish, delivery status, sync), ``routes_catalog`` (the queries and the
event stream) and ``routes_webhooks``; what they share is in ``web``. Here: the service's state, its start and
stop (migrations, the event hub), the probes, one-line errors, metrics and the request log. Handlers are plain
functions FastAPI runs in its thread pool, each one transaction.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations at runtime.
import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from qlcapsule import InputError, QlcapsuleError, RemoteError, UsageError, VerificationError, __version__

from . import db, routes_catalog, routes_ingest, routes_webhooks, webhooks
from .catalog import Catalog
from .config import Settings
from .events import Hub
from .logs import log
from .metrics import Metrics
from .pages import install as install_pages
from .verify import load_keys
from .web import KEYID, ApiError, Service

#: ``KEYID`` is re-exported: it was defined here before the routes moved to their own modules
__all__ = ["KEYID", "create_app"]


def _status_of(exc: QlcapsuleError) -> int:
    if isinstance(exc, VerificationError):
        return 422
    if isinstance(exc, RemoteError):
        return 503
    if isinstance(exc, (InputError, UsageError)):
        return 400
    return 500


def create_app(settings: Settings) -> FastAPI:
    engine = db.make_engine(settings.database_url)
    sessions = db.session_factory(engine)
    keys = load_keys(settings.trust_file)  # a bad trust file stops the start: it is the operator's input

    def sizes() -> dict[str, int]:
        with db.transaction(sessions) as session:
            return Catalog(session).sizes()

    svc = Service(settings, engine, sessions, keys, Metrics(sizes), Hub(sessions))
    sending: set[Any] = set()

    def send_webhooks(events: list[dict[str, Any]]) -> None:

        task = asyncio.create_task(run_in_threadpool(webhooks.dispatch, sessions, events))
        sending.add(task)  # held until done: retries sleep in a worker thread, never in the event loop
        task.add_done_callback(sending.discard)

    svc.hub.listeners.append(send_webhooks)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate:
            db.upgrade(engine)
        log("server.start", database=engine.url.render_as_string(hide_password=True), trusted_keys=len(keys))
        if not keys:
            log("server.no_trusted_keys", logging.WARNING, reason="no publication can be verified; give serve --trust")
        await svc.hub.start()
        yield
        await svc.hub.stop()
        engine.dispose()
        log("server.stop")

    app = FastAPI(
        title="qlcapsule catalog",
        version=__version__,
        description="Every capsule, version, signature, artifact and delivery (docs/server.md).",
        lifespan=lifespan,
    )
    app.state.service = svc
    # the same objects under the names create_app gave them before the routes moved out (other areas read them)
    app.state.settings, app.state.engine, app.state.metrics, app.state.hub = settings, engine, svc.metrics, svc.hub
    _errors(app)
    _observe(app, svc.metrics)
    _probes(app, svc)
    for module in (routes_ingest, routes_catalog, routes_webhooks):
        app.include_router(module.router)
    # the web pages (docs/pages.md): the same sessions, tokens and event hub

    install_pages(app)
    return app


def _errors(app: FastAPI) -> None:
    """Every error is ``{"error": "one line"}``; an unexpected one is logged with its traceback, never sent."""

    @app.exception_handler(ApiError)
    def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(QlcapsuleError)
    def _qlcapsule_error(_request: Request, exc: QlcapsuleError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=_status_of(exc))

    @app.exception_handler(RequestValidationError)
    def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(Exception)
    def _internal(request: Request, exc: Exception) -> JSONResponse:
        route = getattr(request.scope.get("route"), "path", None)
        log("http.internal_error", logging.ERROR, route=route, error=type(exc).__name__)
        logging.getLogger("qlcapsule.server").error("internal error", exc_info=exc)
        return JSONResponse({"error": "internal error (logged on the server)"}, status_code=500)


def _observe(app: FastAPI, metrics: Metrics) -> None:
    """Requests by route and status, their latency, and one log line each."""

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Any]) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response: Response = await call_next(request)
            status = response.status_code
            return response
        finally:
            # the route template (never the raw path: unbounded label values); /docs and /openapi.json have
            # no template of their own
            route = getattr(request.scope.get("route"), "path", None) or (
                request.url.path if status != 404 else "unmatched"
            )
            elapsed = time.perf_counter() - start
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.latency.labels(request.method, route).observe(elapsed)
            log("http.request", method=request.method, route=route, status=status, ms=round(elapsed * 1000, 1))


def _probes(app: FastAPI, svc: Service) -> None:
    @app.get("/healthz", tags=["probes"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"])
    def readyz() -> JSONResponse:
        """The database answers and its schema is the newest this server knows."""
        try:
            current = db.current_revision(svc.engine)
        except RemoteError as exc:
            return JSONResponse({"status": "unavailable", "error": exc.message}, status_code=503)
        head = db.head_revision()
        if current != head:
            return JSONResponse({"status": "migrating", "database": current, "expected": head}, status_code=503)
        return JSONResponse({"status": "ready", "database": current})

    @app.get("/metrics", tags=["probes"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
