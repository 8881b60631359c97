"""Webhook subscriptions: every delivery event, POSTed as JSON and signed like GitHub's (``X-Hub-Signature-256:
sha256=<HMAC-SHA256 of the body with the subscription's secret>``).

Each event is sent once per subscription even with several server processes: the process that inserts the
(subscription, event) row of the delivery log sends it, the others see the row and skip. A failed send is
retried with backoff, a bounded number of times, and the outcome (status code, attempts, error) is logged in
that row. Redirects are not followed; URLs are https, or http to this machine only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from qlcapsule import UsageError, is_loopback, scrub_error

from .catalog import Catalog
from .db import transaction
from .events import last_event_id
from .models import WebhookDeliveryRow, WebhookRow, utcnow

ATTEMPTS = 3
BACKOFF = (0.5, 2.0)
TIMEOUT = 10.0
SIGNATURE_HEADER = "X-Hub-Signature-256"


def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise UsageError(f"url: expected http(s)://HOST[:PORT]/PATH without credentials, got {url[:200]!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UsageError(f"url: {parts.hostname} is not this machine; webhooks use https")
    return url


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def create(session: Session, url: str, statuses: list[str], secret: str | None) -> tuple[int, str]:
    """A new subscription; returns its id and its secret (generated when not given, shown once)."""
    secret = secret or secrets.token_urlsafe(32)

    row = WebhookRow(
        url=check_url(url), secret=secret, events=sorted(set(statuses)), after_event=last_event_id(session)
    )
    session.add(row)
    session.flush()
    return row.id, secret


def describe(row: WebhookRow) -> dict[str, Any]:
    return {"id": row.id, "url": row.url, "statuses": row.events, "active": row.active, "created_at": row.created_at}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is the answer: a failed send


def _send(url: str, secret: str, body: bytes, event_id: int) -> tuple[int | None, int, str | None]:
    """POST with bounded retries: (last status code, attempts, last error)."""
    opener = urllib.request.build_opener(_NoRedirect)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "qlcapsule-catalog",
        "X-Qlcapsule-Event": "delivery",
        "X-Qlcapsule-Delivery": str(event_id),
        SIGNATURE_HEADER: signature(secret, body),
    }
    code: int | None = None
    error: str | None = None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with opener.open(
                urllib.request.Request(url, data=body, headers=headers, method="POST"), timeout=TIMEOUT
            ) as answer:
                code, error = answer.status, None
        except urllib.error.HTTPError as exc:
            with exc:
                code, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            code, error = None, scrub_error(exc)
        if code is not None and 200 <= code < 300:
            return code, attempt, None
        if code is not None and 400 <= code < 500 and code not in (408, 429):
            return code, attempt, error  # the receiver refuses it: retrying changes nothing
        if attempt < ATTEMPTS:
            time.sleep(BACKOFF[min(attempt - 1, len(BACKOFF) - 1)])
    return code, ATTEMPTS, error


def dispatch(sessions: sessionmaker[Session], events: list[dict[str, Any]]) -> int:
    """Send ``events`` to every matching active subscription this process claims; returns how many it sent."""

    sent = 0
    with transaction(sessions) as session:
        active = session.scalars(select(WebhookRow).where(WebhookRow.active.is_(True)))
        hooks = [(h.id, h.url, h.secret, set(h.events), h.after_event) for h in active]
    for event in events:
        body = json.dumps({"event": "delivery", "delivery": event}, separators=(",", ":")).encode("utf-8")
        for hook_id, url, secret, statuses, after in hooks:
            if event["id"] <= after or (statuses and event["status"] not in statuses):
                continue
            with transaction(sessions, write=True) as session:
                claim = {"webhook_id": hook_id, "event_id": event["id"], "outcome": "sending", "attempts": 0}
                if Catalog(session).insert_ignore(WebhookDeliveryRow, claim, ["webhook_id", "event_id"]) != 1:
                    continue  # another process sends this one
            code, attempts, error = _send(url, secret, body, event["id"])
            with transaction(sessions, write=True) as session:
                row = session.scalars(
                    select(WebhookDeliveryRow).where(
                        WebhookDeliveryRow.webhook_id == hook_id, WebhookDeliveryRow.event_id == event["id"]
                    )
                ).one()
                row.outcome = "delivered" if error is None else "failed"
                row.status_code, row.attempts, row.error, row.at = code, attempts, error, utcnow()
            sent += 1
    return sent


def log(session: Session, hook_id: int, limit: int = 100) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(WebhookDeliveryRow)
        .where(WebhookDeliveryRow.webhook_id == hook_id)
        .order_by(WebhookDeliveryRow.id.desc())
        .limit(limit)
    )
    return [
        {
            "event_id": r.event_id,
            "outcome": r.outcome,
            "status_code": r.status_code,
            "attempts": r.attempts,
            "error": r.error,
            "at": r.at,
        }
        for r in rows
    ]
