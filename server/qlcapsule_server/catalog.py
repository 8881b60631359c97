"""The catalog repository's writes (:class:`Catalog`); the reads are :class:`queries.Queries`.

One ``Catalog`` wraps one session inside one transaction (``db.transaction``); the caller commits by leaving
the block. Writes are idempotent, keyed by digest: rows are inserted with ``ON CONFLICT DO NOTHING`` on their
natural key (both SQLite and PostgreSQL speak it), so two publishers of the same version at once, or a retry,
leave exactly one row and neither fails.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from qlcapsule import Lock

from .models import (
    ArtifactRow,
    AuditRow,
    CapsuleRow,
    DeliveryEventRow,
    DeliveryRow,
    FileRow,
    RefRow,
    RepositoryRow,
    SignatureRow,
    SyncStateRow,
    TemplateRow,
    ValidationRow,
    VersionRow,
    utcnow,
)
from .schemas import Publication
from .verify import Verdict

#: the statuses a delivery moves through
DELIVERY_STATUSES = ("planned", "uploading", "verifying", "delivered", "failed")


@functools.lru_cache(maxsize=64)
def _insert_ignore(dialect_name: str, table: Any, keys: tuple[str, ...]) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING RETURNING id``, built once per table (statements are immutable,
    and building one costs more than running it). RETURNING yields only the rows inserted (rowcount is -1 for
    this statement under psycopg)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=list(keys)).returning(table.c.id)


class Catalog:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- writing --------------------------------------------------------------
    def insert_ignore(self, model: Any, rows: list[dict[str, Any]] | dict[str, Any], keys: list[str]) -> int:
        """Insert rows that are not there yet (by the unique ``keys``); return how many were inserted."""
        if isinstance(rows, list) and not rows:
            return 0
        stmt = _insert_ignore(self.session.get_bind().dialect.name, model.__table__, tuple(keys))
        # a dict executes one row, a list many; the column defaults fill what the rows leave out
        return len(self.session.execute(stmt, rows).all())

    def _capsule_id(self, name: str) -> int:
        self.insert_ignore(CapsuleRow, {"name": name, "labels": {}}, ["name"])
        return int(self.session.scalar(select(CapsuleRow.id).where(CapsuleRow.name == name)))  # type: ignore[arg-type]

    def _template_id(self, generator: dict[str, Any] | None) -> int | None:
        if not generator or not isinstance(generator.get("template"), str):
            return None
        name = str(generator["template"])[:512]
        version = str(generator.get("version") or generator.get("commit") or "unknown")[:128]
        source = generator.get("source") if isinstance(generator.get("source"), str) else None
        self.insert_ignore(TemplateRow, {"name": name, "version": version, "source": source}, ["name", "version"])
        found = select(TemplateRow.id).where(TemplateRow.name == name, TemplateRow.version == version)
        return self.session.scalar(found)

    def publish(self, pub: Publication, lock: Lock, verdict: Verdict, actor: str) -> dict[str, Any]:
        """Record one publication (a verdict the caller's policy accepted); the same digest twice is a no-op."""
        capsule_id = self._capsule_id(lock.name)
        if pub.repository:
            self.insert_ignore(
                RepositoryRow, {"capsule_id": capsule_id, "repository": pub.repository}, ["capsule_id", "repository"]
            )
        statement = verdict.statement
        row = {
            "capsule_id": capsule_id,
            "version": lock.version,
            "digest": lock.digest,
            "commit": pub.capsule.commit,
            "parents": list(pub.parents),
            "committer": pub.committer,
            "signature_status": verdict.status,
            "signature_reason": verdict.reason,
            "signed_at": statement.created if statement else None,
            "expires_at": statement.expires if statement else None,
            "template_id": self._template_id(statement.generator if statement else None),
            "published_at": utcnow(),
            "published_by": actor,
        }
        created = self.insert_ignore(VersionRow, row, ["capsule_id", "digest"]) == 1
        version = self.session.scalars(
            select(VersionRow).where(VersionRow.capsule_id == capsule_id, VersionRow.digest == lock.digest)
        ).one()
        if not created and verdict.status == "verified" and version.signature_status != "verified":
            # the server trusts the key now: the verdict only ever improves, never silently worsens
            for key in ("signature_status", "signature_reason", "signed_at", "expires_at", "template_id"):
                setattr(version, key, row[key])
        if created:
            self.insert_ignore(
                FileRow,
                [
                    {"version_id": version.id, "path": e.path, "sha256": e.sha256, "size": e.size, "mode": e.mode}
                    for e in lock.files
                ],
                ["version_id", "path"],
            )
            self.insert_ignore(
                ValidationRow,
                {"version_id": version.id, "score": pub.capsule.score, "findings": pub.capsule.findings},
                ["version_id"],
            )
        self.insert_ignore(
            SignatureRow,
            [{"version_id": version.id, "keyid": k, "algorithm": a, "verified": v} for k, a, v in verdict.signatures],
            ["version_id", "keyid"],
        )
        if verdict.status == "verified" and not created:  # a key first seen as a hint may be verified now
            ids = [k for k, _, v in verdict.signatures if v]
            for sig in self.session.scalars(
                select(SignatureRow).where(SignatureRow.version_id == version.id, SignatureRow.keyid.in_(ids))
            ):
                sig.verified = True
                sig.algorithm = next(a for k, a, _ in verdict.signatures if k == sig.keyid)
        refs = [("tag", t) for t in pub.tags] + [("branch", b) for b in pub.branches]
        self.insert_ignore(
            RefRow,
            [{"version_id": version.id, "kind": k, "name": n[:256]} for k, n in refs],
            ["version_id", "kind", "name"],
        )
        self._record_artifacts(version.id, pub)
        self.audit(
            actor, "publish", f"{lock.name}@{lock.version} sha256:{lock.digest}", "created" if created else "unchanged"
        )
        signed_by = [k for k, _, v in verdict.signatures if v]
        return {
            "ref": f"{lock.name}@{lock.version}",
            "digest": lock.digest,
            "created": created,
            "signature_status": version.signature_status,
            "signature_reason": version.signature_reason,
            "signed_by": signed_by,
        }

    def _record_artifacts(self, version_id: int, pub: Publication) -> None:
        located = {r.sha256: r.location for r in pub.capsule.receipts}
        self.insert_ignore(
            ArtifactRow,
            [
                {
                    "version_id": version_id,
                    "format": a.format,
                    "name": a.name,
                    "sha256": a.sha256,
                    "size": a.size,
                    "location": located.get(a.sha256) or a.path or "",
                }
                for a in pub.capsule.artifacts
            ],
            ["version_id", "sha256", "location"],
        )
        by_target: dict[str, list[dict[str, Any]]] = {}
        for receipt in pub.capsule.receipts:
            by_target.setdefault(receipt.target, []).append(receipt.model_dump())
        for target, receipts in by_target.items():
            url = next((r["url"] for r in receipts if r.get("url")), None)
            self.delivery_status(version_id, target, receipts[0]["provider"], "delivered", url=url, receipts=receipts)

    def delivery_status(
        self,
        version_id: int,
        target: str,
        provider: str,
        status: str,
        *,
        url: str | None = None,
        detail: str | None = None,
        nbytes: int | None = None,
        receipts: list[dict[str, Any]] | None = None,
    ) -> tuple[DeliveryRow, bool]:
        """Move a delivery to ``status`` and add it to the timeline; the same status twice adds nothing."""
        values = {"version_id": version_id, "target": target, "provider": provider, "status": status, "url": url}
        self.insert_ignore(DeliveryRow, {**values, "receipts": receipts or []}, ["version_id", "target"])
        delivery = self.session.scalars(
            select(DeliveryRow)
            .where(DeliveryRow.version_id == version_id, DeliveryRow.target == target)
            .with_for_update()
        ).one()
        last = self.session.scalars(
            select(DeliveryEventRow)
            .where(DeliveryEventRow.delivery_id == delivery.id)
            .order_by(DeliveryEventRow.id.desc())
            .limit(1)
        ).first()
        if last is not None and (last.status, last.detail, last.bytes) == (status, detail, nbytes):
            return delivery, False
        delivery.status, delivery.updated_at = status, utcnow()
        delivery.url = url or delivery.url
        if receipts:
            delivery.receipts = receipts
        self.session.add(DeliveryEventRow(delivery_id=delivery.id, status=status, detail=detail, bytes=nbytes))
        if self.session.get_bind().dialect.name == "postgresql":  # every server's event hub wakes on commit
            from .events import CHANNEL

            self.session.execute(text(f"NOTIFY {CHANNEL}"))
        return delivery, True

    def audit(self, actor: str, action: str, subject: str, outcome: str) -> None:
        self.session.add(AuditRow(actor=actor, action=action, subject=subject[:512], outcome=outcome))

    def move_sync_state(self, repository: str, ref: str, commit: str, previous: str | None) -> bool:
        """Compare-and-swap the commit ``ref`` was indexed up to; False when another run moved it first."""
        if previous is None:
            values = {"repository": repository, "ref": ref, "commit": commit}
            return self.insert_ignore(SyncStateRow, values, ["repository", "ref"]) == 1
        moved = self.session.execute(
            update(SyncStateRow)
            .where(SyncStateRow.repository == repository, SyncStateRow.ref == ref, SyncStateRow.commit == previous)
            .values(commit=commit)
            .returning(SyncStateRow.id)
        ).all()
        return len(moved) == 1
