"""The catalog repository: every read and write of the tables goes through :class:`Catalog`.

One ``Catalog`` wraps one session inside one transaction (``db.transaction``); the caller commits by leaving
the block. Writes are idempotent, keyed by digest: rows are inserted with ``ON CONFLICT DO NOTHING`` on their
natural key (both SQLite and PostgreSQL speak it), so two publishers of the same version at once, or a retry,
leave exactly one row and neither fails.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from collections.abc import Sequence
from typing import Any

from packaging.version import InvalidVersion, Version
from sqlalchemy import ColumnElement, Integer, and_, cast, exists, false, func, select, text, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from qlcapsule import InputError, Lock, VerificationError, yamlsrc

from .events import CHANNEL
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

MAX_LIMIT = 500
#: a capsule's labels as the catalog keeps them (capsule.yaml bounds none of these; the catalog does)
MAX_LABELS, MAX_LABEL_KEY, MAX_LABEL_VALUE = 64, 128, 256
#: a label key the filters can look up (a JSON path on SQLite quotes it, so quotes and brackets are out)
LABEL_KEY = r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}"
#: the statuses a delivery moves through
DELIVERY_STATUSES = ("planned", "uploading", "verifying", "delivered", "failed")


@functools.lru_cache(maxsize=64)
def _insert_ignore(dialect_name: str, table: Any, keys: tuple[str, ...]) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING RETURNING id``, built once per table (statements are immutable,
    and building one costs more than running it). RETURNING yields only the rows inserted (rowcount is -1 for
    this statement under psycopg)."""

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
        labels = sealed_labels(pub.definition, lock)  # before any write: refuses a capsule.yaml the lock does not seal
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
        self._record_labels(capsule_id, version.id, labels)
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

    def _record_labels(self, capsule_id: int, version_id: int, labels: dict[str, str] | None) -> None:
        """The capsule's labels become those of its newest version (the one published last), when the
        publication carried that version's capsule.yaml; publishing the newest again fills them in."""
        if labels is None:
            return
        newest = self.session.scalar(select(func.max(VersionRow.id)).where(VersionRow.capsule_id == capsule_id))
        if newest == version_id:
            self.session.execute(update(CapsuleRow).where(CapsuleRow.id == capsule_id).values(labels=labels))

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
        """Move a delivery to ``status`` and add it to the timeline.

        The last status again adds nothing to the timeline unless it brings a new detail or byte count: a
        retried request, or a publication's receipts arriving after ``ship --publish`` reported the delivery
        live, only fill in its URL and receipts."""
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
        delivery.url = url or delivery.url
        if receipts:
            delivery.receipts = receipts
        if (
            last is not None
            and last.status == status
            and detail in (None, last.detail)
            and nbytes in (None, last.bytes)
        ):
            return delivery, False
        delivery.status, delivery.updated_at = status, utcnow()
        self.session.add(DeliveryEventRow(delivery_id=delivery.id, status=status, detail=detail, bytes=nbytes, url=url))
        if self.session.get_bind().dialect.name == "postgresql":  # every server's event hub wakes on commit
            self.session.execute(text(f"NOTIFY {CHANNEL}"))
        return delivery, True

    def audit(self, actor: str, action: str, subject: str, outcome: str) -> None:
        self.session.add(AuditRow(actor=actor, action=action, subject=subject[:512], outcome=outcome))

    def sync_state(self, repository: str) -> dict[str, str]:
        rows = self.session.scalars(select(SyncStateRow).where(SyncStateRow.repository == repository))
        return {r.ref: r.commit for r in rows}

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

    # -- reading --------------------------------------------------------------
    def version_id(self, name: str, version: str) -> int | None:
        """The newest publication of ``name@version`` (a version number may have been sealed more than once)."""
        return self.session.scalar(
            select(VersionRow.id)
            .join(CapsuleRow)
            .where(CapsuleRow.name == name, VersionRow.version == version)
            .order_by(VersionRow.published_at.desc(), VersionRow.id.desc())
            .limit(1)
        )

    def capsule_page(
        self,
        offset: int,
        limit: int,
        *,
        q: str | None = None,
        label: str | None = None,
        template: str | None = None,
        repository: str | None = None,
    ) -> tuple[list[CapsuleRow], dict[int, list[str]], int]:
        """One page of capsules by the filters of :func:`capsule_filter`, by name; the repositories each lives in
        (by capsule id, sorted; one query for the page); the total that match."""
        where = capsule_filter(q=q, label=label, template=template, repository=repository)
        total = int(self.session.scalar(select(func.count(CapsuleRow.id)).where(where)) or 0)
        rows = list(
            self.session.scalars(select(CapsuleRow).where(where).order_by(CapsuleRow.name).offset(offset).limit(limit))
        )
        repos: dict[int, list[str]] = {}
        for cid, repo in self.session.execute(
            select(RepositoryRow.capsule_id, RepositoryRow.repository)
            .where(RepositoryRow.capsule_id.in_([c.id for c in rows]))
            .order_by(RepositoryRow.repository)
        ):
            repos.setdefault(cid, []).append(repo)
        return rows, repos, total

    def capsules(
        self,
        offset: int,
        limit: int,
        q: str | None = None,
        *,
        label: str | None = None,
        template: str | None = None,
        repository: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Capsules as the API lists them (:meth:`capsule_page`), with the repositories they live in."""
        rows, repos, total = self.capsule_page(
            offset, limit, q=q, label=label, template=template, repository=repository
        )
        out = [
            {"name": c.name, "labels": c.labels, "repositories": repos.get(c.id, []), "created_at": c.created_at}
            for c in rows
        ]
        return out, total

    def versions(self, name: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        base = select(VersionRow).join(CapsuleRow).where(CapsuleRow.name == name)
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.scalars(
            base.order_by(VersionRow.published_at.desc(), VersionRow.id.desc()).offset(offset).limit(limit)
        ).all()
        return self.describe_many(rows, name), int(total)

    def describe_many(self, versions: Sequence[VersionRow], capsule: str) -> list[dict[str, Any]]:
        """Versions of one capsule as the API shows them: one query per related table for the whole page."""
        ids = [v.id for v in versions]
        sigs: dict[int, list[SignatureRow]] = {}
        for sig in self.session.scalars(
            select(SignatureRow).where(SignatureRow.version_id.in_(ids)).order_by(SignatureRow.keyid)
        ):
            sigs.setdefault(sig.version_id, []).append(sig)
        refs: dict[int, list[RefRow]] = {}
        for ref in self.session.scalars(
            select(RefRow).where(RefRow.version_id.in_(ids)).order_by(RefRow.kind, RefRow.name)
        ):
            refs.setdefault(ref.version_id, []).append(ref)
        scores = dict(
            self.session.execute(
                select(ValidationRow.version_id, ValidationRow.score).where(ValidationRow.version_id.in_(ids))
            ).all()
        )
        template_ids = {v.template_id for v in versions if v.template_id}
        templates = {
            t.id: {"name": t.name, "version": t.version}
            for t in self.session.scalars(select(TemplateRow).where(TemplateRow.id.in_(template_ids)))
        }
        return [
            {
                "capsule": capsule,
                "version": v.version,
                "digest": v.digest,
                "commit": v.commit,
                "parents": v.parents,
                "committer": v.committer,
                "signature": {
                    "status": v.signature_status,
                    "reason": v.signature_reason,
                    "signed_at": v.signed_at,
                    "expires_at": v.expires_at,
                    "keys": [
                        {"keyid": s.keyid, "algorithm": s.algorithm, "verified": s.verified} for s in sigs.get(v.id, [])
                    ],
                },
                "tags": [r.name for r in refs.get(v.id, []) if r.kind == "tag"],
                "branches": [r.name for r in refs.get(v.id, []) if r.kind == "branch"],
                "template": templates.get(v.template_id) if v.template_id else None,
                "score": scores.get(v.id),
                "published_at": v.published_at,
                "published_by": v.published_by,
            }
            for v in versions
        ]

    def describe(self, v: VersionRow) -> dict[str, Any]:
        """One version with its files, findings and artifacts."""
        (out,) = self.describe_many([v], v.capsule.name)
        rows = self.session.scalars(select(FileRow).where(FileRow.version_id == v.id).order_by(FileRow.path))
        out["files"] = [{"path": f.path, "sha256": f.sha256, "size": f.size, "mode": f.mode} for f in rows]
        findings = self.session.scalar(select(ValidationRow.findings).where(ValidationRow.version_id == v.id))
        out["findings"] = findings or []
        arts = self.session.scalars(select(ArtifactRow).where(ArtifactRow.version_id == v.id).order_by(ArtifactRow.id))
        out["artifacts"] = [
            {"format": a.format, "name": a.name, "sha256": a.sha256, "size": a.size, "location": a.location}
            for a in arts
        ]
        return out

    def version(self, name: str, version: str) -> dict[str, Any] | None:
        vid = self.version_id(name, version)
        return None if vid is None else self.describe(self.session.get_one(VersionRow, vid))

    def containing(self, sha256: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Versions whose lock lists a file with this SHA-256: newest version first, and within one version its
        paths in reverse order, the index (sha256, version_id, path) read backwards, so a page costs its own
        rows however many versions share the file."""
        base = select(FileRow.version_id).where(FileRow.sha256 == sha256)
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.execute(
            select(FileRow.path, CapsuleRow.name, VersionRow.version, VersionRow.digest, VersionRow.signature_status)
            .join(VersionRow, FileRow.version_id == VersionRow.id)
            .join(CapsuleRow, CapsuleRow.id == VersionRow.capsule_id)
            .where(FileRow.sha256 == sha256)
            .order_by(FileRow.version_id.desc(), FileRow.path.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        keys = ("path", "capsule", "version", "digest", "signature_status")
        return [dict(zip(keys, r, strict=True)) for r in rows], int(total)

    def signed_by(self, keyid: str, *, only: bool, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Versions a verified signature of key ``keyid`` (or a key id starting with it) covers; with
        ``only``, those no other trusted key signed (what to re-sign when K is revoked)."""
        mine = SignatureRow.keyid.startswith(keyid, autoescape=True)
        cond: ColumnElement[bool] = exists().where(
            SignatureRow.version_id == VersionRow.id, SignatureRow.verified.is_(True), mine
        )
        if only:
            other = aliased(SignatureRow)
            cond = and_(
                cond,
                ~exists().where(
                    other.version_id == VersionRow.id,
                    other.verified.is_(True),
                    ~other.keyid.startswith(keyid, autoescape=True),
                ),
            )
        total = self.session.scalar(select(func.count(VersionRow.id)).where(cond)) or 0
        rows = self.session.execute(
            select(CapsuleRow.name, VersionRow.version, VersionRow.digest, VersionRow.signature_status)
            .join(CapsuleRow, CapsuleRow.id == VersionRow.capsule_id)
            .where(cond)
            .order_by(VersionRow.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        keys = ("capsule", "version", "digest", "signature_status")
        return [dict(zip(keys, r, strict=True)) for r in rows], int(total)

    def deliveries(self, name: str, version: str) -> list[dict[str, Any]] | None:
        vid = self.version_id(name, version)
        if vid is None:
            return None
        out = []
        for d in self.session.scalars(
            select(DeliveryRow).where(DeliveryRow.version_id == vid).order_by(DeliveryRow.target)
        ):
            events = self.session.scalars(
                select(DeliveryEventRow).where(DeliveryEventRow.delivery_id == d.id).order_by(DeliveryEventRow.id)
            )
            out.append(
                {
                    "target": d.target,
                    "provider": d.provider,
                    "status": d.status,
                    "url": d.url,
                    "updated_at": d.updated_at,
                    "timeline": [
                        {"status": e.status, "detail": e.detail, "bytes": e.bytes, "url": e.url, "at": e.at}
                        for e in events
                    ],
                }
            )
        return out

    def behind(self, at_least: int) -> list[dict[str, Any]]:
        """Capsules whose newest version was generated from a template version at least ``at_least`` versions
        older than the newest version of that template the catalog knows."""
        known: dict[str, list[str]] = {}
        for t in self.session.scalars(select(TemplateRow)):
            known.setdefault(t.name, []).append(t.version)
        order = {name: sorted(vs, key=_version_key) for name, vs in known.items()}
        newest = (
            select(VersionRow.capsule_id, func.max(VersionRow.id).label("vid"))
            .group_by(VersionRow.capsule_id)
            .subquery()
        )
        rows = self.session.execute(
            select(CapsuleRow.name, VersionRow.version, TemplateRow.name, TemplateRow.version)
            .join(newest, newest.c.capsule_id == CapsuleRow.id)
            .join(VersionRow, VersionRow.id == newest.c.vid)
            .join(TemplateRow, TemplateRow.id == VersionRow.template_id)
        ).all()
        out = []
        for capsule, version, template, tversion in rows:
            versions = order[template]
            lag = len(versions) - 1 - versions.index(tversion)
            if lag >= at_least:
                out.append(
                    {
                        "capsule": capsule,
                        "version": version,
                        "template": template,
                        "template_version": tversion,
                        "newest_template_version": versions[-1],
                        "behind": lag,
                    }
                )
        return sorted(out, key=lambda r: (-r["behind"], r["capsule"]))

    def lineage(self, name: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The capsule's versions as a graph, newest first: each node with the commits of its parents. Only the
        columns a node has are read (a whole capsule's graph is one page; ``versions`` would load each node's
        signatures, refs and score only to drop them)."""
        base = (
            select(
                VersionRow.version, VersionRow.digest, VersionRow.commit, VersionRow.parents, VersionRow.published_at
            )
            .join(CapsuleRow, CapsuleRow.id == VersionRow.capsule_id)
            .where(CapsuleRow.name == name)
        )
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.execute(
            base.order_by(VersionRow.published_at.desc(), VersionRow.id.desc()).offset(offset).limit(limit)
        )
        keys = ("version", "digest", "commit", "parents", "published_at")
        return [dict(zip(keys, r, strict=True)) for r in rows], int(total)

    def _files(self, version_id: int) -> dict[str, tuple[str, str]]:
        rows = self.session.execute(
            select(FileRow.path, FileRow.sha256, FileRow.mode).where(FileRow.version_id == version_id)
        )
        return {path: (sha, mode) for path, sha, mode in rows}

    def diff(self, name: str, old: str, new: str) -> dict[str, Any] | None:
        """What changed between two versions, from their locks: paths added, removed, changed (content or mode)."""
        a, b = self.version_id(name, old), self.version_id(name, new)
        if a is None or b is None:
            return None
        before, after = self._files(a), self._files(b)
        changed = [
            {
                "path": p,
                "from": {"sha256": before[p][0], "mode": before[p][1]},
                "to": {"sha256": after[p][0], "mode": after[p][1]},
            }
            for p in sorted(before.keys() & after.keys())
            if before[p] != after[p]
        ]
        return {
            "capsule": name,
            "from": old,
            "to": new,
            "added": sorted(after.keys() - before.keys()),
            "removed": sorted(before.keys() - after.keys()),
            "changed": changed,
        }

    def scores(self, name: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The validation score of each version, newest first."""
        base = (
            select(VersionRow.version, VersionRow.digest, VersionRow.published_at, ValidationRow.score)
            .join(CapsuleRow, CapsuleRow.id == VersionRow.capsule_id)
            .join(ValidationRow, ValidationRow.version_id == VersionRow.id)
            .where(CapsuleRow.name == name)
        )
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.execute(
            base.order_by(VersionRow.published_at.desc(), VersionRow.id.desc()).offset(offset).limit(limit)
        )
        return [{"version": v, "digest": d, "published_at": at, "score": sc} for v, d, at, sc in rows], int(total)

    def templates(self) -> list[dict[str, Any]]:
        """Every template version known, with the capsules whose versions were generated from it."""
        rows = self.session.execute(
            select(TemplateRow.name, TemplateRow.version, TemplateRow.source, CapsuleRow.name)
            .outerjoin(VersionRow, VersionRow.template_id == TemplateRow.id)
            .outerjoin(CapsuleRow, CapsuleRow.id == VersionRow.capsule_id)
        ).all()
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for template, version, source, capsule in rows:
            entry = found.setdefault(
                (template, version), {"name": template, "version": version, "source": source, "capsules": set()}
            )
            if capsule:
                entry["capsules"].add(capsule)
        out = sorted(found.values(), key=lambda t: (t["name"], _version_key(t["version"])))
        return [{**t, "capsules": sorted(t["capsules"])} for t in out]

    def sizes(self) -> dict[str, int]:
        return {
            "capsules": int(self.session.scalar(select(func.count(CapsuleRow.id))) or 0),
            "versions": int(self.session.scalar(select(func.count(VersionRow.id))) or 0),
            "deliveries": int(self.session.scalar(select(func.count(DeliveryRow.id))) or 0),
        }


def _version_key(text: str) -> tuple[int, Any]:
    """Template versions in release order: PEP 440/SemVer-like ones by ``packaging``, the rest after, by text."""

    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def when(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def sealed_labels(definition: str | None, lock: Lock) -> dict[str, str] | None:
    """The labels of a publication's capsule.yaml (``Publication.definition``), or None when it carries none.

    The text is trusted only as far as the lock seals it: its SHA-256 must be the lock's entry for capsule.yaml
    (else :class:`VerificationError`, refused like any tampering). Its labels must be a mapping of strings within
    :data:`MAX_LABELS` and the lengths beside it (else :class:`InputError`)."""
    if definition is None:
        return None
    sealed = next((e.sha256 for e in lock.files if e.path == "capsule.yaml"), None)
    if sealed != hashlib.sha256(definition.encode("utf-8")).hexdigest():
        raise VerificationError(
            f"definition: this capsule.yaml is not the one {lock.name}@{lock.version}'s lock seals (SHA-256 differs)"
        )
    data = yamlsrc.safe_load(definition, "definition (capsule.yaml)")
    labels = data.get("labels", {}) if isinstance(data, dict) else {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in [*labels, *labels.values()]):
        raise InputError("definition (capsule.yaml): labels: expected a mapping of strings to strings")
    if len(labels) > MAX_LABELS or any(len(k) > MAX_LABEL_KEY or len(v) > MAX_LABEL_VALUE for k, v in labels.items()):
        raise InputError(
            f"definition (capsule.yaml): labels: the catalog keeps at most {MAX_LABELS} labels, keys of at most "
            f"{MAX_LABEL_KEY} and values of at most {MAX_LABEL_VALUE} characters"
        )
    return dict(labels)


def capsule_filter(
    *, q: str | None = None, label: str | None = None, template: str | None = None, repository: str | None = None
) -> ColumnElement[bool]:
    """The capsules whose name contains ``q``, that carry ``label`` (``key`` or ``key=value``; a key that is not
    a :data:`LABEL_KEY` matches nothing), that have a version generated from the template named ``template``,
    and that live in a repository whose path or URL contains ``repository``: the API's and the page's filter."""
    conds: list[ColumnElement[bool]] = [CapsuleRow.name.contains(q, autoescape=True)] if q else []
    if label:
        key, has_value, value = label.partition("=")
        if not re.fullmatch(LABEL_KEY, key):
            conds.append(false())
        else:
            # ->> on PostgreSQL, json_extract on SQLite: NULL when the key is absent
            found = CapsuleRow.labels[key].as_string()
            conds.append(found == value if has_value else found.is_not(None))
    if template:
        conds.append(
            exists().where(
                VersionRow.capsule_id == CapsuleRow.id,
                VersionRow.template_id == TemplateRow.id,
                TemplateRow.name == template,
            )
        )
    if repository:
        conds.append(
            exists().where(
                RepositoryRow.capsule_id == CapsuleRow.id,
                RepositoryRow.repository.contains(repository, autoescape=True),
            )
        )
    return and_(true(), *conds)


# -- queries of the web pages (server/qlcapsule_server/pages, docs/pages.md) ----------------------------------
# Each answers one page section in a bounded number of queries (none per row), so a page's cost does not grow
# with the catalog's size beyond what it shows.


# -- queries of the web pages (server/qlcapsule_server/pages, docs/pages.md) ----------------------------------
# Each answers one page section in a bounded number of queries (none per row), so a page's cost does not grow
# with the catalog's size beyond what it shows.


def search_capsules(
    catalog: Catalog,
    offset: int,
    limit: int,
    *,
    q: str | None = None,
    label: str | None = None,
    template: str | None = None,
    repository: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Capsules by :meth:`Catalog.capsule_page`, each with its newest version, score and newest delivery's status."""
    session = catalog.session
    rows, repos, total = catalog.capsule_page(offset, limit, q=q, label=label, template=template, repository=repository)
    ids = [c.id for c in rows]
    newest = (
        select(func.max(VersionRow.id)).where(VersionRow.capsule_id.in_(ids)).group_by(VersionRow.capsule_id)
    ).scalar_subquery()
    last: dict[int, dict[str, Any]] = {}
    for cid, version, status, score, tname, tversion in session.execute(
        select(
            VersionRow.capsule_id,
            VersionRow.version,
            VersionRow.signature_status,
            ValidationRow.score,
            TemplateRow.name,
            TemplateRow.version,
        )
        .outerjoin(ValidationRow, ValidationRow.version_id == VersionRow.id)
        .outerjoin(TemplateRow, TemplateRow.id == VersionRow.template_id)
        .where(VersionRow.id.in_(newest))
    ):
        template_of = {"name": tname, "version": tversion} if tname else None
        last[cid] = {"version": version, "signature_status": status, "score": score, "template": template_of}
    newest_delivery = (
        select(func.max(DeliveryRow.id))
        .join(VersionRow, VersionRow.id == DeliveryRow.version_id)
        .where(VersionRow.capsule_id.in_(ids))
        .group_by(VersionRow.capsule_id)
    ).scalar_subquery()
    delivered = dict(
        session.execute(
            select(VersionRow.capsule_id, DeliveryRow.status)
            .join(VersionRow, VersionRow.id == DeliveryRow.version_id)
            .where(DeliveryRow.id.in_(newest_delivery))
        ).all()
    )
    out = [
        {
            "name": c.name,
            "labels": c.labels,
            "repositories": repos.get(c.id, []),
            "last": last.get(c.id),
            "last_delivery_status": delivered.get(c.id),
        }
        for c in rows
    ]
    return out, total


def capsule_targets(catalog: Catalog, name: str) -> list[dict[str, Any]]:
    """Deliveries of a capsule per target: how many in each status, and the newest one's version and status."""
    base = (
        select(DeliveryRow.target, DeliveryRow.provider, DeliveryRow.status, func.count(DeliveryRow.id))
        .join(VersionRow, VersionRow.id == DeliveryRow.version_id)
        .join(CapsuleRow, CapsuleRow.id == VersionRow.capsule_id)
        .where(CapsuleRow.name == name)
        .group_by(DeliveryRow.target, DeliveryRow.provider, DeliveryRow.status)
    )
    found: dict[str, dict[str, Any]] = {}
    for target, provider, status, count in catalog.session.execute(base):
        entry = found.setdefault(target, {"target": target, "provider": provider, "counts": {}, "newest": None})
        entry["counts"][status] = int(count)
    newest = (
        select(func.max(DeliveryRow.id))
        .join(VersionRow, VersionRow.id == DeliveryRow.version_id)
        .join(CapsuleRow, CapsuleRow.id == VersionRow.capsule_id)
        .where(CapsuleRow.name == name)
        .group_by(DeliveryRow.target)
    ).scalar_subquery()
    for target, version, status, at in catalog.session.execute(
        select(DeliveryRow.target, VersionRow.version, DeliveryRow.status, DeliveryRow.updated_at)
        .join(VersionRow, VersionRow.id == DeliveryRow.version_id)
        .where(DeliveryRow.id.in_(newest))
    ):
        found[target]["newest"] = {"version": version, "status": status, "updated_at": at}
    return [found[t] for t in sorted(found)]


def delivery_receipts(catalog: Catalog, name: str, version: str) -> dict[str, list[dict[str, Any]]]:
    """The receipts recorded for each target of ``name@version`` (the ship report's, as published)."""
    vid = catalog.version_id(name, version)
    rows = catalog.session.execute(
        select(DeliveryRow.target, DeliveryRow.receipts).where(DeliveryRow.version_id == vid)
    ).all()
    return {target: list(receipts or []) for target, receipts in rows}


def versions_at_commits(catalog: Catalog, name: str, commits: Sequence[str]) -> dict[str, str]:
    """The version recorded at each of these store commits (a version's parents are commits)."""
    if not commits:
        return {}
    rows = catalog.session.execute(
        select(VersionRow.commit, VersionRow.version)
        .join(CapsuleRow, CapsuleRow.id == VersionRow.capsule_id)
        .where(CapsuleRow.name == name, VersionRow.commit.in_(list(commits)))
    ).all()
    return {str(c): v for c, v in rows}


def signing_keys(catalog: Catalog) -> list[dict[str, Any]]:
    """Every key id seen on a signature: versions it verifiably signed, versions naming it unverified."""
    rows = catalog.session.execute(
        select(
            SignatureRow.keyid,
            func.max(SignatureRow.algorithm),
            SignatureRow.verified,
            func.count(SignatureRow.id),
        ).group_by(SignatureRow.keyid, SignatureRow.verified)
    ).all()
    found: dict[str, dict[str, Any]] = {}
    for keyid, algorithm, verified, count in rows:
        entry = found.setdefault(keyid, {"keyid": keyid, "algorithm": None, "verified": 0, "unverified": 0})
        entry["algorithm"] = entry["algorithm"] or algorithm
        entry["verified" if verified else "unverified"] += int(count)
    return sorted(found.values(), key=lambda k: (-k["verified"], k["keyid"]))


def deliveries_of(catalog: Catalog, refs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The deliveries of these (capsule, digest) versions: what to re-deliver when their only key is revoked."""
    if not refs:
        return []
    wanted = {(c, d) for c, d in refs}
    digests = sorted({d for _, d in wanted})
    rows = catalog.session.execute(
        select(CapsuleRow.name, VersionRow.version, VersionRow.digest, DeliveryRow.target, DeliveryRow.status)
        .join(VersionRow, VersionRow.id == DeliveryRow.version_id)
        .join(CapsuleRow, CapsuleRow.id == VersionRow.capsule_id)
        .where(VersionRow.digest.in_(digests))
        .order_by(CapsuleRow.name, VersionRow.id.desc(), DeliveryRow.target)
    ).all()
    keys = ("capsule", "version", "digest", "target", "status")
    return [dict(zip(keys, r, strict=True)) for r in rows if (r[0], r[2]) in wanted]


def dashboard(catalog: Catalog, days: int = 30) -> dict[str, list[dict[str, Any]]]:
    """The dashboard's series, aggregated in the database: deliveries per day by status and provider,
    verification failures by cause, validation scores by band, versions published per day."""
    session = catalog.session
    since = utcnow() - dt.timedelta(days=days)
    day = func.date(DeliveryRow.updated_at)
    deliveries = [
        {"day": str(d), "status": s, "provider": p, "count": int(n)}
        for d, s, p, n in session.execute(
            select(day, DeliveryRow.status, DeliveryRow.provider, func.count(DeliveryRow.id))
            .where(DeliveryRow.updated_at >= since)
            .group_by(day, DeliveryRow.status, DeliveryRow.provider)
            .order_by(day)
        )
    ]
    failures = [
        {"cause": f"signature {s}", "count": int(n)}
        for s, n in session.execute(
            select(VersionRow.signature_status, func.count(VersionRow.id))
            .where(VersionRow.signature_status != "verified")
            .group_by(VersionRow.signature_status)
            .order_by(VersionRow.signature_status)
        )
    ]
    failures += [
        {"cause": f"delivery failed ({p})", "count": int(n)}
        for p, n in session.execute(
            select(DeliveryRow.provider, func.count(DeliveryRow.id))
            .where(DeliveryRow.status == "failed")
            .group_by(DeliveryRow.provider)
            .order_by(DeliveryRow.provider)
        )
    ]
    # CAST truncates like floor for scores in 0..1 (SQLite has no floor() unless built with its math functions)
    band = cast(func.coalesce(ValidationRow.score, -1.0) * 10, Integer)
    scores = [
        {"band": _band(b), "count": int(n)}
        for b, n in session.execute(select(band, func.count(ValidationRow.id)).group_by(band).order_by(band))
    ]
    pday = func.date(VersionRow.published_at)
    published = [
        {"day": str(d), "count": int(n)}
        for d, n in session.execute(
            select(pday, func.count(VersionRow.id))
            .where(VersionRow.published_at >= since)
            .group_by(pday)
            .order_by(pday)
        )
    ]
    return {"deliveries": deliveries, "failures": failures, "scores": scores, "published": published}


def _band(value: Any) -> str:
    """A score band's label: ``0.9-1.0`` (1.0 counts as the top band), or ``none`` for no score."""
    b = int(value)
    if b < 0:
        return "none"
    b = min(b, 9)
    return f"{b / 10:.1f}-{(b + 1) / 10:.1f}"
