"""What every route shares: the service's state, authentication, bounded bodies, errors, ETags, pages.

Every request body is bounded before it is parsed (``Content-Length`` and the bytes actually read against
``max_body``; JSON nesting against ``max_depth``). Every write needs a token with the right scope; reads need a
``read`` token unless the operator allowed anonymous reads. Errors are one line (``{"error": ...}``) that never
echoes a token.
"""

# No ``from __future__ import annotations``: FastAPI reads these aliases at runtime in the route modules.
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from qlcapsule import VerifyKey

from . import db, tokens
from .bounds import load_json
from .catalog import MAX_LIMIT
from .config import Settings
from .events import Hub
from .metrics import Metrics

API = "/api/v1"
KEYID = r"^[A-Za-z0-9:_.+/=-]{8,128}$"
#: row ids fit a signed 64-bit integer on both databases
MAX_ID = 2**63 - 1


@dataclass
class Service:
    """The running service's state (``app.state.service``)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keys: list[VerifyKey]
    metrics: Metrics
    hub: Hub


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def service(request: Request) -> Service:
    found: Service = request.app.state.service
    return found


# -- authentication -------------------------------------------------------------------


def principal(request: Request, scope: str) -> tokens.Principal:
    svc = service(request)
    header = request.headers.get("authorization", "")
    if not header:
        if scope == "read" and svc.settings.anonymous_read:
            return tokens.ANONYMOUS
        raise ApiError(401, "a bearer token is required (Authorization: Bearer qlc_...)")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token:
        raise ApiError(401, "expected Authorization: Bearer <token>")
    with db.transaction(svc.sessions) as session:
        found = tokens.authenticate(session, token.strip())
    if found is None:
        raise ApiError(401, "unknown or revoked token")
    if not found.allows(scope):
        raise ApiError(403, f"token {found.name!r} lacks the {scope!r} scope")
    return found


def _reader(request: Request) -> tokens.Principal:
    return principal(request, "read")


def _publisher(request: Request) -> tokens.Principal:
    return principal(request, "publish")


def _administrator(request: Request) -> tokens.Principal:
    return principal(request, "admin")


Reader = Annotated[tokens.Principal, Depends(_reader)]
Publisher = Annotated[tokens.Principal, Depends(_publisher)]
Admin = Annotated[tokens.Principal, Depends(_administrator)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
HookId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


# -- bodies and answers ---------------------------------------------------------------


async def read_body(request: Request) -> Any:
    """The request's JSON, after the size and depth checks."""
    settings = service(request).settings
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
    """``data`` as the pydantic model ``cls``; 422 naming the first wrong field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, f"request body: {where}: {first['msg']}") from None


def body_schema(cls: Any) -> dict[str, Any]:
    """The OpenAPI request body of a handler that reads (and bounds) its body itself."""
    schema = cls.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def etagged(request: Request, data: Any) -> Response:
    """JSON with an ETag; 304 when the client has it already (``If-None-Match``)."""
    raw = json.dumps(jsonable_encoder(data), separators=(",", ":"), sort_keys=True).encode()
    tag = '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'
    if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers={"ETag": tag})
    return Response(raw, media_type="application/json", headers={"ETag": tag})


def page(request: Request, found: tuple[list[dict[str, Any]], int], offset: int, limit: int) -> Response:
    items, total = found
    return etagged(request, {"items": items, "total": total, "offset": offset, "limit": limit})


async def blocking(work: Callable[[], Response]) -> Response:
    """Blocking database work off the event loop (the handlers that read their body are async)."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(work)
