"""Webhook subscriptions (scope ``admin``): create (the secret is shown once), list, deactivate, delivery log."""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations at runtime.
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from . import db, webhooks
from .catalog import DELIVERY_STATUSES, Catalog
from .models import WebhookRow
from .schemas import WebhookIn
from .web import API, Admin, ApiError, HookId, blocking, body_schema, etagged, model, read_body, service

router = APIRouter(prefix=f"{API}/webhooks", tags=["webhooks"])


@router.post("", status_code=201, openapi_extra=body_schema(WebhookIn))
async def webhook_create(request: Request, who: Admin) -> Response:
    """Subscribe a URL to delivery events; the secret is returned once."""
    wanted: WebhookIn = model(WebhookIn, await read_body(request))
    unknown = sorted(set(wanted.statuses) - set(DELIVERY_STATUSES))
    if unknown:
        raise ApiError(422, f"request body: statuses: unknown status {unknown[0]!r}")
    sessions = service(request).sessions

    def run() -> Response:
        with db.transaction(sessions, write=True) as session:
            hook_id, secret = webhooks.create(session, wanted.url, wanted.statuses, wanted.secret)
            Catalog(session).audit(who.name, "webhook.create", f"{hook_id} {wanted.url}", "created")
        return JSONResponse({"id": hook_id, "secret": secret}, status_code=201)

    return await blocking(run)


@router.get("")
def webhook_list(request: Request, _who: Admin) -> Response:
    """The subscriptions (never their secrets)."""
    with db.transaction(service(request).sessions) as session:
        rows = session.scalars(select(WebhookRow).order_by(WebhookRow.id))
        return etagged(request, {"items": [webhooks.describe(r) for r in rows]})


@router.get("/{hook_id}/deliveries")
def webhook_log(request: Request, hook_id: HookId, _who: Admin) -> Response:
    """The delivery log of one subscription, newest first."""
    with db.transaction(service(request).sessions) as session:
        return etagged(request, {"items": webhooks.log(session, hook_id)})


@router.delete("/{hook_id}", status_code=204)
def webhook_delete(request: Request, hook_id: HookId, who: Admin) -> Response:
    """Stop sending to a subscription (its log is kept)."""
    with db.transaction(service(request).sessions, write=True) as session:
        row = session.get(WebhookRow, hook_id)
        if row is None:
            raise ApiError(404, f"no webhook {hook_id}")
        row.active = False
        Catalog(session).audit(who.name, "webhook.delete", str(hook_id), "deactivated")
    return Response(status_code=204)
