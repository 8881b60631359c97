"""The questions the catalog answers (scope ``read``), and the live event stream.

Lists are paginated (``offset``, ``limit``); every answer carries an ETag.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations at runtime.
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse

from . import db
from .catalog import LABEL_KEY, Catalog
from .events import Filter
from .web import API, KEYID, MAX_ID, ApiError, Limit, Offset, Reader, etagged, page, service

router = APIRouter(prefix=API, tags=["catalog"])
STATUS = r"^(planned|uploading|verifying|delivered|failed)$"
#: ``key`` or ``key=value``
LABEL_FILTER = rf"^{LABEL_KEY}(=.*)?$"


@router.get("/capsules")
def capsules(
    request: Request,
    _who: Reader,
    offset: Offset = 0,
    limit: Limit = 50,
    q: Annotated[str | None, Query(max_length=63)] = None,
    label: Annotated[str | None, Query(max_length=512, pattern=LABEL_FILTER)] = None,
    template: Annotated[str | None, Query(max_length=512)] = None,
    repository: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    """Capsules by name (``q``: a substring), label (``key`` or ``key=value``), template (a name) and repository
    (a substring), with the repositories they live in."""
    with db.transaction(service(request).sessions) as session:
        found = Catalog(session).capsules(offset, limit, q, label=label, template=template, repository=repository)
        return page(request, found, offset, limit)


@router.get("/capsules/{name}/versions")
def versions(request: Request, name: str, _who: Reader, offset: Offset = 0, limit: Limit = 50) -> Response:
    """A capsule's versions, newest first, with their signature verdicts, refs and template."""
    with db.transaction(service(request).sessions) as session:
        return page(request, Catalog(session).versions(name, offset, limit), offset, limit)


@router.get("/capsules/{name}/versions/{version}")
def version(request: Request, name: str, version: str, _who: Reader) -> Response:
    """One version with its files (from the lock), findings and artifacts."""
    with db.transaction(service(request).sessions) as session:
        found = Catalog(session).version(name, version)
    if found is None:
        raise ApiError(404, f"{name}@{version} is not in the catalog")
    return etagged(request, found)


@router.get("/capsules/{name}/versions/{version}/deliveries")
def deliveries(request: Request, name: str, version: str, _who: Reader) -> Response:
    """Where ``name@version`` was delivered, each delivery's status and its timeline."""
    with db.transaction(service(request).sessions) as session:
        found = Catalog(session).deliveries(name, version)
    if found is None:
        raise ApiError(404, f"{name}@{version} is not in the catalog")
    return etagged(request, {"items": found})


@router.get("/capsules/{name}/lineage")
def lineage(request: Request, name: str, _who: Reader, offset: Offset = 0, limit: Limit = 500) -> Response:
    """The versions as a graph: each node's commit and its parents' commits, newest first."""
    with db.transaction(service(request).sessions) as session:
        return page(request, Catalog(session).lineage(name, offset, limit), offset, limit)


@router.get("/capsules/{name}/diff")
def diff(
    request: Request,
    name: str,
    _who: Reader,
    old: Annotated[str, Query(alias="from", min_length=1, max_length=256)],
    new: Annotated[str, Query(alias="to", min_length=1, max_length=256)],
) -> Response:
    """Files added, removed and changed between two versions, from their locks."""
    with db.transaction(service(request).sessions) as session:
        found = Catalog(session).diff(name, old, new)
    if found is None:
        raise ApiError(404, f"{name}@{old} or {name}@{new} is not in the catalog")
    return etagged(request, found)


@router.get("/capsules/{name}/scores")
def scores(request: Request, name: str, _who: Reader, offset: Offset = 0, limit: Limit = 50) -> Response:
    """The validation score history, newest first."""
    with db.transaction(service(request).sessions) as session:
        return page(request, Catalog(session).scores(name, offset, limit), offset, limit)


@router.get("/templates")
def templates(request: Request, _who: Reader) -> Response:
    """Template versions and the capsules generated from each."""
    with db.transaction(service(request).sessions) as session:
        return etagged(request, {"items": Catalog(session).templates()})


@router.get("/templates/behind")
def behind(request: Request, _who: Reader, at_least: Annotated[int, Query(ge=0, le=10_000)] = 1) -> Response:
    """Capsules whose newest version was generated from a template ``at_least`` versions behind the newest."""
    with db.transaction(service(request).sessions) as session:
        return etagged(request, {"items": Catalog(session).behind(at_least)})


@router.get("/files/{sha256}/versions")
def containing(
    request: Request,
    sha256: Annotated[str, PathParam(pattern=r"^[0-9a-f]{64}$")],
    _who: Reader,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Response:
    """Versions whose lock lists a file with this SHA-256."""
    with db.transaction(service(request).sessions) as session:
        return page(request, Catalog(session).containing(sha256, offset, limit), offset, limit)


@router.get("/keys/{keyid}/versions")
def signed_by(
    request: Request,
    keyid: Annotated[str, PathParam(pattern=KEYID)],
    _who: Reader,
    only: bool = False,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Response:
    """Versions a trusted key (id or a prefix of 8+ characters) verifiably signed; ``only=true``: those no other
    trusted key signed."""
    with db.transaction(service(request).sessions) as session:
        return page(request, Catalog(session).signed_by(keyid, only=only, offset=offset, limit=limit), offset, limit)


@router.get("/events", tags=["events"], response_class=StreamingResponse)
def events(
    request: Request,
    _who: Reader,
    capsule: Annotated[str | None, Query(max_length=63)] = None,
    target: Annotated[str | None, Query(max_length=256)] = None,
    status: Annotated[str | None, Query(pattern=STATUS)] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="Resume after this event id (as Last-Event-ID)")
    ] = None,
) -> StreamingResponse:
    """Delivery status changes as Server-Sent Events (``event: delivery``, ``id`` = the timeline row), filtered
    by capsule, target and status; resumable with ``Last-Event-ID``."""
    resume = request.headers.get("last-event-id")
    if resume is not None:
        if not resume.isdigit() or int(resume) > MAX_ID:
            raise ApiError(400, "Last-Event-ID: expected an event id (a number)")
        after = int(resume)
    stream = service(request).hub.stream(Filter(capsule, target, status), after)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
