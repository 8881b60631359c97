"""Checking a sealed capsule's lock and files for a commit, reading only what changed.

``read_lock`` is :func:`qlcapsule.format.lock.parse_lock` (the one lock reader) and
:attr:`qlcapsule.format.lock.Lock.edited` (the one digest), with each file's SHA-256
as raw bytes, the form the stat cache keeps.
``scan`` is :func:`qlcapsule.format.tree.walk` for this one job: the same refusals
(symlinks, devices, FIFOs, sockets, names that are not UTF-8 or hold a
backslash) and the same pruning, but it returns ``path -> lstat`` unsorted,
because the commit looks files up by the lock's paths and never needs the
walk's order. ``check_disk`` compares each locked file with its lstat, the
stat cache and the parent version: a file is read only when the cache does
not vouch for its stat (hash it) or its content is new to the store (hash it
while writing its blob).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple

from ..errors import IntegrityError
from ..format.globs import GlobSet
from ..format.lock import EDITED, parse_lock
from ..format.tree import Found, hash_files, visit
from .statcache import EXEC, FLAGS, NO_OID, OID, SHA, TRUSTED, Record, StatCache, record

LockFiles = list[tuple[str, bytes, int, str]]  # (path, sha256 raw, size, mode) in lock order


class LockRead(NamedTuple):
    """A capsule.lock as the commit needs it."""

    name: str
    version: str
    digest: str
    files: LockFiles


class DiskCheck(NamedTuple):
    """What ``check_disk`` found.

    ``records``: a stat cache record for every locked file that matched (blob
    id known when the parent holds the same content at that path);
    ``hash_only``: files to hash before trusting them (their content is
    already a blob in the parent); ``need_blob``: files whose content is new;
    ``changed``: paths whose content or mode differ from the parent (or that
    it lacks); ``gone``: the parent's paths the lock no longer lists.
    """

    records: dict[str, Record]
    problems: list[str]
    hash_only: list[str]
    need_blob: list[str]
    changed: list[str]
    gone: list[str]


def read_lock(raw: bytes, where: str) -> LockRead:
    """Parse and check capsule.lock through :func:`qlcapsule.format.lock.parse_lock` (DefinitionError, exit 2).

    Raises IntegrityError (one problem line) when the digest does not match
    the file list: an edited lock.
    """
    lock = parse_lock(raw, where)
    if lock.edited:
        raise IntegrityError(f"lock: {EDITED}")
    shas = bytes.fromhex("".join([e.sha256 for e in lock.files]))
    files = [
        (e.path, shas[i : i + 32], e.size, e.mode) for i, e in zip(range(0, len(shas), 32), lock.files, strict=True)
    ]
    return LockRead(lock.name, lock.version, lock.digest, files)


def scan(root: str, globs: GlobSet) -> dict[str, os.stat_result]:
    """Every included regular file under ``root`` -> its lstat (unsorted)."""
    out: dict[str, os.stat_result] = {}

    def emit(path: str, entry: os.DirEntry[str]) -> None:
        out[path] = entry.stat(follow_symlinks=False)

    visit(root, globs, emit)
    return out


def check_disk(
    root: Path,
    globs: GlobSet,
    files: LockFiles,
    cache: StatCache,
    before: dict[str, Record],
    has_sha: Callable[[bytes], bool],
) -> DiskCheck:
    """Compare disk and lock, reading no file whose stat the cache vouches for.

    ``before``: the parent's files as records (blob ids may be unknown) — the
    cache's own records when they describe the parent; ``has_sha``: whether
    some content is already a blob in the parent.
    """
    found = scan(str(root), globs)
    removed: list[str] = []
    problems: list[str] = []
    records: dict[str, Record] = {}
    hash_only: list[str] = []
    need_blob: list[str] = []
    changed: list[str] = []
    known = cache.records
    pop = found.pop
    in_before = 0
    for path, sha, size, mode in files:
        st = pop(path, None)
        if st is None:
            removed.append(f"removed: {path}")
            continue
        st_mode = st.st_mode
        if ("755" if st_mode & 0o111 else "644") != mode:
            problems.append(f"mode changed: {path}")
            continue
        if st.st_size != size:
            problems.append(f"modified: {path}")
            continue
        key = (size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st_mode)
        rec = known.get(path)
        if rec is not None and not (rec[FLAGS] & TRUSTED and rec[:5] == key):
            rec = None  # the cache does not vouch for this file: read it
        if rec is not None and rec[SHA] != sha:
            problems.append(f"modified: {path}")
            continue
        was = before.get(path)
        if was is rec is not None:  # the common case: the cache describes the parent and vouches for the file
            records[path] = rec  # same content, same mode (st_mode is in the key), same blob
            in_before += 1
            continue
        if was is not None:
            in_before += 1
        if was is not None and was[SHA] == sha:
            oid = was[OID]
            if was[FLAGS] & EXEC != (EXEC if mode == "755" else 0):
                changed.append(path)
            if rec is None:
                hash_only.append(path)
        else:
            oid = NO_OID
            changed.append(path)
            if not has_sha(sha):
                need_blob.append(path)
            elif rec is None:
                hash_only.append(path)
        # a trusted record for the same content and blob is kept as it is
        records[path] = rec if rec is not None and rec[OID] == oid else record(key, sha, oid, mode)
    gone: list[str] = []
    if in_before < len(before):
        listed = {f[0] for f in files}
        gone = [p for p in before if p not in listed]
    added = [f"added: {p}" for p in sorted(found)]
    return DiskCheck(records, removed + added + problems, hash_only, need_blob, changed, gone)


def hash_check(root: Path, paths: list[str], records: dict[str, Record]) -> list[str]:
    """Hash ``paths``; a problem line for each whose SHA-256 is not the one in ``records``."""
    got = hash_files(root, [Found(p, 0, "644") for p in paths])
    return [f"modified: {e.path}" for e in got if e.sha256 != records[e.path][SHA].hex()]
