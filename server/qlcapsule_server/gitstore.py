"""Getting at a version store: a path read in place, a git URL fetched into a mirror first.

What a store holds is read by the core's one reader, :func:`qlcapsule.read_store` (docs/versions.md,
"Reading a store someone else wrote"): it bounds what it reads and follows nothing the repository names
outside itself. Nothing read is trusted here either: the server judges every version like a publication.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from typing import Any

import pygit2

from qlcapsule import QlcapsuleError, StoreError, StoreReader, read_store

from .config import cache_dir

#: what a mirror fetches: the store's refs (``refs/capsules/*``, the layout read_store reads) and nothing else
REFSPEC = "+refs/capsules/*:refs/capsules/*"
#: a capsule.lock or capsule.sig blob larger than this is not read (the server's body limit refuses it anyway)
MAX_BLOB = 16 * 1024 * 1024


def _is_url(repo: str) -> bool:
    return "://" in repo or (repo.count(":") == 1 and "@" in repo.split(":", 1)[0])


def open_repository(repo: str) -> tuple[StoreReader, str]:
    """(the store's reader, the name the catalog records it under: the URL without a password, or the path)."""

    if not _is_url(repo):
        reader = read_store(repo, max_file=MAX_BLOB)
        return reader, reader.location
    parts = urllib.parse.urlsplit(repo)
    shown = urllib.parse.urlunsplit(parts._replace(netloc=parts.hostname or "")) if parts.password else repo
    mirror = cache_dir() / "sync" / (hashlib.sha256(shown.encode()).hexdigest()[:24] + ".git")
    mirror.parent.mkdir(parents=True, exist_ok=True)
    local = (
        pygit2.Repository(str(mirror))
        if (mirror / "HEAD").is_file()
        else pygit2.init_repository(str(mirror), bare=True)
    )
    try:
        local.remotes.create_anonymous(repo).fetch([REFSPEC], prune=pygit2.enums.FetchPrune.PRUNE)
    except pygit2.GitError as exc:
        raise StoreError(f"{shown}: fetching refs/capsules/* failed: {exc}") from None
    return read_store(mirror, max_file=MAX_BLOB), shown


def commit_facts(store: str, commit: str) -> dict[str, Any]:
    """The lineage ``ship --json`` does not carry: the parents and author of ``commit`` in ``store``, and the
    capsule's tags pointing at it ({} when the store or the commit cannot be read: publishing goes on)."""

    try:
        found = read_store(store, max_file=1).version(commit)  # max_file=1: only the lineage is wanted
    except QlcapsuleError:
        return {}
    if found is None:
        return {}
    return {"parents": list(found.parents), "committer": found.author, "tags": list(found.tags)}
