"""Reading a version store through pygit2, by its documented layout (ARCHITECTURE.md, "Version store").

``refs/capsules/<name>/heads/<branch>`` and ``refs/capsules/<name>/tags/<version>``; a version is a commit
whose tree holds capsule.lock and capsule.sig. Nothing read here is trusted: the server judges every version
like a publication. Blobs are size-checked before they are read.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from pathlib import Path
from typing import Any

from qlcapsule import InputError, StoreError

REF_ROOT = "refs/capsules/"
#: a capsule.lock or capsule.sig blob larger than this is not read (the server refuses it anyway)
MAX_BLOB = 16 * 1024 * 1024


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


def blob_text(tree: Any, name: str, where: str) -> str | None:
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


def refs(repo: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
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
    _, tags = refs(repo)
    author = found.author
    return {
        "parents": [str(p) for p in found.parent_ids],
        "committer": f"{author.name} <{author.email}>"[:512],
        "tags": sorted(tags.get(commit, [])),
    }
