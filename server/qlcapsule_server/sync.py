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

import hashlib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qlcapsule import CredentialsError, InputError, StoreError

from .client import check_url, error_line, request

REF_ROOT = "refs/capsules/"
#: a capsule.lock or capsule.sig blob larger than this is not read (the server refuses it anyway)
MAX_BLOB = 16 * 1024 * 1024


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


def _is_url(repo: str) -> bool:
    return "://" in repo or (repo.count(":") == 1 and "@" in repo.split(":", 1)[0])


def open_repository(repo: str) -> tuple[Any, str]:
    """(pygit2 repository, the name the catalog records it under)."""
    import pygit2

    if _is_url(repo):
        parts = urllib.parse.urlsplit(repo)
        shown = urllib.parse.urlunsplit(parts._replace(netloc=parts.hostname or "")) if parts.password else repo
        from .config import cache_dir

        mirror = cache_dir() / "sync" / (hashlib.sha256(shown.encode()).hexdigest()[:24] + ".git")
        mirror.parent.mkdir(parents=True, exist_ok=True)
        local = (
            pygit2.Repository(str(mirror))
            if (mirror / "HEAD").is_file()
            else pygit2.init_repository(str(mirror), bare=True)
        )
        try:
            local.remotes.create_anonymous(repo).fetch(
                [f"+{REF_ROOT}*:{REF_ROOT}*"], prune=pygit2.enums.FetchPrune.PRUNE
            )
        except pygit2.GitError as exc:
            raise StoreError(f"{shown}: fetching refs/capsules/* failed: {exc}") from None
        return local, shown
    path = Path(repo).expanduser()
    try:
        found = pygit2.Repository(str(path))
    except (pygit2.GitError, KeyError, ValueError):
        raise InputError(f"{repo}: not a git repository (a version store: a path or a git URL)") from None
    return found, str(path.resolve())


def _blob_text(tree: Any, name: str, where: str) -> str | None:
    import pygit2

    try:
        blob = tree[name]
    except KeyError:
        return None
    if not isinstance(blob, pygit2.Blob):
        raise InputError(f"{where}: {name} is not a file")
    if blob.size > MAX_BLOB:
        raise InputError(f"{where}: {name} is larger than {MAX_BLOB} bytes")
    try:
        return bytes(blob.data).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{where}: {name} is not UTF-8") from None


def commit_facts(store: str, commit: str) -> dict[str, Any]:
    """The lineage ``ship --json`` does not carry: the parents and committer of ``commit`` in ``store``, and
    the store's tags pointing at it ({} when the store or the commit cannot be read: publishing goes on)."""
    import pygit2

    try:
        repo = pygit2.Repository(store)
        found = repo.get(commit)
    except (pygit2.GitError, KeyError, ValueError):
        return {}
    if not isinstance(found, pygit2.Commit):
        return {}
    _, tags = _refs(repo)
    author = found.author
    return {
        "parents": [str(p) for p in found.parent_ids],
        "committer": f"{author.name} <{author.email}>"[:512],
        "tags": sorted(tags.get(commit, [])),
    }


def _refs(repo: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(head ref -> commit id, commit id -> tag versions) under refs/capsules/."""
    import pygit2

    heads: dict[str, str] = {}
    tags: dict[str, list[str]] = {}
    for refname in repo.listall_references():
        if not refname.startswith(REF_ROOT):
            continue
        parts = refname[len(REF_ROOT) :].split("/", 2)
        if len(parts) != 3:
            continue
        try:
            commit = repo.references[refname].peel(pygit2.Commit)
        except (pygit2.GitError, KeyError, ValueError):
            continue  # a ref to a missing or non-commit object: nothing to index
        if parts[1] == "heads":
            heads[refname] = str(commit.id)
        elif parts[1] == "tags":
            tags.setdefault(str(commit.id), []).append(parts[2])
    return heads, tags


def sync(url: str, token: str, repo: str) -> SyncResult:
    """Index the new versions of ``repo`` into the catalog at ``url`` (see the module docstring)."""
    import pygit2

    base = check_url(url)
    git, name = open_repository(repo)
    result = SyncResult(name)
    status, answer = request(f"{base}/api/v1/sync?{urllib.parse.urlencode({'repository': name})}", token)
    _check(base, status, answer)
    known: dict[str, str] = dict(answer.get("refs") or {})
    heads, tags = _refs(git)
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
    lock = _blob_text(commit.tree, "capsule.lock", where)
    if lock is None:
        result.skipped.append(f"{cid[:12]}: no capsule.lock")
        return
    from qlcapsule import parse_lock

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
        "envelope": _blob_text(commit.tree, "capsule.sig", where),
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
