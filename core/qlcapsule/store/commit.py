"""Turning a sealed capsule directory into a commit, reading only what changed.

Steps: check the lock against the disk (``disk.py``: stat cache first,
then hashing only the files whose stat changed), take the parent's files
(path -> SHA-256, mode, blob id) from the stat cache when it recorded the
branch head, else from the parent's capsule.lock, write blobs only for new
content (a packfile when there are many), rebuild only the trees on the
changed paths (unchanged directories keep their tree ids), then — under the
capsule's lock — refuse a directory whose recorded base is stale (``_check_base``),
create the commit on top of the current branch head, record it as the
directory's base, move the ref with compare-and-swap (``Store.retry_update``),
and record the new commit in the stat cache. The base is recorded before the
ref moves, so a process killed in between leaves a base the head descends from,
which the next commit accepts.

Every object is written by pygit2, except many new blobs at once: those go
into packfiles (``gitpack.py``), which pays for a first commit (one read per
file, threads, no fsync per object; figures in docs/performance.md).
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

from ..errors import InputError, IntegrityError, QlcapsuleError, StoreError
from ..format.capsule import Capsule
from ..format.lock import parse_lock
from ..format.names import DEFINITION_FILE, LOCK_FILE, SIG_FILE
from ..format.tree import NotRegular, read_regular, replaced
from ..log import event, get_logger
from .disk import DiskCheck, check_disk, hash_check, read_lock
from .gitpack import hash_blob_file, write_blobs
from .repo import (
    DEFAULT_BRANCH,
    MERGE_STATE,
    VERSION_LINE,
    CommitResult,
    Store,
    check_branch_name,
    clear_merge_state,
    enable_fsync,
    integrity_error,
    load_pygit2,
    message_body,
    open_store,
    parse_trailers,
    printable,
    read_base,
    read_merge_state,
    record_base,
    semver_key,
    signature,
    version_message,
)
from .statcache import EXEC, FLAGS, NO_OID, OID, SHA, Record, StatCache, record, with_oid

log = get_logger("store")

#: above this many new blobs, write one packfile per worker instead of loose objects
PACK_THRESHOLD = 32


class _ParentVersion:
    """What a commit needs from the previous version.

    ``files`` maps path -> stat cache record (only SHA-256, blob id and mode
    matter here): the cache's own records when it recorded exactly this
    commit (blob ids known), else built from the parent's capsule.lock (blob
    ids looked up in the parent tree only for the paths that changed).
    """

    def __init__(self, repo: Any, commit: Any | None, cached: dict[str, Record] | None = None) -> None:
        self.repo = repo
        self.commit = commit
        self.files: dict[str, Record] = {}
        self._by_sha: dict[bytes, str] | None = None
        self.extra: dict[str, Any] = {}  # capsule.lock / capsule.sig entries
        if commit is None:
            return
        tree = commit.tree
        for special in (LOCK_FILE, SIG_FILE):
            if special in tree:
                entry = tree[special]
                self.extra[special] = (entry.id, entry.filemode)
        if cached is not None:
            self.files = cached
            return
        if LOCK_FILE not in self.extra:
            return
        try:
            lock = parse_lock(repo[self.extra[LOCK_FILE][0]].data, f"{LOCK_FILE} of {commit.id}")
        except QlcapsuleError:  # a malformed lock in the store: nothing is known of the parent's files
            return
        self.files = {e.path: record((0, 0, 0, 0, 0), bytes.fromhex(e.sha256), NO_OID, e.mode) for e in lock.files}

    @property
    def by_sha(self) -> dict[bytes, str]:
        """sha256 -> a path holding it (built on first use: only changed files need it)."""
        if self._by_sha is None:
            self._by_sha = {}
            for path, rec in self.files.items():
                self._by_sha.setdefault(rec[SHA], path)
        return self._by_sha

    def has_sha(self, sha256: bytes) -> bool:
        return sha256 in self.by_sha

    def blob_for(self, sha256: bytes) -> Any | None:
        path = self.by_sha.get(sha256)
        if path is None:
            return None
        known = self.files[path][OID]
        if known != NO_OID:
            return load_pygit2().Oid(raw=known)
        try:
            return self.commit.tree[path].id  # type: ignore[union-attr]
        except KeyError:
            return None


_TREE_MODE = 0o040000


def _write_tree(repo: Any, base: Any | None, changes: dict[str, Any]) -> Any | None:
    """Apply ``changes`` (path -> (oid, mode) or None) to the tree ``base``; the new tree's id, None if empty.

    Only the directories on changed paths are rebuilt (pygit2's TreeBuilder);
    the others keep their tree ids.
    """
    builder = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
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
            if builder.get(name) is not None:
                builder.remove(name)
        else:
            builder.insert(name, val[0], val[1])
    for name, sub in nested.items():
        existing = builder.get(name)
        is_tree = existing is not None and existing.filemode == _TREE_MODE
        if existing is not None and not is_tree and all(v is None for v in sub.values()):
            continue  # a directory became a file: its old contents are already gone
        oid = _write_tree(repo, existing if is_tree else None, sub)
        if oid is None:
            if is_tree:
                builder.remove(name)
        else:
            builder.insert(name, oid, _TREE_MODE)
    return builder.write() if len(builder) else None


def _pack_blobs(
    objects: Path, root: Path, paths: list[str], expected: dict[str, Record]
) -> tuple[dict[str, str], list[str]]:
    """Write ``paths`` as blobs into packfiles; (path -> hex blob id, problem lines for contents not in ``expected``)."""
    oids: dict[str, str] = {}
    problems: list[str] = []
    for r in write_blobs(objects, [(p, root / p) for p in paths]):
        if r.sha256 != expected[r.path][SHA].hex():
            problems.append(f"modified: {r.path}")
        oids[r.path] = r.oid
    return oids, problems


def _store_blobs(
    st: Store, root: Path, paths: list[str], expected: dict[str, Record]
) -> tuple[dict[str, Any], list[str]]:
    pygit2 = load_pygit2()
    repo = st.repo
    oids: dict[str, Any] = {}
    problems: list[str] = []
    if len(paths) > PACK_THRESHOLD:
        packed, problems = _pack_blobs(st.git_dir / "objects", root, paths, expected)
        return {p: pygit2.Oid(hex=oid) for p, oid in packed.items()}, problems
    for p in paths:
        sha256, blob_id, _ = hash_blob_file(root / p)
        if sha256 != expected[p][SHA].hex():
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


def _tree_changes(
    repo: Any,
    parent: _ParentVersion,
    check: DiskCheck,
    new_oids: dict[str, Any],
    lock_bytes: bytes,
    sig_bytes: bytes | None,
) -> dict[str, Any]:
    """path -> (oid, mode) or None, relative to the parent tree: only the changed paths."""
    pygit2 = load_pygit2()
    changes: dict[str, Any] = {}
    for path in check.changed:
        rec = check.records[path]
        oid = new_oids.get(path) or (pygit2.Oid(raw=rec[OID]) if rec[OID] != NO_OID else parent.blob_for(rec[SHA]))
        if oid is None:
            raise StoreError(f"{path}: blob for sha256:{rec[SHA].hex()} is missing from the store (run with --rehash)")
        changes[path] = (oid, 0o100755 if rec[FLAGS] & EXEC else 0o100644)
    changes.update(dict.fromkeys(check.gone))
    specials = {LOCK_FILE: lock_bytes, SIG_FILE: sig_bytes}
    for name, data in specials.items():
        if data is None:
            if name in parent.extra:
                changes[name] = None
            continue
        oid = repo.create_blob(data)
        if parent.extra.get(name) != (oid, 0o100644):
            changes[name] = (oid, 0o100644)
    return changes


def commit_tree(  # noqa: C901 - the one commit path's steps under the capsule lock
    root: Path,
    *,
    message: str | None,
    store: Any,
    branch: str,
    rehash: bool,
    stat_cache: bool = True,
    force: bool = False,
    track_base: bool = True,
) -> CommitResult:
    """Commit the sealed capsule at ``root`` on ``branch`` (see the module docstring for the steps).

    A directory whose recorded base (``read_base``: the version it was checked out at or last
    committed as) is no longer the branch head is refused (``_check_base``) when committing it
    would undo changes the head made since, unless ``force``. ``track_base=False`` is for a
    throwaway directory (the merge's): no base is read or recorded for it.
    """
    check_branch_name(branch)
    # capsule.yaml is checked against the lock below; seal validated it in full
    capsule = Capsule.load(root, strict=False)
    capsule.check_definition()  # a bad capsule.yaml is bad input (exit 2), said before "not sealed"
    lock_path = capsule.lock_path
    lock_bytes = read_regular(lock_path, name="capsule.lock")  # never follow a symlink into the store
    if lock_bytes is None:
        raise integrity_error(capsule.shown, [f"not sealed (run 'qlcapsule seal {capsule.shown}')"])
    try:
        lock = read_lock(lock_bytes, str(capsule.shown / lock_path.name))
    except IntegrityError as exc:
        raise integrity_error(capsule.shown, [str(exc)]) from None
    if lock.name != capsule.name or lock.version != capsule.version:
        raise integrity_error(
            capsule.shown, [f"lock: sealed as {lock.name}@{lock.version} but capsule.yaml says {capsule.ref}"]
        )
    files, digest = lock.files, lock.digest
    sig_bytes = capsule.sig_bytes()

    enable_fsync()
    st = open_store(capsule.root, store, create=True)
    repo = st.repo
    refname = st.head_ref(capsule.name, branch)
    merge = read_merge_state(st, capsule.root)  # believed only when this store recorded that merge
    if merge is not None and (merge["capsule"] != capsule.name or merge["branch"] != branch):
        raise StoreError(
            f"{capsule.root / MERGE_STATE}: a merge into {merge['capsule']}/{merge['branch']} is in progress here"
        )
    if merge is not None:  # the merge commit names both parents, whatever -m adds
        recorded = merge.get("message")
        named = (
            recorded if isinstance(recorded, str) else f"Merge {merge.get('from', 'a branch')} into {merge['branch']}"
        )
        message = "\n\n".join(m for m in (named, message) if m)
    base = read_base(st, capsule.root, capsule.name) if track_base and merge is None and not force else None
    start_head = st.head(capsule.name, branch)
    if start_head is None and branch != DEFAULT_BRANCH:
        start_head = st.head(capsule.name, DEFAULT_BRANCH)  # a new branch continues main's lineage
    cache = StatCache.for_root(st.git_dir / "qlcapsule" / "statcache", capsule.root, enabled=stat_cache and not rehash)
    head_commit = repo[start_head] if start_head is not None else None
    parent = _ParentVersion(repo, head_commit, cache.files_of(str(start_head)) if start_head is not None else None)

    try:
        check = check_disk(capsule.root, capsule.globs(), files, cache, parent.files, parent.has_sha)
    except NotRegular as exc:  # a sealed file replaced by a symlink is tampering (exit 1)
        raise replaced(exc, capsule.shown, (f[0] for f in files)) from None
    if check.problems:
        raise integrity_error(capsule.shown, check.problems)
    if merge is not None:
        _check_resolved(capsule.root, merge)
    problems = hash_check(capsule.root, check.hash_only, check.records)
    if problems:
        raise integrity_error(capsule.shown, problems)
    new_oids, problems = _store_blobs(st, capsule.root, check.need_blob, check.records)
    if problems:
        raise integrity_error(capsule.shown, problems)

    changes = _tree_changes(repo, parent, check, new_oids, lock_bytes, sig_bytes)
    if parent.commit is None:
        tree = _write_tree(repo, None, changes)
    else:
        tree = _write_tree(repo, parent.commit.tree, changes) if changes else parent.commit.tree_id
    if tree is None:
        tree = repo.TreeBuilder().write()

    author = signature(repo, "AUTHOR")
    committer = signature(repo, "COMMITTER")
    text = version_message(capsule.name, capsule.version, digest, message)
    hashed = len(check.hash_only) + len(check.need_blob)

    def attempt() -> CommitResult | None:
        """One compare-and-swap of the branch onto a commit of ``tree``; None when another writer won."""
        head = st.head(capsule.name, branch)
        lineage = head if head is not None else start_head
        if merge is not None:
            if str(head) != merge["ours"]:
                raise StoreError(
                    f"{capsule.name}/{branch} moved since the merge started (now {str(head)[:12]}); run the merge again"
                )
            parents = [head, load_pygit2().Oid(hex=merge["theirs"])]
        else:
            parents = [lineage] if lineage is not None else []
        if merge is None and head is not None:
            tip: Any = repo[head]
            if tip.tree_id == tree and parse_trailers(tip.message).get("version") == capsule.version:
                if track_base:
                    record_base(st, capsule.root, capsule.name, branch, head)
                return _result(
                    st.location, capsule, digest, len(files), head, branch, refname, tip.parent_ids, False, 0, hashed
                )
        if base is not None and lineage is not None and str(lineage) != base:
            _check_base(repo, capsule, branch, base, lineage, tree)
        commit = repo.create_commit(None, author, committer, text, tree, parents)
        if track_base:  # before the ref moves: a process killed in between leaves a base the head descends from
            record_base(st, capsule.root, capsule.name, branch, commit)
        if not st.cas_ref(refname, commit, head, f"qlcapsule commit: {capsule.ref}"):
            return None
        return _result(
            st.location, capsule, digest, len(files), commit, branch, refname, parents, True, len(new_oids), hashed
        )

    with st.lock(capsule.name):
        done = st.retry_update(refname, attempt)
    if not done.created:
        _save_cache(cache, repo, check.records, changes, tree, done.commit)
        return done
    if merge is not None:
        clear_merge_state(st, capsule.root, merge)
    _save_cache(cache, repo, check.records, changes, tree, done.commit)
    event(log, "store.commit", capsule=capsule.ref, commit=done.commit, branch=branch, new_blobs=len(new_oids))
    return done


def _save_cache(
    cache: StatCache, repo: Any, records: dict[str, Record], changes: dict[str, Any], tree: Any, commit: Any
) -> None:
    """Record the verified files with their blob ids in ``commit`` for the next commit."""
    if not cache.enabled:
        return
    for path, val in changes.items():
        rec = records.get(path)
        if rec is not None and val is not None:
            records[path] = with_oid(rec, val[0].raw)
    if any(rec[OID] == NO_OID for rec in records.values()):  # the parent came from its lock: read the tree once
        ids = _blob_ids(repo, tree)
        for path, rec in records.items():
            if rec[OID] == NO_OID and path in ids:
                records[path] = with_oid(rec, ids[path])
    cache.save(records, str(commit), time.time_ns())


def _blob_ids(repo: Any, tree_id: Any) -> dict[str, bytes]:
    """path -> raw blob id of every file in a tree."""
    out: dict[str, bytes] = {}
    stack = [("", repo[tree_id])]
    while stack:
        prefix, tree = stack.pop()
        for e in tree:
            if e.filemode == _TREE_MODE:
                stack.append((f"{prefix}{e.name}/", repo[e.id]))
            else:
                out[prefix + e.name] = e.id.raw
    return out


def _undone(repo: Any, was: Any, now: Any, mine: Any) -> list[str]:
    """Paths whose change from tree ``was`` to tree ``now`` the tree ``mine`` does not hold (git's trees: blob
    ids and modes, so a malformed capsule.lock in the store is no obstacle); the seals describe one version each."""
    out = []
    for delta in repo.diff(was, now).deltas:
        path = delta.new_file.path
        if path in (LOCK_FILE, SIG_FILE):
            continue
        theirs = None if delta.status_char() == "D" else (delta.new_file.id, int(delta.new_file.mode))
        try:
            entry = mine[path]
            held: Any = (entry.id, int(entry.filemode))
        except KeyError:
            held = None
        if held != theirs and not (path == DEFINITION_FILE and _supersedes(repo, held, theirs)):
            out.append(path)
    return sorted(out)


def _supersedes(repo: Any, mine: Any, theirs: Any) -> bool:
    """capsule.yaml ``mine`` is ``theirs`` with a version at least as high (the merge's rule: the higher wins)."""
    if mine is None or theirs is None or mine[1] != theirs[1]:
        return False
    texts = [repo[mine[0]].data, repo[theirs[0]].data]
    found = [VERSION_LINE.search(t) for t in texts]
    if not (found[0] and found[1]) or VERSION_LINE.sub(b"", texts[0], 1) != VERSION_LINE.sub(b"", texts[1], 1):
        return False
    try:
        return semver_key(found[0].group(1).decode()) >= semver_key(found[1].group(1).decode())
    except (InputError, UnicodeDecodeError):
        return False


def _check_base(repo: Any, capsule: Capsule, branch: str, base: str, head: Any, tree: Any) -> None:
    """Refuse to commit a directory over changes the branch head made since the directory's base.

    git refuses to push a work tree whose commit is not the remote's head (non-fast-forward);
    here the new version's tree is the directory, so building it on a head the directory never
    saw would silently undo that head's changes (a merge, or someone else's version). A change
    the directory already holds (the same file content as the head; capsule.yaml with a version
    at least as high) undoes nothing and passes, as does a head the base descends from.
    """
    was, now = repo[base], repo[head]
    # the head's own changes: since the fork (nothing when the head is an ancestor of the base)
    fork = repo.merge_base(was.id, now.id)
    if fork == now.id:
        return
    undone = _undone(repo, repo[fork].tree if fork is not None else was.tree, now.tree, repo[tree])
    if not undone:
        return
    more = f" (+{len(undone) - 3} more)" if len(undone) > 3 else ""
    name = capsule.name
    raise StoreError(
        f"{capsule.root}: based on {_label(name, was)} (its last checkout or commit), but {name}/{branch} is now at "
        f"{_label(name, now)}{_merge_note(repo, was, now)}; committing this directory would undo its changes to "
        f"{printable(', '.join(undone[:3]))}{more}. Check out {branch} into a new directory and redo the edits "
        f"there, or keep them on a branch ('qlcapsule branch {name} B --from {str(was.id)[:12]}', "
        f"'qlcapsule commit DIR --branch B', then 'qlcapsule merge {name} B'); --force commits over it"
    )


def _merge_note(repo: Any, was: Any, now: Any) -> str:
    """Names the newest merge the head holds and the base does not (a merge is what a stale base most often misses)."""
    walker = repo.walk(now.id)
    walker.hide(was.id)
    merge = next((c for c in walker if len(c.parent_ids) > 1), None)
    if merge is None:
        return ""
    said = message_body(merge.message).splitlines()
    return f", a merge it does not contain ({printable(said[0])})" if said else ", a merge it does not contain"


def _label(name: str, commit: Any) -> str:
    version = parse_trailers(commit.message).get("version")
    return f"{name}@{printable(version)} ({str(commit.id)[:12]})" if version else str(commit.id)[:12]


def _check_resolved(root: Path, merge: dict[str, Any]) -> None:
    left = []
    for path in merge.get("conflicts", []):
        # merge.json is in the work dir: read only regular files inside the capsule (the
        # path may since have become a directory, and a FIFO would hang the commit)
        if not isinstance(path, str) or path.startswith("/") or ".." in path.split("/"):
            continue
        try:
            if not stat.S_ISREG(os.lstat(root / path).st_mode):
                continue
            data = (root / path).read_bytes()
        except OSError:
            continue
        if b"<<<<<<< " in data and b"\n>>>>>>> " in data:
            left.append(path)
    if left:
        raise StoreError(f"{root}: conflict markers remain in {', '.join(left)}; resolve them, seal, then commit")


def _result(
    location: str,
    capsule: Capsule,
    digest: str,
    nfiles: int,
    commit: Any,
    branch: str,
    refname: str,
    parents: Any,
    created: bool,
    new_blobs: int,
    hashed: int = 0,
) -> CommitResult:
    return CommitResult(
        capsule=capsule.name,
        version=capsule.version,
        digest=digest,
        commit=str(commit),
        branch=branch,
        ref=refname,
        store=location,
        parents=[str(p) for p in parents],
        created=created,
        files=nfiles,
        new_blobs=new_blobs,
        hashed=hashed,
    )
