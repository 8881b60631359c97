"""``qlcapsule catalog sync REPO``: index the capsule versions of a version store through the publish API.

The store is read by the core's one reader (:func:`qlcapsule.read_store`, docs/versions.md): the heads under
``refs/capsules/<name>/heads/``, each version a commit whose tree holds capsule.lock and capsule.sig. Each new
commit is sent to ``POST /api/v1/publish`` like a ship report, so the server's own trust policy judges it and
the write is idempotent by digest; nothing read from the repository is trusted here.

Incremental: the server keeps, per repository and head ref, the commit indexed last (``/api/v1/sync``). A run
walks each head from that commit to its tip only, publishes the new commits oldest first, then moves the
server's record with a compare-and-swap. Two runs at once publish the same commits (a no-op for the second)
and only one moves the record: safe from cron or many workers.

Bounded: at most :data:`MAX_COMMITS` commits are published per run; a head cut short has its record moved to
the last commit published, and the next run goes on from there. The reader bounds the refs and the blobs.

A git URL is fetched (``+refs/capsules/*:refs/capsules/*``) into a bare mirror under the user's cache
directory first; a path is read in place.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from qlcapsule import CredentialsError, InputError, StoredVersion, parse_lock

from .client import check_url, error_line, request
from .gitstore import open_repository

#: the most commits one run publishes (the rest wait for the next run)
MAX_COMMITS = 10_000


@dataclass
class SyncResult:
    repository: str
    published: int = 0
    unchanged: int = 0
    refused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    refs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "refs": self.refs,
            "published": self.published,
            "unchanged": self.unchanged,
            "refused": self.refused,
            "skipped": self.skipped,
        }


def sync(url: str, token: str, repo: str, *, max_commits: int = MAX_COMMITS) -> SyncResult:
    """Index the new versions of ``repo`` into the catalog at ``url`` (see the module docstring)."""

    base = check_url(url)
    reader, name = open_repository(repo)
    result = SyncResult(name, skipped=list(reader.skipped))
    status, answer = request(f"{base}/api/v1/sync?{urllib.parse.urlencode({'repository': name})}", token)
    _check(base, status, answer)
    known = {k: v for k, v in (answer.get("refs") or {}).items() if isinstance(v, str)}
    result.refs = len(reader.heads)
    budget = max_commits
    for refname, tip in sorted(reader.heads.items()):
        old = known.get(refname)
        if old == tip:
            continue
        if budget <= 0:
            result.skipped.append(f"{refname}: left for the next run (at most {max_commits} commits per run)")
            continue
        last = None
        for version in reader.versions(refname, since=old, limit=budget):
            budget -= 1
            _publish_version(base, token, version, name, result)
            last = version.commit
        reached = last or tip  # the tip comes last: any other last commit means the walk was cut short
        if reached != tip:
            result.skipped.append(
                f"{refname}: indexed up to {reached[:12]}; the rest is left for the next run "
                f"(at most {max_commits} commits per run)"
            )
        status, answer = request(
            f"{base}/api/v1/sync",
            token,
            "POST",
            {"repository": name, "ref": refname, "commit": reached, "previous": old},
        )
        _check(base, status, answer)
    return result


def _publish_version(base: str, token: str, version: StoredVersion, repository: str, result: SyncResult) -> None:
    cid = version.commit
    where = f"{repository}@{cid[:12]}"
    if version.lock is None:
        result.skipped.append(f"{cid[:12]}: {version.problem or 'no capsule.lock'}")
        return
    try:
        lock = version.lock.decode("utf-8")
        envelope = version.signature.decode("utf-8") if version.signature is not None else None
        definition = version.definition.decode("utf-8") if version.definition is not None else None
    except UnicodeDecodeError:
        result.skipped.append(f"{cid[:12]}: capsule.lock, capsule.sig or capsule.yaml is not UTF-8")
        return
    try:
        parsed = parse_lock(version.lock, f"{where}: capsule.lock")
    except InputError as exc:
        result.skipped.append(f"{cid[:12]}: {exc.message}")
        return
    body = {
        "capsule": {
            "name": parsed.name,
            "version": parsed.version,
            "digest": parsed.digest,
            "commit": cid,
            "store": repository,
        },
        "lock": lock,
        "envelope": envelope,
        "definition": definition,  # its labels, when the lock seals it
        "repository": repository,
        "committer": version.author,
        "parents": list(version.parents),
        "tags": list(version.tags),
        "branches": list(version.branches),
    }
    status, answer = request(f"{base}/api/v1/publish", token, "POST", body)
    if status == 422:
        result.refused.append(f"{parsed.name}@{parsed.version} ({cid[:12]}): {error_line(status, answer)}")
        return
    _check(base, status, answer)
    if answer.get("created"):
        result.published += 1
    else:
        result.unchanged += 1


def _check(base: str, status: int, answer: Any) -> None:
    if status in (401, 403):
        raise CredentialsError(f"{base}: {error_line(status, answer)}")
    if status >= 400 or not isinstance(answer, dict):
        raise InputError(f"{base}: {error_line(status, answer)}")
