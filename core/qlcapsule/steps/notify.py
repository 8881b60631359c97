"""Webhook notifications after a delivery succeeds or fails.

A target in capsule.yaml may list webhooks::

    targets:
      prod:
        provider: s3
        options: {bucket: releases}
        notify:
          - url: https://hooks.example.com/qlcapsule
            secret_env: QLCAPSULE_WEBHOOK_SECRET
            events: [success, failure]

Each webhook gets a ``POST`` with a JSON body and, when ``secret_env`` names an
environment variable, the header ``X-Qlcapsule-Signature-256: sha256=<hex>``: the
HMAC-SHA256 of the exact body bytes with that secret, the same scheme as
GitHub's ``X-Hub-Signature-256``. Receivers verify it with a constant-time
compare. Delivery is retried (bounded, with backoff) on connection errors,
timeouts, 429 and 5xx; a webhook that still fails is reported as a warning and
never changes the outcome of the delivery itself.

Redirects follow :func:`qlcapsule.resilience.check_redirect`: a webhook (a POST)
is only re-sent on the same origin (scheme, host and port) and only for 307/308,
which keep the method and body. A redirect to another host, or one that would turn
the POST into a GET, is refused: the body and the HMAC signature never leave the
configured origin.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..format.model import WebhookConfig
from ..log import event, get_logger, scrub
from ..resilience import (
    DEFAULT_CONNECT_TIMEOUT,
    RedirectRefused,
    TransientError,
    check_redirect,
    read_secret,
    retry,
    scrub_error,
)

__all__ = ["SIGNATURE_HEADER", "EVENT_HEADER", "sign_body", "notify", "webhook_url_problem", "WebhookResult"]

log = get_logger("qlcapsule.notify")

SIGNATURE_HEADER = "X-Qlcapsule-Signature-256"
EVENT_HEADER = "X-Qlcapsule-Event"
USER_AGENT = "qlcapsule-webhook/1"


def sign_body(secret: str, body: bytes) -> str:
    """The header value ``sha256=<hex HMAC-SHA256(secret, body)>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass
class WebhookResult:
    host: str
    ok: bool
    status: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "ok": self.ok, "status": self.status, "error": self.error}


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook, or None when it can.

    Only ``http`` and ``https`` with a host: urllib would also open ``file:`` and
    ``ftp:`` URLs, and a webhook must never read local files or reach other protocols.
    Plain ``http`` is allowed to any host (internal receivers), as the docs promise.
    The URL itself is never quoted: webhook paths often carry tokens.
    """
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return "control characters or spaces are not allowed in a webhook URL"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        got = f" (got {parts.scheme + ':'!r})" if parts.scheme else ""
        return f"only http and https webhook URLs are allowed{got}"
    if not parts.hostname:
        return "a webhook URL needs a host (http://HOST/... or https://HOST/...)"
    return None


def _host(url: str) -> str:
    # Log only scheme://host[:port]: webhook paths often embed tokens (Slack, Teams).
    try:
        parts = urllib.parse.urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    except ValueError:
        return "(invalid URL)"


class _Redirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling, decided by :func:`check_redirect` (same origin, 307/308 only, for a POST)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request:
        try:
            target, same = check_redirect(req.get_method(), code, req.full_url, newurl, what="webhook")
        except RedirectRefused:
            fp.close()
            raise
        if not same:  # only GET/HEAD may leave the origin, and a webhook is a POST
            fp.close()
            raise RedirectRefused("webhook: the receiver redirected to another host; refusing")
        return urllib.request.Request(target, data=req.data, headers=dict(req.headers), method=req.get_method())

    http_error_308 = urllib.request.HTTPRedirectHandler.http_error_302  # Python 3.10 does not handle 308


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(_Redirects)
    try:
        with opener.open(req, timeout=timeout) as resp:  # http/https checked by the caller
            resp.read(1024)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            raise TransientError(f"HTTP {exc.code}") from None
        raise
    except (urllib.error.URLError, OSError) as exc:
        raise TransientError(scrub_error(getattr(exc, "reason", exc) or exc)) from None


def notify(
    hooks: Sequence[WebhookConfig],
    outcome: str,
    payload: dict[str, Any],
    *,
    attempts: int = 3,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    sleep: Callable[[float], None] | None = None,
) -> list[WebhookResult]:
    """POST ``payload`` (plus ``event: delivery.<outcome>``) to every hook subscribed to ``outcome``.

    Returns one result per hook called; never raises for a failed webhook.
    """
    results: list[WebhookResult] = []
    doc = {"event": f"delivery.{outcome}", **payload}
    body = scrub(json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)).encode("utf-8")
    for hook in hooks:
        if outcome not in hook.events:
            continue
        host = _host(hook.url)
        problem = webhook_url_problem(hook.url)
        if problem is not None:  # load_deliverer refuses these first; this guards direct callers
            results.append(WebhookResult(host, False, error=problem))
            log.warning("webhook %s: %s", host, problem)
            continue
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, EVENT_HEADER: doc["event"]}
        try:
            if hook.secret_env:
                secret = read_secret(hook.secret_env, what="webhook HMAC secret")
                assert secret is not None
                headers[SIGNATURE_HEADER] = sign_body(secret, body)
            kwargs: dict[str, Any] = {
                "attempts": attempts,
                "base_delay": 0.5,
                "max_delay": 4.0,
                "what": f"webhook {host}",
            }
            if sleep is not None:
                kwargs["sleep"] = sleep
            status = retry(functools.partial(_post, hook.url, body, headers, timeout), **kwargs)
            results.append(WebhookResult(host, True, status))
            event(log, "webhook.sent", host=host, outcome=outcome, status=status)
        except urllib.error.HTTPError as exc:
            results.append(WebhookResult(host, False, exc.code, f"HTTP {exc.code}"))
            log.warning("webhook %s answered HTTP %s", host, exc.code)
        except Exception as exc:  # noqa: BLE001 - a webhook never decides the delivery outcome
            msg = scrub_error(exc)
            results.append(WebhookResult(host, False, error=msg))
            log.warning("webhook %s failed: %s", host, msg)
    return results
