"""The catalog's web pages (docs/pages.md): server-rendered HTML on the same FastAPI app as the API.

Invariants:

- Data comes only through the catalog's query layer (``catalog.py``) and the event hub; no SQL here.
- Every page needs what ``GET /api/v1/...`` needs: a token with the ``read`` scope (in an HttpOnly cookie set by
  the login form, or a bearer header), or nothing when the operator runs ``serve --anonymous-read``.
- Jinja autoescaping is on for every template: capsule names, file paths, findings, targets and template names
  come from publishers and are text, never markup. The Content-Security-Policy allows only this server's own
  script and style files, so even a missed escape could not run inline script.
- Every POST form carries a CSRF token matched against a SameSite=Strict cookie (double submit), and its
  ``Origin``, when sent, must be this server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi.staticfiles import StaticFiles

from . import auth, views
from .render import PageError, page_error

if TYPE_CHECKING:
    from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Add the pages, their static files and their error pages to ``app`` (its ``state.service``: the same
    sessions, settings and event hub as the API)."""

    app.add_exception_handler(PageError, page_error)  # type: ignore[arg-type]
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    svc = app.state.service
    app.include_router(auth.router(svc.sessions, svc.settings))
    app.include_router(views.router(svc.sessions, svc.settings, svc.hub))
