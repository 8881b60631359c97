"""Who is looking at a page, and the login form that puts a read token in an HttpOnly cookie.

The cookie holds the token itself (as a bearer header would): the server keeps no sessions, and revoking the
token (``qlcapsule catalog token revoke``) logs every browser holding it out on its next page. The token
cookie is SameSite=Lax so a shared link opens logged in; pages answer GET only and change nothing, and the
two POSTs (login, logout) need the CSRF token.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from .. import db, tokens
from ..config import Settings
from ..web import ApiError, principal
from .render import CSRF_COOKIE, HEADERS, TOKEN_COOKIE, LoginRequired, PageError, render, set_cookie

#: hours a login lasts in the browser (the token itself lasts until it is revoked)
LOGIN_HOURS = 8
MAX_FORM = 4096
#: what the login page may say about why it is shown (chosen by code, never taken from the URL)
REASONS = {"revoked": "your token is unknown or revoked; log in again"}


def viewer(request: Request, sessions: sessionmaker[Session], settings: Settings) -> tokens.Principal:
    """The principal of a page request: the bearer header or cookie token with the ``read`` scope, or the
    anonymous reader when the server allows it. Otherwise the login page (or 403 for a token without read)."""
    if request.headers.get("authorization"):  # a script's bearer header: exactly the API's rule
        try:
            return principal(request, "read")
        except ApiError as exc:
            raise PageError(exc.status, exc.message) from None
    token = request.cookies.get(TOKEN_COOKIE, "")
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not token:
        if settings.anonymous_read:
            return tokens.ANONYMOUS
        raise LoginRequired(here)
    with db.transaction(sessions) as session:
        found = tokens.authenticate(session, token)
    if found is None:
        raise LoginRequired(here, "your token is unknown or revoked; log in again")
    if not found.allows("read"):
        raise PageError(403, f"token {found.name!r} lacks the 'read' scope")
    return found


def _local(path: str) -> str:
    """Where to go after login: a path on this server only (never ``//host`` or a URL)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or urlsplit(path).netloc:
        return "/"
    return path


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "") and parts.scheme == request.url.scheme


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form, bounded (no multipart parser needed for two fields)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM:
            raise PageError(413, f"form: at most {MAX_FORM} bytes")
    fields = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=8)
    return {k: v[0] for k, v in fields.items()}


def _check_csrf(request: Request, form: dict[str, str]) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get("csrf", "")
    if not cookie or not hmac.compare_digest(cookie, sent) or not _same_origin(request):
        raise PageError(403, "the form expired or came from another site; reload the page and try again")


def router(sessions: sessionmaker[Session], settings: Settings) -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    @pages.get("/login")
    def login_form(request: Request) -> Response:
        why = REASONS.get(request.query_params.get("why", ""), "")
        return render(
            request,
            "login.html",
            "Log in",
            None,
            next_path=_local(request.query_params.get("next", "/")),
            message=why,
            anonymous=settings.anonymous_read,
        )

    @pages.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        _check_csrf(request, form)
        next_path = _local(form.get("next", "/"))
        token = form.get("token", "").strip()
        found = None
        if token:

            def check() -> tokens.Principal | None:
                with db.transaction(sessions) as session:
                    return tokens.authenticate(session, token)

            found = await run_in_threadpool(check)
        if found is None or not found.allows("read"):
            message = "unknown or revoked token" if found is None else f"token {found.name!r} lacks the 'read' scope"
            return render(
                request,
                "login.html",
                "Log in",
                None,
                status=401 if found is None else 403,
                next_path=next_path,
                message=message,
                anonymous=settings.anonymous_read,
            )
        response = RedirectResponse(next_path, status_code=303, headers=HEADERS)
        set_cookie(request, response, TOKEN_COOKIE, token, samesite="lax", max_age=LOGIN_HOURS * 3600)
        return response

    @pages.post("/logout")
    async def logout(request: Request) -> Response:
        _check_csrf(request, await _form(request))
        response = RedirectResponse("/login", status_code=303, headers=HEADERS)
        response.delete_cookie(TOKEN_COOKIE, path="/")
        return response

    return pages
