"""``qlcapsule catalog sync REPO``: index the capsule versions of a version store through the publish API.

The store's layout is the documented one (ARCHITECTURE.md, "Version store"): ``refs/capsules/<name>/heads/
<branch>`` and ``refs/capsules/<name>/tags/<version>``, each version a commit whose tree holds capsule.lock and
capsule.sig. Each new commit is sent to ``POST /api/v1/publish`` like a ship report, so the server's own trust
policy judges it and the write is idempotent by digest; nothing read from the repository is trusted here.

Incremental: the server keeps, per repository and head ref, the commit indexed last (``/api/v1/sync``). A run
walks each head from its tip down to that commit only (pygit2's revwalk with the old tip hidden), publishes the
new commits oldest first, then moves the server's record with a compare-and-swap. Two runs at once publish the
same commits (a no-op for the second) and only one moves the record: safe from cron or many workers.

A git URL is fetched (``+refs/capsules/*:refs/capsules/*``) into a bare mirror under the user's cache
directory first; a path is read in place.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pygit2

from qlcapsule import CredentialsError, InputError, parse_lock

from .client import check_url, error_line, request
from .gitstore import REF_ROOT, blob_text, open_repository, refs


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


def sync(url: str, token: str, repo: str) -> SyncResult:
    """Index the new versions of ``repo`` into the catalog at ``url`` (see the module docstring)."""

    base = check_url(url)
    git, name = open_repository(repo)
    result = SyncResult(name)
    status, answer = request(f"{base}/api/v1/sync?{urllib.parse.urlencode({'repository': name})}", token)
    _check(base, status, answer)
    known: dict[str, str] = dict(answer.get("refs") or {})
    heads, tags = refs(git)
    result.refs = len(heads)
    for refname, tip in sorted(heads.items()):
        old = known.get(refname)
        if old == tip:
            continue
        branch = refname[len(REF_ROOT) :].split("/", 2)[2]
        walker = git.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
        if old is not None and pygit2.Oid(hex=old) in git:
            walker.hide(old)
        for commit in walker:
            _publish_commit(base, token, git, commit, name, branch if str(commit.id) == tip else None, tags, result)
        status, answer = request(
            f"{base}/api/v1/sync", token, "POST", {"repository": name, "ref": refname, "commit": tip, "previous": old}
        )
        _check(base, status, answer)
    return result


def _publish_commit(
    base: str,
    token: str,
    git: Any,
    commit: Any,
    repository: str,
    branch: str | None,
    tags: dict[str, list[str]],
    result: SyncResult,
) -> None:
    cid = str(commit.id)
    where = f"{repository}@{cid[:12]}"
    lock = blob_text(commit.tree, "capsule.lock", where)
    if lock is None:
        result.skipped.append(f"{cid[:12]}: no capsule.lock")
        return

    try:
        parsed = parse_lock(lock.encode("utf-8"), f"{where}: capsule.lock")
    except InputError as exc:
        result.skipped.append(f"{cid[:12]}: {exc.message}")
        return
    author = commit.author
    body = {
        "capsule": {
            "name": parsed.name,
            "version": parsed.version,
            "digest": parsed.digest,
            "commit": cid,
            "store": repository,
        },
        "lock": lock,
        "envelope": blob_text(commit.tree, "capsule.sig", where),
        "definition": blob_text(commit.tree, "capsule.yaml", where),  # its labels, when the lock seals it
        "repository": repository,
        "committer": f"{author.name} <{author.email}>"[:512],
        "parents": [str(p) for p in commit.parent_ids],
        "tags": sorted(tags.get(cid, [])),
        "branches": [branch] if branch else [],
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
