"""The catalog's tables (SQLAlchemy 2 declarative). The Alembic revisions in ``migrations/`` create them.

Identity is by digest: a version is (capsule, capsule digest), an artifact (version, sha256, location), a
signature (version, keyid), a delivery (version, target). Writes insert what is missing and leave what is
there, so a retried publish or a second ``catalog sync`` of the same refs changes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp with its time zone on both databases: SQLite stores none, so what it returns is UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, dt.datetime: UTCDateTime}


class CapsuleRow(Base):
    __tablename__ = "capsules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    versions: Mapped[list[VersionRow]] = relationship(back_populates="capsule")


class RepositoryRow(Base):
    """A store (path or URL) a capsule lives in."""

    __tablename__ = "capsule_repositories"
    __table_args__ = (UniqueConstraint("capsule_id", "repository"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capsule_id: Mapped[int] = mapped_column(ForeignKey("capsules.id", ondelete="CASCADE"))
    repository: Mapped[str] = mapped_column(String(2048))


class TemplateRow(Base):
    """A template version some capsule version was generated from (from its verified statement)."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    version: Mapped[str] = mapped_column(String(128))
    source: Mapped[str | None] = mapped_column(String(2048), nullable=True)


class VersionRow(Base):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("capsule_id", "digest"),
        Index("ix_versions_capsule_version", "capsule_id", "version"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capsule_id: Mapped[int] = mapped_column(ForeignKey("capsules.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(256))
    digest: Mapped[str] = mapped_column(String(64), index=True)
    #: the store commit of this version, when known (publish from ship, or sync)
    commit: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    #: lineage: the parent commits
    parents: Mapped[list[Any]] = mapped_column(default=list)
    committer: Mapped[str | None] = mapped_column(String(512), nullable=True)
    #: verified | unsigned | untrusted: the server's verdict on its signatures
    signature_status: Mapped[str] = mapped_column(String(16))
    signature_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    signed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    template_id: Mapped[int | None] = mapped_column(ForeignKey("templates.id"), nullable=True, index=True)
    published_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: who published it (the token's name) or "sync"
    published_by: Mapped[str] = mapped_column(String(128))
    capsule: Mapped[CapsuleRow] = relationship(back_populates="versions")


class RefRow(Base):
    """A tag or branch of the store pointing at a version."""

    __tablename__ = "version_refs"
    __table_args__ = (UniqueConstraint("version_id", "kind", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # tag | branch
    name: Mapped[str] = mapped_column(String(256))


class FileRow(Base):
    """One entry of a version's capsule.lock (indexed by sha256: "which version contains this file")."""

    __tablename__ = "version_files"
    __table_args__ = (
        UniqueConstraint("version_id", "path"),
        # "versions containing this file" pages through it backwards (newest version first): a page reads its
        # rows from the index, where an index on sha256 alone sorted every match (all 10,000 for a shared file)
        Index("ix_version_files_sha256_version", "sha256", "version_id", "path"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(4096))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    mode: Mapped[str] = mapped_column(String(3))


class SignatureRow(Base):
    """One signature of a version's envelope and what the server's trust policy made of it."""

    __tablename__ = "signatures"
    __table_args__ = (UniqueConstraint("version_id", "keyid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    #: the key id: the trusted key's own id when verified, else the envelope's (unauthenticated) hint
    keyid: Mapped[str] = mapped_column(String(128), index=True)
    algorithm: Mapped[str | None] = mapped_column(String(32), nullable=True)
    verified: Mapped[bool] = mapped_column(Boolean)


class ValidationRow(Base):
    __tablename__ = "validation_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), unique=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    findings: Mapped[list[Any]] = mapped_column(default=list)
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ArtifactRow(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("version_id", "sha256", "location"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    format: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    location: Mapped[str] = mapped_column(String(4096))


class DeliveryRow(Base):
    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("version_id", "target"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(256))
    provider: Mapped[str] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    #: planned | uploading | verifying | delivered | failed
    status: Mapped[str] = mapped_column(String(16))
    receipts: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DeliveryEventRow(Base):
    """The status timeline of a delivery."""

    __tablename__ = "delivery_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: the URL this step reported (None: none, or an event recorded before migration 0004)
    url: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookRow(Base):
    """A webhook subscription (events are signed with its secret: ``X-Hub-Signature-256``)."""

    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    #: the HMAC secret itself (the server signs with it); never returned by the API
    secret: Mapped[str] = mapped_column(String(256))
    events: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: the newest event when it was created: it gets only later ones
    after_event: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookDeliveryRow(Base):
    """The webhook delivery log: one row per (subscription, event), claimed by the process that sends it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("webhook_id", "event_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int] = mapped_column(BigInteger)
    #: sending | delivered | failed
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TokenRow(Base):
    """An API token: only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class AuditRow(Base):
    """Every authenticated write: who, what, on which subject."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(32))


class SyncStateRow(Base):
    """``catalog sync``: the commit each ref of a repository was indexed up to."""

    __tablename__ = "sync_state"
    __table_args__ = (UniqueConstraint("repository", "ref"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository: Mapped[str] = mapped_column(String(2048))
    ref: Mapped[str] = mapped_column(String(1024))
    commit: Mapped[str] = mapped_column(String(64))
