"""The ways in: publications (checked against the server's trust policy), delivery status, ``catalog sync``.

Each write is one transaction and is audited under the token's name.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations at runtime.
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from qlcapsule import VerificationError, parse_lock

from . import db, tokens
from .catalog import Catalog
from .schemas import DeliveryStatusIn, Publication, Published, SyncMove
from .verify import judge
from .web import API, ApiError, Publisher, Service, blocking, body_schema, model, read_body, service

router = APIRouter(prefix=API, tags=["ingest"])


@router.post("/publish", response_model=Published, openapi_extra=body_schema(Publication))
async def publish(request: Request, who: Publisher) -> Response:
    """Record one shipped capsule (scope ``publish``). Its signatures are checked against the server's trust
    policy; unsigned or untrusted publications are refused (422) or recorded, per ``serve`` flags."""
    pub: Publication = model(Publication, await read_body(request))
    svc = service(request)
    return await blocking(lambda: _publish(svc, pub, who))


def _publish(svc: Service, pub: Publication, who: tokens.Principal) -> JSONResponse:
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
    ref = f"{lock.name}@{lock.version}"
    try:
        verdict = judge(lock, pub.envelope.encode("utf-8") if pub.envelope else None, svc.keys)
    except VerificationError as exc:
        svc.metrics.publishes.labels("refused", "invalid").inc()
        _audit(svc, who, "publish", ref, "refused: invalid signature")
        raise ApiError(422, exc.message) from None
    policy = {"unsigned": svc.settings.unsigned, "untrusted": svc.settings.untrusted}.get(verdict.status)
    if policy == "refuse":
        svc.metrics.publishes.labels("refused", verdict.status).inc()
        _audit(svc, who, "publish", ref, f"refused: {verdict.status}")
        raise ApiError(422, f"{ref}: {verdict.status}: {verdict.reason} (the server refuses {verdict.status} versions)")
    with db.transaction(svc.sessions, write=True) as session:
        result = Catalog(session).publish(pub, lock, verdict, who.name)
    svc.metrics.publishes.labels("created" if result["created"] else "unchanged", verdict.status).inc()
    return JSONResponse(result, status_code=201 if result["created"] else 200)


def _audit(svc: Service, who: tokens.Principal, action: str, subject: str, outcome: str) -> None:
    with db.transaction(svc.sessions, write=True) as session:
        Catalog(session).audit(who.name, action, subject, outcome)


@router.post("/deliveries", openapi_extra=body_schema(DeliveryStatusIn))
async def delivery_status(request: Request, who: Publisher) -> Response:
    """A delivery step's status (scope ``publish``): planned, uploading, verifying, delivered or failed."""
    report: DeliveryStatusIn = model(DeliveryStatusIn, await read_body(request))
    svc = service(request)

    def run() -> Response:
        with db.transaction(svc.sessions, write=True) as session:
            catalog = Catalog(session)
            vid = Catalog(session).version_id(report.capsule, report.version)
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
            catalog.audit(who.name, "delivery", f"{report.capsule}@{report.version} -> {report.target}", report.status)
        svc.metrics.deliveries.labels(report.provider, report.status).inc()
        return JSONResponse({"status": report.status, "changed": changed})

    return await blocking(run)


@router.get("/sync")
def sync_state(
    request: Request, who: Publisher, repository: Annotated[str, Query(min_length=1, max_length=2048)]
) -> dict[str, Any]:
    """The commit each head ref of ``repository`` was indexed up to (``catalog sync``; scope ``publish``)."""
    with db.transaction(service(request).sessions) as session:
        return {"repository": repository, "refs": Catalog(session).sync_state(repository)}


@router.post("/sync", openapi_extra=body_schema(SyncMove))
async def sync_move(request: Request, who: Publisher) -> Response:
    """Move a ref's record from ``previous`` to ``commit`` (compare-and-swap; ``moved`` false: another run moved
    it first)."""
    move: SyncMove = model(SyncMove, await read_body(request))
    svc = service(request)

    def run() -> Response:
        with db.transaction(svc.sessions, write=True) as session:
            catalog = Catalog(session)
            moved = catalog.move_sync_state(move.repository, move.ref, move.commit, move.previous)
            catalog.audit(
                who.name, "sync", f"{move.repository} {move.ref} {move.commit}", "moved" if moved else "raced"
            )
        return JSONResponse({"moved": moved})

    return await blocking(run)
