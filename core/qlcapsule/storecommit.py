"""Turning a sealed capsule directory into a commit, reading only what changed.

Steps: check the lock against the disk (stat cache first, then hashing only
the files whose stat changed), map each locked SHA-256 to a blob id already in
the parent version (through the parent's capsule.lock), write blobs only for
new content (a packfile when there are many), rebuild only the trees on the
changed paths, then — under the capsule's lock — create the commit on top of
the current branch head and move the ref with compare-and-swap.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from .capsule import Capsule
from .errors import StoreError
from .gitpack import hash_blob_file, write_blobs, write_loose, write_objects
from .lock import parse_lock
from .log import event, get_logger
from .model import LOCK_FILE, SIG_FILE
from .statcache import StatCache, StatKey, stat_key
from .store import (
    _RETRIES,
    DEFAULT_BRANCH,
        MERGE_STATE,
    CommitResult,
    Store,
    _enable_fsync,
    _pygit2,
    check_branch_name,
    integrity_error,
    open_store,
    parse_trailers,
    read_merge_state,
    signature,
    version_message,
)
from .tree import walk

log = get_logger("store")

#: above this many new blobs, write one packfile per worker instead of loose objects
PACK_THRESHOLD = 32
_MODES = {"644": 0o100644, "755": 0o100755}


class _ParentVersion:
    """What a commit needs from the previous version, read lazily.

    ``files`` maps path -> (sha256, mode) from the parent's capsule.lock;
    blob ids are looked up in the parent tree only for the paths that changed.
    """

    def __init__(self, repo: Any, commit: Any | None) -> None:
        self.repo = repo
        self.commit = commit
        self.files: dict[str, tuple[str, str]] = {}
        self.by_sha: dict[str, str] = {}
        self.extra: dict[str, Any] = {}  # capsule.lock / capsule.sig entries
        if commit is None:
            return
        tree = commit.tree
        for special in (LOCK_FILE, SIG_FILE):
            if special in tree:
                entry = tree[special]
                self.extra[special] = (entry.id, entry.filemode)
        if LOCK_FILE not in self.extra:
            return
        try:
            files = json.loads(repo[self.extra[LOCK_FILE][0]].data)["files"]
            for f in files:
                self.files[f["path"]] = (f["sha256"], f["mode"])
                self.by_sha.setdefault(f["sha256"], f["path"])
        except (ValueError, KeyError, TypeError):
            self.files.clear()
            self.by_sha.clear()

    def blob_for(self, sha256: str) -> Any | None:
        path = self.by_sha.get(sha256)
        if path is None:
            return None
        try:
            return self.commit.tree[path].id  # type: ignore[union-attr]
        except KeyError:
            return None


def _light_lock(raw: bytes, where: str) -> tuple[Any, list[tuple[str, str, int, str]]]:
    """Parse capsule.lock fast: plain JSON checks, pydantic only to explain a bad lock."""
    try:
        doc = json.loads(raw)
        files = [(f["path"], f["sha256"], f["size"], f["mode"]) for f in doc["files"]]
        ok = (
            doc.get("lockVersion") == 1
            and doc.get("algorithm") == "sha256"
            and set(doc) == {"lockVersion", "algorithm", "name", "version", "digest", "files"}
            and all(len(f) == 4 for f in doc["files"])
            and all(
                type(p) is str and type(h) is str and len(h) == 64 and type(n) is int and n >= 0 and m in ("644", "755")
                for p, h, n, m in files
            )
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        parse_lock(raw, where)  # raises the precise one-line error
        raise StoreError(f"{where}: malformed lock")
    return doc, files


def _digest(files: list[tuple[str, str, int, str]]) -> str:
    """The capsule digest (lock.py: sha256 of the JCS file list), built without json per object."""
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    body = ",".join(
        f'{{"mode":"{m}","path":{dumps(p)},"sha256":"{h}","size":{n}}}' for p, h, n, m in files
    )
    return hashlib.sha256(f"[{body}]".encode()).hexdigest()


_TREE_MODE = 0o040000


def _tree_sort_key(item: tuple[str, tuple[int, bytes]]) -> bytes:
    name, (mode, _) = item
    return name.encode("utf-8") + (b"/" if mode == _TREE_MODE else b"")


def _build_tree(repo: Any, base: Any | None, changes: dict[str, Any], pending: list[tuple[bytes, bytes]]) -> bytes | None:
    """Apply ``changes`` (path -> (oid, mode) or None) to ``base``; returns the raw tree id or None if empty.

    Tree objects are serialised here (git's tree format) and collected in
    ``pending`` so they can be written together — one pack instead of one
    fsync'd loose object per directory.
    """
    entries: dict[str, tuple[int, bytes]] = {}
    if base is not None:
        for e in base:
            entries[e.name] = (e.filemode, e.id.raw)
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, val in changes.items():
        head, sep, rest = path.partition("/")
        if sep:
            nested.setdefault(head, {})[rest] = val
        else:
            direct[head] = val
    for name, val in direct.items():
        if val is None:
            entries.pop(name, None)
        else:
            entries[name] = (val[1], val[0].raw)
    for name, sub in nested.items():
        existing = entries.get(name)
        is_tree = existing is not None and existing[0] == _TREE_MODE
        if existing is not None and not is_tree and all(v is None for v in sub.values()):
            continue  # a directory became a file: its old contents are already gone
        sub_base = repo[_pygit2().Oid(raw=existing[1])] if is_tree and existing is not None else None
        oid = _build_tree(repo, sub_base, sub, pending)
        if oid is None:
            if is_tree:
                entries.pop(name)
        else:
            entries[name] = (_TREE_MODE, oid)
    if not entries:
        return None
    data = b"".join(
        b"%o %s\x00%s" % (mode, name.encode("utf-8"), oid) for name, (mode, oid) in sorted(entries.items(), key=_tree_sort_key)
    )
    pending.append((b"tree", data))
    return hashlib.sha1(b"tree %d\x00" % len(data) + data).digest()


def _write_tree(repo: Any, st: Store, base: Any | None, changes: dict[str, Any]) -> Any | None:
    pygit2 = _pygit2()
    pending: list[tuple[bytes, bytes]] = []
    raw = _build_tree(repo, base, changes, pending)
    odb = repo.odb
    fresh = [(k, d) for k, d in pending if pygit2.Oid(raw=hashlib.sha1(k + b" %d\x00" % len(d) + d).digest()) not in odb]
    write_objects(st.git_dir / "objects", fresh)
    return pygit2.Oid(raw=raw) if raw is not None else None


def _check_disk(
    capsule: Capsule, files: list[tuple[str, str, int, str]], cache: StatCache, parent: _ParentVersion, use_cache: bool
) -> tuple[dict[str, tuple[StatKey, str]], list[str], list[str], list[str]]:
    """Compare disk and lock without hashing unchanged files.

    Returns (verified stat map, problems, files to hash only, files needing a blob).
    """
    found = walk(capsule.root, capsule.globs())
    recorded = {p: (h, n, m) for p, h, n, m in files}
    problems: list[str] = []
    on_disk = {f.path for f in found}
    problems += [f"removed: {p}" for p in recorded if p not in on_disk]
    problems += [f"added: {f.path}" for f in found if f.path not in recorded]
    verified: dict[str, tuple[StatKey, str]] = {}
    hash_only: list[str] = []
    need_blob: list[str] = []
    root = str(capsule.root)
    join, lstat, lookup = os.path.join, os.lstat, cache.lookup
    before = parent.files
    for f in found:
        rec = recorded.get(f.path)
        if rec is None:
            continue
        sha, size, mode = rec
        if f.mode != mode:
            problems.append(f"mode changed: {f.path}")
            continue
        try:
            key = stat_key(f.stat if f.stat is not None else lstat(join(root, f.path)))  # the walk's lstat
        except FileNotFoundError:
            problems.append(f"removed: {f.path}")
            continue
        if key[0] != size:
            problems.append(f"modified: {f.path}")
            continue
        cached = lookup(f.path, key) if use_cache else None
        if cached is not None and cached != sha:
            problems.append(f"modified: {f.path}")
            continue
        verified[f.path] = (key, sha)
        if before.get(f.path, ("", ""))[0] == sha or sha in parent.by_sha:
            if cached is None:
                hash_only.append(f.path)
        else:
            need_blob.append(f.path)
    return verified, problems, hash_only, need_blob


def _hash_only(root: Path, paths: list[str], expected: dict[str, str]) -> list[str]:
    from .tree import Found, hash_files

    found = [Found(p, 0, "644") for p in paths]
    got = hash_files(root, found)
    return [f"modified: {e.path}" for e in got if e.sha256 != expected[e.path]]


def _store_blobs(st: Store, root: Path, paths: list[str], expected: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    pygit2 = _pygit2()
    repo = st.repo
    oids: dict[str, Any] = {}
    problems: list[str] = []
    if len(paths) > PACK_THRESHOLD:
        for r in write_blobs(st.git_dir / "objects", [(p, root / p) for p in paths]):
            if r.sha256 != expected[r.path]:
                problems.append(f"modified: {r.path}")
            oids[r.path] = pygit2.Oid(hex=r.oid)
        return oids, problems
    for p in paths:
        sha256, blob_id, _ = hash_blob_file(root / p)
        if sha256 != expected[p]:
            problems.append(f"modified: {p}")
            continue
        oid = pygit2.Oid(hex=blob_id)
        if oid not in repo.odb:
            written = repo.create_blob_fromdisk(str(root / p))
            if written != oid:
                problems.append(f"modified: {p} (changed while committing)")
                continue
        oids[p] = oid
    return oids, problems


def _tree_changes(repo: Any, st: Store, parent: _ParentVersion, files: list[tuple[str, str, int, str]], new_oids: dict[str, Any], lock_bytes: bytes, sig_bytes: bytes | None) -> dict[str, Any]:
    """path -> (oid, mode) or None, relative to the parent tree."""
    pygit2 = _pygit2()
    objects = st.git_dir / "objects"
    changes: dict[str, Any] = {}
    before = parent.files
    for path, sha, _, mode in files:
        if before.get(path) == (sha, mode):
            continue
        oid = new_oids.get(path) or parent.blob_for(sha)
        if oid is None:
            raise StoreError(f"{path}: blob for sha256:{sha} is missing from the store (run with --rehash)")
        changes[path] = (oid, _MODES[mode])
    current = {p for p, _, _, _ in files}
    changes.update({p: None for p in before if p not in current})
    specials = {LOCK_FILE: lock_bytes, SIG_FILE: sig_bytes}
    for name, data in specials.items():
        if data is None:
            if name in parent.extra:
                changes[name] = None
            continue
        oid = pygit2.Oid(hex=write_loose(objects, b"blob", data))
        if parent.extra.get(name) != (oid, 0o100644):
            changes[name] = (oid, 0o100644)
    return changes


def commit_tree(
    root: Path, *, message: str | None, store: Any, branch: str, rehash: bool, stat_cache: bool = True
) -> CommitResult:
    _enable_fsync()
    check_branch_name(branch)
    capsule = Capsule.load(root)
    lock_path = capsule.lock_path
    try:
        lock_bytes = lock_path.read_bytes()
    except FileNotFoundError:
        raise integrity_error(capsule.root, [f"not sealed (run 'qlcapsule seal {capsule.root}')"]) from None
    doc, files = _light_lock(lock_bytes, str(lock_path))
    if _digest(files) != doc["digest"]:
        raise integrity_error(capsule.root, ["lock: capsule.lock: digest does not match its file list (the lock was edited)"])
    if doc["name"] != capsule.name or doc["version"] != capsule.version:
        raise integrity_error(capsule.root, [f"lock: sealed as {doc['name']}@{doc['version']} but capsule.yaml says {capsule.ref}"])
    keys = [p.encode("utf-8") for p, _, _, _ in files]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise integrity_error(capsule.root, ["lock: capsule.lock: files are not sorted by path or repeat a path"])
    digest = doc["digest"]
    sig_bytes = capsule.sig_path.read_bytes() if capsule.sig_path.is_file() else None

    st = open_store(capsule.root, store, create=True)
    repo = st.repo
    refname = st.head_ref(capsule.name, branch)
    merge = read_merge_state(capsule.root)
    if merge is not None and (merge["capsule"] != capsule.name or merge["branch"] != branch):
        raise StoreError(f"{capsule.root / MERGE_STATE}: a merge into {merge['capsule']}/{merge['branch']} is in progress here")
    start_head = st.head(capsule.name, branch)
    if start_head is None and branch != DEFAULT_BRANCH:
        start_head = st.head(capsule.name, DEFAULT_BRANCH)  # a new branch continues main's lineage
    parent = _ParentVersion(repo, repo[start_head] if start_head is not None else None)

    cache = StatCache.for_root(st.git_dir / "qlcapsule" / "statcache", capsule.root, enabled=stat_cache)
    verified, problems, hash_only, need_blob = _check_disk(capsule, files, cache, parent, not rehash)
    if problems:
        raise integrity_error(capsule.root, problems)
    if merge is not None:
        _check_resolved(capsule.root, merge)
    expected = {p: h for p, h, _, _ in files}
    problems += _hash_only(capsule.root, hash_only, expected)
    if problems:
        raise integrity_error(capsule.root, problems)
    new_oids, problems = _store_blobs(st, capsule.root, need_blob, expected)
    if problems:
        raise integrity_error(capsule.root, problems)

    changes = _tree_changes(repo, st, parent, files, new_oids, lock_bytes, sig_bytes)
    if parent.commit is None:
        tree = _write_tree(repo, st, None, changes)
    else:
        tree = _write_tree(repo, st, parent.commit.tree, changes) if changes else parent.commit.tree_id
    if tree is None:
        tree = repo.TreeBuilder().write()

    author = signature(repo, "AUTHOR")
    committer = signature(repo, "COMMITTER")
    text = version_message(capsule.name, capsule.version, digest, message)
    with st.lock(capsule.name):
        for attempt in range(_RETRIES):
            head = st.head(capsule.name, branch)
            lineage = head if head is not None else start_head
            if merge is not None:
                if str(head) != merge["ours"]:
                    raise StoreError(
                        f"{capsule.name}/{branch} moved since the merge started (now {str(head)[:12]}); run the merge again"
                    )
                parents = [head, _pygit2().Oid(hex=merge["theirs"])]
            else:
                parents = [lineage] if lineage is not None else []
            if merge is None and head is not None:
                tip: Any = repo[head]
                if tip.tree_id == tree and parse_trailers(tip.message).get("version") == capsule.version:
                    cache.save(verified, time.time_ns())
                    return _result(st, capsule, digest, len(files), head, branch, refname, tip.parent_ids, False, 0)
            commit = repo.create_commit(None, author, committer, text, tree, parents)
            if st.cas_ref(refname, commit, head, f"qlcapsule commit: {capsule.ref}"):
                break
            time.sleep(min(0.001 * (attempt + 1), 0.05))
        else:
            raise StoreError(f"{st.location}: could not update {refname} (too many concurrent writers); try again")
    if merge is not None:
        (capsule.root / MERGE_STATE).unlink(missing_ok=True)
    cache.save(verified, time.time_ns())
    event(log, "store.commit", capsule=capsule.ref, commit=str(commit), branch=branch, new_blobs=len(new_oids))
    return _result(st, capsule, digest, len(files), commit, branch, refname, parents, True, len(new_oids), len(hash_only) + len(need_blob))


def _check_resolved(root: Path, merge: dict[str, Any]) -> None:
    left = []
    for path in merge.get("conflicts", []):
        try:
            data = (root / path).read_bytes()
        except FileNotFoundError:
            continue
        if b"<<<<<<< " in data and b"\n>>>>>>> " in data:
            left.append(path)
    if left:
        raise StoreError(f"{root}: conflict markers remain in {', '.join(left)}; resolve them, seal, then commit")


def _result(st: Store, capsule: Capsule, digest: str, nfiles: int, commit: Any, branch: str, refname: str, parents: Any, created: bool, new_blobs: int, hashed: int = 0) -> CommitResult:
    return CommitResult(
        capsule=capsule.name,
        version=capsule.version,
        digest=digest,
        commit=str(commit),
        branch=branch,
        ref=refname,
        store=st.location,
        parents=[str(p) for p in parents],
        created=created,
        files=nfiles,
        new_blobs=new_blobs,
        hashed=hashed,
    )
