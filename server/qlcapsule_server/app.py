"""The FastAPI application: ``create_app(settings)``.

Every request body is bounded before it is parsed (``Content-Length`` and the bytes actually read against
``max_body``; JSON nesting against ``max_depth``). Every write needs a token with the right scope and is
audited; reads need a ``read`` token unless the operator allowed anonymous reads. Errors are one line
(``{"error": ...}``) that never echoes a token. Handlers are plain functions (FastAPI runs them in its thread
pool), each one transaction.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations at runtime, and the
# dependency aliases (Reader, Publisher) are local to create_app.
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from sqlalchemy import select

from qlcapsule import InputError, QlcapsuleError, RemoteError, UsageError, VerificationError, __version__, parse_lock

from . import db, tokens, webhooks
from .bounds import load_json
from .catalog import MAX_LIMIT, Catalog
from .config import Settings
from .events import Filter, Hub
from .logs import log
from .metrics import Metrics
from .schemas import DeliveryStatusIn, Publication, Published, SyncMove, WebhookIn
from .verify import judge, load_keys

API = "/api/v1"
KEYID = r"^[A-Za-z0-9:_.+/=-]{8,128}$"
#: row ids fit a signed 64-bit integer on both databases
MAX_ID = 2**63 - 1


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _status_of(exc: QlcapsuleError) -> int:
    if isinstance(exc, VerificationError):
        return 422
    if isinstance(exc, RemoteError):
        return 503
    if isinstance(exc, (InputError, UsageError)):
        return 400
    return 500


def create_app(settings: Settings) -> FastAPI:  # noqa: C901 - the routes are closures over the app's state
    engine = db.make_engine(settings.database_url)
    sessions = db.session_factory(engine)
    keys = load_keys(settings.trust_file)  # a bad trust file stops the start, it is the operator's input

    def sizes() -> dict[str, int]:
        with db.transaction(sessions) as session:
            return Catalog(session).sizes()

    metrics = Metrics(sizes)
    hub = Hub(sessions)
    sending: set[Any] = set()

    def send_webhooks(events: list[dict[str, Any]]) -> None:
        import asyncio

        from starlette.concurrency import run_in_threadpool

        task = asyncio.create_task(run_in_threadpool(webhooks.dispatch, sessions, events))
        sending.add(task)  # held until done: retries sleep in a worker thread, never in the event loop
        task.add_done_callback(sending.discard)

    hub.listeners.append(send_webhooks)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate:
            db.upgrade(engine)
        log("server.start", database=engine.url.render_as_string(hide_password=True), trusted_keys=len(keys))
        if not keys:
            log("server.no_trusted_keys", logging.WARNING, reason="no publication can be verified; give serve --trust")
        await hub.start()
        yield
        await hub.stop()
        engine.dispose()
        log("server.stop")

    app = FastAPI(
        title="qlcapsule catalog",
        version=__version__,
        description="Every capsule, version, signature, artifact and delivery (docs/server.md).",
        lifespan=lifespan,
    )
    app.state.settings, app.state.engine, app.state.metrics, app.state.hub = settings, engine, metrics, hub

    # -- errors, metrics and the request log --------------------------------------
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
        # the traceback goes to the log, never to the client
        log(
            "http.internal_error",
            logging.ERROR,
            route=getattr(request.scope.get("route"), "path", None),
            error=type(exc).__name__,
        )
        logging.getLogger("qlcapsule.server").error("internal error", exc_info=exc)
        return JSONResponse({"error": "internal error (logged on the server)"}, status_code=500)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Any]) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response: Response = await call_next(request)
            status = response.status_code
            return response
        finally:
            # the route template (never the raw path: unbounded label values); /docs and /openapi.json have no
            # template of their own
            route = getattr(request.scope.get("route"), "path", None) or (
                request.url.path if status != 404 else "unmatched"
            )
            elapsed = time.perf_counter() - start
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.latency.labels(request.method, route).observe(elapsed)
            log("http.request", method=request.method, route=route, status=status, ms=round(elapsed * 1000, 1))

    # -- authentication --------------------------------------------------------
    def principal(request: Request, scope: str) -> tokens.Principal:
        header = request.headers.get("authorization", "")
        if not header:
            if scope == "read" and settings.anonymous_read:
                return tokens.ANONYMOUS
            raise ApiError(401, "a bearer token is required (Authorization: Bearer qlc_...)")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token:
            raise ApiError(401, "expected Authorization: Bearer <token>")
        with db.transaction(sessions) as session:
            found = tokens.authenticate(session, token.strip())
        if found is None:
            raise ApiError(401, "unknown or revoked token")
        if not found.allows(scope):
            raise ApiError(403, f"token {found.name!r} lacks the {scope!r} scope")
        return found

    def reader(request: Request) -> tokens.Principal:
        return principal(request, "read")

    def publisher(request: Request) -> tokens.Principal:
        return principal(request, "publish")

    def administrator(request: Request) -> tokens.Principal:
        return principal(request, "admin")

    Reader = Annotated[tokens.Principal, Depends(reader)]
    Publisher = Annotated[tokens.Principal, Depends(publisher)]
    Admin = Annotated[tokens.Principal, Depends(administrator)]
    Offset = Annotated[int, Query(ge=0, le=10**9)]
    HookId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
    Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]

    async def body(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > settings.max_body):
            raise ApiError(413, f"request body: at most {settings.max_body} bytes are accepted")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_body:
                raise ApiError(413, f"request body: at most {settings.max_body} bytes are accepted")
            chunks.append(chunk)
        return load_json(b"".join(chunks), max_bytes=settings.max_body, max_depth=settings.max_depth)

    def model(cls: Any, data: Any) -> Any:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise ApiError(422, f"request body: {where}: {first['msg']}") from None

    def etagged(request: Request, data: Any) -> Response:
        raw = json.dumps(jsonable_encoder(data), separators=(",", ":"), sort_keys=True).encode()
        tag = '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'
        if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers={"ETag": tag})
        return Response(raw, media_type="application/json", headers={"ETag": tag})

    def page(request: Request, found: tuple[list[dict[str, Any]], int], offset: int, limit: int) -> Response:
        items, total = found
        return etagged(request, {"items": items, "total": total, "offset": offset, "limit": limit})

    # -- probes and metrics ---------------------------------------------------------
    @app.get("/healthz", tags=["probes"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"])
    def readyz() -> JSONResponse:
        """The database answers and its schema is the newest this server knows."""
        try:
            current = db.current_revision(engine)
        except RemoteError as exc:
            return JSONResponse({"status": "unavailable", "error": exc.message}, status_code=503)
        head = db.head_revision()
        if current != head:
            return JSONResponse({"status": "migrating", "database": current, "expected": head}, status_code=503)
        return JSONResponse({"status": "ready", "database": current})

    @app.get("/metrics", tags=["probes"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- ingestion ----------------------------------------------------------------
    @app.post(
        f"{API}/publish",
        tags=["ingest"],
        response_model=Published,
        openapi_extra=_body_schema(Publication),
    )
    async def publish(request: Request, who: Publisher) -> Response:
        """Record one shipped capsule (scope ``publish``). Its signatures are checked against the server's
        trust policy; unsigned or untrusted publications are refused (422) or recorded, per ``serve`` flags."""
        pub: Publication = model(Publication, await body(request))
        return await _run(lambda: _publish(pub, who))

    def _publish(pub: Publication, who: tokens.Principal) -> JSONResponse:
        lock = parse_lock(pub.lock.encode("utf-8"), "lock")
        shipped = pub.capsule
        if (shipped.name, shipped.version, shipped.digest) != (lock.name, lock.version, lock.digest):
            raise ApiError(
                422,
                f"capsule: {shipped.name}@{shipped.version} sha256:{shipped.digest[:16]}... is not the lock's "
                f"{lock.name}@{lock.version} sha256:{lock.digest[:16]}...",
            )
        if shipped.dry_run:
            raise ApiError(422, "capsule.dry_run: a dry run shipped nothing; publish a real ship report")
        try:
            verdict = judge(lock, pub.envelope.encode("utf-8") if pub.envelope else None, keys)
        except VerificationError as exc:
            metrics.publishes.labels("refused", "invalid").inc()
            _audit(who, "publish", f"{lock.name}@{lock.version}", "refused: invalid signature")
            raise ApiError(422, exc.message) from None
        policy = {"unsigned": settings.unsigned, "untrusted": settings.untrusted}.get(verdict.status)
        if policy == "refuse":
            metrics.publishes.labels("refused", verdict.status).inc()
            _audit(who, "publish", f"{lock.name}@{lock.version}", f"refused: {verdict.status}")
            raise ApiError(
                422,
                f"{lock.name}@{lock.version}: {verdict.status}: {verdict.reason} (the server refuses {verdict.status} versions)",
            )
        with db.transaction(sessions, write=True) as session:
            result = Catalog(session).publish(pub, lock, verdict, who.name)
        metrics.publishes.labels("created" if result["created"] else "unchanged", verdict.status).inc()
        return JSONResponse(result, status_code=201 if result["created"] else 200)

    def _audit(who: tokens.Principal, action: str, subject: str, outcome: str) -> None:
        with db.transaction(sessions, write=True) as session:
            Catalog(session).audit(who.name, action, subject, outcome)

    @app.post(
        f"{API}/deliveries",
        tags=["ingest"],
        openapi_extra=_body_schema(DeliveryStatusIn),
    )
    async def delivery_status(request: Request, who: Publisher) -> Response:
        """A delivery step's status (scope ``publish``): planned, uploading, verifying, delivered or failed."""
        report: DeliveryStatusIn = model(DeliveryStatusIn, await body(request))

        def run() -> JSONResponse:
            with db.transaction(sessions, write=True) as session:
                catalog = Catalog(session)
                vid = catalog.version_id(report.capsule, report.version)
                if vid is None:
                    raise ApiError(404, f"{report.capsule}@{report.version} is not in the catalog")
                _, changed = catalog.delivery_status(
                    vid,
                    report.target,
                    report.provider,
                    report.status,
                    url=report.url,
                    detail=report.detail,
                    nbytes=report.bytes,
                )
                catalog.audit(
                    who.name, "delivery", f"{report.capsule}@{report.version} -> {report.target}", report.status
                )
            metrics.deliveries.labels(report.provider, report.status).inc()
            return JSONResponse({"status": report.status, "changed": changed})

        return await _run(run)

    @app.get(f"{API}/sync", tags=["ingest"])
    def sync_state(who: Publisher, repository: Annotated[str, Query(min_length=1, max_length=2048)]) -> dict[str, Any]:
        """The commit each head ref of ``repository`` was indexed up to (``catalog sync``; scope ``publish``)."""
        with db.transaction(sessions) as session:
            return {"repository": repository, "refs": Catalog(session).sync_state(repository)}

    @app.post(f"{API}/sync", tags=["ingest"], openapi_extra=_body_schema(SyncMove))
    async def sync_move(request: Request, who: Publisher) -> Response:
        """Move a ref's record from ``previous`` to ``commit`` (compare-and-swap; ``moved`` false: another run
        moved it first)."""
        move: SyncMove = model(SyncMove, await body(request))

        def run() -> Response:
            with db.transaction(sessions, write=True) as session:
                catalog = Catalog(session)
                moved = catalog.move_sync_state(move.repository, move.ref, move.commit, move.previous)
                catalog.audit(
                    who.name, "sync", f"{move.repository} {move.ref} {move.commit}", "moved" if moved else "raced"
                )
            return JSONResponse({"moved": moved})

        return await _run(run)

    @app.get(f"{API}/events", tags=["events"], response_class=StreamingResponse)
    def events(
        request: Request,
        _who: Reader,
        capsule: Annotated[str | None, Query(max_length=63)] = None,
        target: Annotated[str | None, Query(max_length=256)] = None,
        status: Annotated[str | None, Query(pattern=r"^(planned|uploading|verifying|delivered|failed)$")] = None,
        after: Annotated[
            int | None, Query(ge=0, le=MAX_ID, description="Resume after this event id (as Last-Event-ID)")
        ] = None,
    ) -> StreamingResponse:
        """Delivery status changes as Server-Sent Events (``event: delivery``, ``id`` = the timeline row),
        filtered by capsule, target and status; resumable with ``Last-Event-ID``."""
        resume = request.headers.get("last-event-id")
        if resume is not None:
            if not resume.isdigit() or int(resume) > MAX_ID:
                raise ApiError(400, "Last-Event-ID: expected an event id (a number)")
            after = int(resume)
        stream = hub.stream(Filter(capsule, target, status), after)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    # -- webhooks ---------------------------------------------------------------------
    @app.post(f"{API}/webhooks", tags=["webhooks"], status_code=201, openapi_extra=_body_schema(WebhookIn))
    async def webhook_create(request: Request, who: Admin) -> Response:
        """Subscribe a URL to delivery events (scope ``admin``); the secret is returned once."""
        wanted: WebhookIn = model(WebhookIn, await body(request))
        unknown = sorted(set(wanted.statuses) - {"planned", "uploading", "verifying", "delivered", "failed"})
        if unknown:
            raise ApiError(422, f"request body: statuses: unknown status {unknown[0]!r}")

        def run() -> Response:
            with db.transaction(sessions, write=True) as session:
                hook_id, secret = webhooks.create(session, wanted.url, wanted.statuses, wanted.secret)
                Catalog(session).audit(who.name, "webhook.create", f"{hook_id} {wanted.url}", "created")
            return JSONResponse({"id": hook_id, "secret": secret}, status_code=201)

        return await _run(run)

    @app.get(f"{API}/webhooks", tags=["webhooks"])
    def webhook_list(request: Request, _who: Admin) -> Response:
        """The subscriptions (never their secrets)."""
        from .models import WebhookRow

        with db.transaction(sessions) as session:
            rows = session.scalars(select(WebhookRow).order_by(WebhookRow.id))
            return etagged(request, {"items": [webhooks.describe(r) for r in rows]})

    @app.get(f"{API}/webhooks/{{hook_id}}/deliveries", tags=["webhooks"])
    def webhook_log(request: Request, hook_id: HookId, _who: Admin) -> Response:
        """The delivery log of one subscription, newest first."""
        with db.transaction(sessions) as session:
            return etagged(request, {"items": webhooks.log(session, hook_id)})

    @app.delete(f"{API}/webhooks/{{hook_id}}", tags=["webhooks"], status_code=204)
    def webhook_delete(hook_id: HookId, who: Admin) -> Response:
        """Stop sending to a subscription (its log is kept)."""
        from .models import WebhookRow

        with db.transaction(sessions, write=True) as session:
            row = session.get(WebhookRow, hook_id)
            if row is None:
                raise ApiError(404, f"no webhook {hook_id}")
            row.active = False
            Catalog(session).audit(who.name, "webhook.delete", str(hook_id), "deactivated")
        return Response(status_code=204)

    # -- queries ----------------------------------------------------------------------
    @app.get(f"{API}/capsules", tags=["catalog"])
    def capsules(
        request: Request,
        _who: Reader,
        offset: Offset = 0,
        limit: Limit = 50,
        q: Annotated[str | None, Query(max_length=63)] = None,
    ) -> Response:
        """Capsules by name (``q``: a substring), with the repositories they live in."""
        with db.transaction(sessions) as session:
            return page(request, Catalog(session).capsules(offset, limit, q), offset, limit)

    @app.get(f"{API}/capsules/{{name}}/versions", tags=["catalog"])
    def versions(request: Request, name: str, _who: Reader, offset: Offset = 0, limit: Limit = 50) -> Response:
        """A capsule's versions, newest first, with their signature verdicts, refs and template."""
        with db.transaction(sessions) as session:
            return page(request, Catalog(session).versions(name, offset, limit), offset, limit)

    @app.get(f"{API}/capsules/{{name}}/versions/{{version}}", tags=["catalog"])
    def version(request: Request, name: str, version: str, _who: Reader) -> Response:
        """One version with its files (from the lock), findings and artifacts."""
        with db.transaction(sessions) as session:
            found = Catalog(session).version(name, version)
        if found is None:
            raise ApiError(404, f"{name}@{version} is not in the catalog")
        return etagged(request, found)

    @app.get(f"{API}/capsules/{{name}}/versions/{{version}}/deliveries", tags=["catalog"])
    def deliveries(request: Request, name: str, version: str, _who: Reader) -> Response:
        """Where ``name@version`` was delivered, each delivery's status and its timeline."""
        with db.transaction(sessions) as session:
            found = Catalog(session).deliveries(name, version)
        if found is None:
            raise ApiError(404, f"{name}@{version} is not in the catalog")
        return etagged(request, {"items": found})

    @app.get(f"{API}/capsules/{{name}}/lineage", tags=["catalog"])
    def lineage(request: Request, name: str, _who: Reader, offset: Offset = 0, limit: Limit = 500) -> Response:
        """The versions as a graph: each node's commit and its parents' commits, newest first."""
        with db.transaction(sessions) as session:
            return page(request, Catalog(session).lineage(name, offset, limit), offset, limit)

    @app.get(f"{API}/capsules/{{name}}/diff", tags=["catalog"])
    def diff(
        request: Request,
        name: str,
        _who: Reader,
        old: Annotated[str, Query(alias="from", min_length=1, max_length=256)],
        new: Annotated[str, Query(alias="to", min_length=1, max_length=256)],
    ) -> Response:
        """Files added, removed and changed between two versions, from their locks."""
        with db.transaction(sessions) as session:
            found = Catalog(session).diff(name, old, new)
        if found is None:
            raise ApiError(404, f"{name}@{old} or {name}@{new} is not in the catalog")
        return etagged(request, found)

    @app.get(f"{API}/capsules/{{name}}/scores", tags=["catalog"])
    def scores(request: Request, name: str, _who: Reader, offset: Offset = 0, limit: Limit = 50) -> Response:
        """The validation score history, newest first."""
        with db.transaction(sessions) as session:
            return page(request, Catalog(session).scores(name, offset, limit), offset, limit)

    @app.get(f"{API}/templates", tags=["catalog"])
    def templates(request: Request, _who: Reader) -> Response:
        """Template versions and the capsules generated from each."""
        with db.transaction(sessions) as session:
            return etagged(request, {"items": Catalog(session).templates()})

    @app.get(f"{API}/files/{{sha256}}/versions", tags=["catalog"])
    def containing(
        request: Request,
        sha256: Annotated[str, PathParam(pattern=r"^[0-9a-f]{64}$")],
        _who: Reader,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> Response:
        """Versions whose lock lists a file with this SHA-256."""
        with db.transaction(sessions) as session:
            return page(request, Catalog(session).containing(sha256, offset, limit), offset, limit)

    @app.get(f"{API}/keys/{{keyid}}/versions", tags=["catalog"])
    def signed_by(
        request: Request,
        keyid: Annotated[str, PathParam(pattern=KEYID)],
        _who: Reader,
        only: bool = False,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> Response:
        """Versions a trusted key (id or a prefix of 8+ characters) verifiably signed; ``only=true``: those no
        other trusted key signed."""
        with db.transaction(sessions) as session:
            return page(
                request, Catalog(session).signed_by(keyid, only=only, offset=offset, limit=limit), offset, limit
            )

    @app.get(f"{API}/templates/behind", tags=["catalog"])
    def behind(request: Request, _who: Reader, at_least: Annotated[int, Query(ge=0, le=10_000)] = 1) -> Response:
        """Capsules whose newest version was generated from a template ``at_least`` versions behind the newest."""
        with db.transaction(sessions) as session:
            return etagged(request, {"items": Catalog(session).behind(at_least)})

    # the web pages (docs/pages.md): the same sessions, tokens and event hub
    from .pages import install as install_pages

    install_pages(app, sessions, settings)
    return app


def _body_schema(model: Any) -> dict[str, Any]:
    """The OpenAPI request body of a handler that reads (and bounds) its body itself."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _run(work: Callable[[], Response]) -> Response:
    """Blocking database work off the event loop."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(work)
