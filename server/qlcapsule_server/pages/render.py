"""Rendering: the Jinja environment (autoescape on), security headers, the CSRF cookie and error pages."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..tokens import Principal

CSRF_COOKIE = "qlc_csrf"
TOKEN_COOKIE = "qlc_token"
#: only this server's own files: no inline script or style, no framing
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "private, no-cache",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # every template, whatever its name: publisher text is never markup
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["seg"] = lambda value: quote(str(value), safe="")
_env.filters["short"] = lambda value, n=12: str(value or "")[:n]


def _size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


_env.filters["size"] = _size
_env.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M UTC") if value else ""
_env.globals["query"] = lambda **kw: urlencode({k: v for k, v in kw.items() if v not in (None, "")})


class PageError(Exception):
    """A page that cannot be shown: rendered as the error page with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class LoginRequired(PageError):
    def __init__(self, next_path: str, message: str = "") -> None:
        super().__init__(303, message)
        self.next_path = next_path


def csrf_of(request: Request) -> tuple[str, bool]:
    """This browser's CSRF token, and whether it is new (then the response sets the cookie)."""
    known = request.cookies.get(CSRF_COOKIE, "")
    if 16 <= len(known) <= 64 and known.replace("-", "").replace("_", "").isalnum():
        return known, False
    return secrets.token_urlsafe(24), True


def render(
    request: Request,
    template: str,
    title: str,
    viewer: Principal | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    csrf, new = csrf_of(request)
    html = _env.get_template(template).render(title=title, viewer=viewer, csrf=csrf, path=request.url.path, **context)
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if new:
        set_cookie(request, response, CSRF_COOKIE, csrf, samesite="strict")
    return response


def set_cookie(
    request: Request, response: Response, name: str, value: str, *, samesite: str, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=request.url.scheme == "https",
        samesite=samesite,  # type: ignore[arg-type]
    )


def page_error(request: Request, exc: PageError) -> Response:
    if isinstance(exc, LoginRequired):
        # a reason code, never the text: a crafted login URL cannot put words on this server's page
        target = "/login?" + urlencode({"next": exc.next_path, **({"why": "revoked"} if exc.message else {})})
        response: Response = RedirectResponse(target, status_code=303, headers=HEADERS)
        if exc.message:  # a token that stopped working: forget it
            response.delete_cookie(TOKEN_COOKIE, path="/")
        return response
    return render(request, "error.html", f"{exc.status} {exc.message}", None, status=exc.status, message=exc.message)
