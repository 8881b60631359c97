"""API tokens: shown once when created, stored as their SHA-256, each with scopes.

A token is ``qlc_`` followed by 32 random bytes (URL-safe base64): guessing is hopeless, so a plain SHA-256 is
the right hash (a slow password hash protects low-entropy secrets, which these are not) and lookups stay one
indexed query. Scopes: ``read`` (the query API), ``publish`` (ingest ship reports and delivery status),
``admin`` (webhooks, tokens; implies the others).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from qlcapsule import UsageError

from .models import TokenRow, utcnow

SCOPES = ("read", "publish", "admin")
PREFIX = "qlc_"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


ANONYMOUS = Principal("anonymous", frozenset({"read"}))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise UsageError(f"--scope: expected one or more of {', '.join(SCOPES)}, got {', '.join(unknown) or 'none'}")
    return sorted(set(scopes))


def create(session: Session, name: str, scopes: list[str] | tuple[str, ...]) -> str:
    """A new token named ``name``; returns the token itself (the only time it exists outside its holder)."""
    if not name or len(name) > 128 or not name.isprintable():
        raise UsageError("--name: 1 to 128 printable characters")
    if session.scalar(select(TokenRow.id).where(TokenRow.name == name)) is not None:
        raise UsageError(f"--name: a token named {name!r} exists; revoke it or pick another name")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(TokenRow(name=name, token_sha256=digest(token), scopes=check_scopes(scopes)))
    return token


def revoke(session: Session, name: str) -> bool:
    row = session.scalar(select(TokenRow).where(TokenRow.name == name, TokenRow.revoked_at.is_(None)))
    if row is None:
        return False
    row.revoked_at = utcnow()
    return True


def authenticate(session: Session, token: str) -> Principal | None:
    """The principal of a live token, or None (unknown, revoked, or not a qlcapsule token)."""
    if not token.startswith(PREFIX) or len(token) > 256:
        return None
    wanted = digest(token)
    row = session.scalar(select(TokenRow).where(TokenRow.token_sha256 == wanted))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_sha256, wanted):
        return None
    return Principal(row.name, frozenset(row.scopes))
