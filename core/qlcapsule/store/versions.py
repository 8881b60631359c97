"""The version store: capsule versions as git commits (pygit2, imported lazily).

Where the store is
    ``--store PATH`` or ``$QLCAPSULE_STORE`` names a bare repository, created on
    first write. Otherwise the git repository containing the capsule is used,
    but only under ``refs/capsules/<name>/heads/<branch>`` and
    ``refs/capsules/<name>/tags/<version>``: objects are added, the user's
    branches, index, HEAD and work tree are never read or written.

What a version is
    A commit whose tree is the sealed capsule (capsule.lock and capsule.sig
    included), whose parents are its lineage (the branch head; a merge has two)
    and whose message ends with ``Qlcapsule-Capsule``/``-Version``/``-Digest``
    trailers. Tags are annotated tag objects; a version tag never moves.

Trust
    Any branch may have been fetched from someone else's repository, so a
    version number resolves only through the capsule's own namespace: its tag
    ``refs/capsules/<name>/tags/<version>``, else the newest commit on the
    default branch (main) recording it; another branch only when the user names
    it. The rollback check (``latest_version``) reads the same two places. With
    trusted keys, a candidate whose capsule.sig does not verify is skipped with
    a warning. Authors, messages and names read from the repository are shown
    through ``printable`` (control characters escaped). Merge state lives in
    the store (``qlcapsule/merges/``); a ``.qlcapsule/merge.json`` in a capsule
    directory only names a merge the store recorded.

Stale directories
    Like a work tree's ``HEAD``, the store records per capsule directory the
    version it was last checked out at or committed as (``qlcapsule/bases/``,
    keyed by its path; never in the directory). A commit from a directory whose
    base is no longer the branch head is refused when it would undo a change
    the head made since (a merge, someone else's version): git's
    non-fast-forward refusal, except that a change the directory already holds
    passes. ``--force`` commits over it. A directory without a record (a fresh
    one, a copy) builds on the head as before.

Safety
    Every write goes through pygit2 (``repo.py``), bulk blobs aside.
    Ref updates are compare-and-swap (libgit2 checks the old target under its
    ref lock) inside a per-capsule ``flock``, retried on a race
    (``Store.retry_update``), so concurrent writers never lose a version. Objects are written before the ref moves and
    are fsync'd (libgit2's ``GIT_OPT_ENABLE_FSYNC_GITDIR``; bare stores also get
    ``core.fsync``), so a killed process leaves the ref at the old or the new
    commit and ``git fsck --strict`` clean.

Speed
    A stat cache (``statcache.py``) records, per file, the lstat, SHA-256 and
    blob id as of the last commit made from that directory, so a commit reads
    only files whose stat changed and compresses only new content; when the
    cache recorded the branch head itself, the parent's capsule.lock is not
    even parsed (``disk.py``). Only directories on changed paths get new
    tree objects. Many new blobs at once go into packfiles (``gitpack.py``).

Modules
    ``repo.py`` opens the repository and moves refs; ``commit.py``
    turns a capsule directory into a commit; this module holds the operations
    the CLI and the other areas call, and re-exports what they read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..format.capsule import Capsule
from ..format.names import DEFINITION_FILE, LOCK_FILE, MAX_LOCK_BYTES, MAX_SIG_BYTES, MAX_YAML_BYTES, SEMVER, SIG_FILE
from ..log import event, get_logger
from .commit import commit_tree
from .repo import (
    _OID,
    DEFAULT_BRANCH,
    MERGE_STATE,
    NOTES_REF,
    REF_ROOT,
    Accept,
    CommitResult,
    Store,
    check_branch_name,
    check_ref_part,
    check_text,
    clear_stale_ref_lock,
    enable_fsync,
    ensure_capsule_exists,
    load_pygit2,
    merge_record_path,
    message_body,
    open_repository,
    open_store,
    parse_trailers,
    printable,
    semver_key,
    signature,
    version_message,
)

log = get_logger("store")

__all__ = [
    "DEFAULT_BRANCH",
    "MERGE_STATE",
    "REF_ROOT",
    "Accept",
    "CommitResult",
    "Store",
    "StoreReader",
    "StoredVersion",
    "add_note",
    "commit_capsule",
    "create_branch",
    "ensure_capsule_exists",
    "latest_version",
    "log_versions",
    "merge_record_path",
    "open_store",
    "parse_trailers",
    "printable",
    "read_notes",
    "read_store",
    "semver_key",
    "tag_version",
    "version_message",
]


# -- commit ---------------------------------------------------------------------


def commit_capsule(
    root: str | os.PathLike[str],
    *,
    message: str | None = None,
    store: str | os.PathLike[str] | None = None,
    branch: str = DEFAULT_BRANCH,
    rehash: bool = False,
    force: bool = False,
) -> CommitResult:
    """Record the sealed capsule at ``root`` as a new version on ``branch``.

    Refuses an unsealed capsule or one whose files differ from its lock
    (IntegrityError, exit 1). Committing an unchanged capsule is a no-op that
    returns the existing version (``created=False``). A directory last checked out
    at or committed as an older version than the branch head is refused (StoreError,
    exit 2) when committing it would undo the head's changes since, unless ``force``.
    """
    if message is not None:
        check_text(message, "-m/--message")
    return commit_tree(Path(root), message=message, store=store, branch=branch, rehash=rehash, force=force)


# -- reading helpers for other areas ---------------------------------------------


def latest_version(root: str | os.PathLike[str], name: str, *, accept: Accept | None = None) -> str | None:
    """Newest SemVer of capsule ``name`` tagged or committed on its default branch; None without a store.

    This is what the rollback check compares with, so only the capsule's own namespace counts:
    a version recorded on another (perhaps fetched) branch does not. With ``accept`` (a check
    against trusted keys), only a version one of whose commits it accepts counts.
    """
    try:
        st = open_store(root, None, create=False)
    except StoreError:
        return None
    check_ref_part(name, "capsule name")
    candidates: dict[str, list[Any]] = {}
    for version, commit_id in st.tags(name).items():
        candidates.setdefault(version, []).append(commit_id)
    for commit in st.walk(name, DEFAULT_BRANCH) if st.head(name, DEFAULT_BRANCH) is not None else ():
        v = parse_trailers(commit.message).get("version")
        if v:
            candidates.setdefault(v, []).append(commit)
    for version in sorted((v for v in candidates if SEMVER.match(v)), key=semver_key, reverse=True):
        if accept is None:
            return version
        for c in candidates[version]:
            if accept(st.repo[c] if isinstance(c, str) else c) is None:
                return version
    return None


def _capsule_name(root: Path) -> str | None:
    try:
        return Capsule.load(root).name
    except Exception:  # noqa: BLE001 - a non-capsule root just means "no name to resolve versions with"
        return None


def _note_target(st: Store, root: Path, commit_or_ref: str) -> Any:
    pygit2 = load_pygit2()
    name = _capsule_name(root)
    if name is not None:
        with contextlib.suppress(StoreError):
            return st.resolve(name, commit_or_ref)
    if "@" in commit_or_ref and not commit_or_ref.startswith("refs/"):
        cname, _, rev = commit_or_ref.partition("@")
        return st.resolve(cname, rev)
    try:
        return st.repo.revparse_single(commit_or_ref).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        raise StoreError(f"{commit_or_ref}: no such version or commit in {st.shown}") from None


def add_note(
    root: str | os.PathLike[str],
    commit_or_ref: str,
    data: dict[str, Any],
    *,
    store: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Append ``data`` to the JSON note (``refs/notes/qlcapsule``) of a version.

    ``commit_or_ref``: a commit id, a ref, a version/branch/tag of the capsule
    at ``root``, or ``name@version``. Returns every record now in the note.
    """
    pygit2 = load_pygit2()
    enable_fsync()
    st = open_store(root, store, create=False)
    commit = _note_target(st, Path(root), commit_or_ref)
    oid = str(commit.id)

    def attempt() -> list[dict[str, Any]] | None:
        records = read_notes(st, oid)
        records.append(dict(data))
        text = json.dumps(records, indent=2, sort_keys=True, default=str) + "\n"
        sig = signature(st.repo, "COMMITTER")
        try:
            st.repo.create_note(text, sig, sig, oid, NOTES_REF, True)
        except (pygit2.GitError, OSError) as exc:  # the notes ref moved or is locked: read again
            if "lock" in str(exc).lower():
                clear_stale_ref_lock(st.git_dir, NOTES_REF)
            return None
        return records

    with st.lock("notes"):
        return st.retry_update(NOTES_REF, attempt)


def read_notes(st: Store, commit_id: str) -> list[dict[str, Any]]:
    try:
        note = st.repo.lookup_note(commit_id, NOTES_REF)
    except (KeyError, ValueError):
        return []
    except Exception:  # noqa: BLE001 - pygit2 raises GitError when the notes ref is absent
        return []
    try:
        data = json.loads(note.message)
    except (ValueError, RecursionError):
        return [{"text": note.message}]
    return data if isinstance(data, list) else [data]


# -- log, tags, branches ----------------------------------------------------------


def _when(sig: Any) -> str:
    """A commit's time as ISO 8601; "" for a time or offset no clock has (a crafted commit)."""
    try:
        tz = dt.timezone(dt.timedelta(minutes=sig.offset))
        return dt.datetime.fromtimestamp(sig.time, tz).isoformat()
    except (ValueError, OverflowError, OSError):
        return ""


def log_versions(
    st: Store, name: str, *, branch: str | None = DEFAULT_BRANCH, limit: int | None = None
) -> list[dict[str, Any]]:
    """Versions reachable from ``branch`` (all branches when None), newest first."""
    ensure_capsule_exists(st, name)
    if branch is not None and st.head(name, branch) is None:
        known = ", ".join(st.branches(name)) or "none"
        raise StoreError(f"{name}: no branch {branch!r} (branches: {known})")
    tags: dict[str, list[str]] = {}
    for version, commit_id in st.tags(name).items():
        tags.setdefault(commit_id, []).append(version)
    heads: dict[str, list[str]] = {}
    for b, commit_id in st.branches(name).items():
        heads.setdefault(commit_id, []).append(b)
    has_notes = st.repo.references.get(NOTES_REF) is not None
    out: list[dict[str, Any]] = []
    for commit in st.walk(name, branch):
        if limit is not None and len(out) >= limit:
            break
        cid = str(commit.id)
        info = parse_trailers(commit.message)
        digest = info.get("digest", "")
        author = commit.author
        entry: dict[str, Any] = {
            "commit": cid,
            "version": info.get("version"),
            "digest": digest.removeprefix("sha256:"),
            "author": f"{author.name} <{author.email}>",
            "date": _when(author),
            "parents": [str(p) for p in commit.parent_ids],
            "tags": sorted(tags.get(cid, []), key=semver_key),
            "branches": heads.get(cid, []),
            "message": message_body(commit.message),
        }
        if has_notes:
            entry["notes"] = read_notes(st, cid)
        out.append(entry)
    return out


def _tagger_line(sig: Any) -> str:
    sign = "-" if sig.offset < 0 else "+"
    off = abs(sig.offset)
    return f"{sig.name} <{sig.email}> {sig.time} {sign}{off // 60:02d}{off % 60:02d}"


def tag_version(
    st: Store,
    name: str,
    version: str,
    *,
    rev: str | None = None,
    message: str | None = None,
    accept: Accept | None = None,
) -> dict[str, Any]:
    """Create the annotated tag ``refs/capsules/<name>/tags/<version>``; it never moves.

    Without ``rev`` the commit is the newest on main recording ``version`` (never one on a
    fetched side branch); ``accept`` (trusted keys) must take the commit tagged.
    """
    pygit2 = load_pygit2()
    enable_fsync()
    ensure_capsule_exists(st, name)
    check_ref_part(version, "version")
    if message is not None:
        check_text(message, "-m/--message")
    if not SEMVER.match(version):
        raise StoreError(f"{version!r} is not a SemVer 2.0.0 version")
    if version.endswith(".lock"):
        raise StoreError(
            f"{name}: cannot tag {version}: git refuses ref names ending in '.lock' (its lock-file suffix); "
            "the version stays committed and 'checkout'/'diff' find it by version, or choose a version not ending in .lock"
        )
    commit: Any = st.resolve(name, rev, accept=accept) if rev else None
    if commit is None:
        found = st.find_version(name, version, accept=accept)
        if found is None:
            raise StoreError(
                f"{name}: no version {version} committed on {DEFAULT_BRANCH} to tag "
                "(commit it first, or pass --rev BRANCH or a commit id)"
            )
        commit = st.repo[found]
    recorded = parse_trailers(commit.message).get("version")
    if recorded != version:
        shown = printable(recorded) if recorded is not None else None
        raise StoreError(f"{name}: commit {str(commit.id)[:12]} is version {shown}, not {version}")
    refname = st.tag_ref(name, version)
    with st.lock(name):
        existing = st.repo.references.get(refname)
        if existing is not None:
            at = existing.peel(pygit2.Commit).id
            if at == commit.id:
                return {"capsule": name, "version": version, "commit": str(at), "ref": refname, "created": False}
            raise StoreError(
                f"{name}: tag {version} already points at {str(at)[:12]}; a version tag never moves (bump the version instead)"
            )
        tagger = signature(st.repo, "COMMITTER")
        text = (message or f"{name} {version}").strip() + "\n"
        raw = (
            f"object {commit.id}\ntype commit\ntag {name}@{version}\ntagger {_tagger_line(tagger)}\n\n{text}"
        ).encode()
        tag_oid = st.repo.odb.write(pygit2.enums.ObjectType.TAG, raw)
        if not st.cas_ref(refname, tag_oid, None, f"qlcapsule tag: {name}@{version}"):
            raise StoreError(f"{name}: tag {version} was created by another process; a version tag never moves")
    event(log, "store.tag", capsule=name, version=version, commit=str(commit.id))
    return {
        "capsule": name,
        "version": version,
        "commit": str(commit.id),
        "tag": str(tag_oid),
        "ref": refname,
        "created": True,
    }


def create_branch(st: Store, name: str, branch: str, *, rev: str | None = None) -> dict[str, Any]:
    """Create ``refs/capsules/<name>/heads/<branch>`` at ``rev`` (default: main)."""
    enable_fsync()
    ensure_capsule_exists(st, name)
    check_branch_name(branch)
    commit = st.resolve(name, rev or DEFAULT_BRANCH)
    refname = st.head_ref(name, branch)
    with st.lock(name):
        if not st.cas_ref(refname, commit.id, None, f"qlcapsule branch: from {rev or DEFAULT_BRANCH}"):
            raise StoreError(f"{name}: branch {branch!r} already exists")
    return {"capsule": name, "branch": branch, "commit": str(commit.id), "ref": refname}


# -- reading someone else's store -----------------------------------------------------

#: :func:`read_store` refuses a repository with more refs than this under ``refs/capsules/``
READ_MAX_REFS = 10_000
#: the longest author line a :class:`StoredVersion` carries
_AUTHOR_LIMIT = 512
#: the trailers are read from the end of a commit message: this many bytes of it
_TRAILER_WINDOW = 4096


@dataclass(frozen=True)
class StoredVersion:
    """One commit under ``refs/capsules/`` as the repository holds it (see :func:`read_store`).

    Nothing here is checked or trusted: ``lock`` and ``signature`` are the stored bytes, ``version`` is the
    commit message's ``Qlcapsule-Version`` trailer, ``author`` is what the commit says (at most 512
    characters). Parse the lock with :func:`qlcapsule.parse_lock` and verify the signature before believing
    any of it.
    """

    capsule: str  #: the ``<name>`` of ``refs/capsules/<name>/...`` it was reached from
    commit: str
    parents: tuple[str, ...]
    author: str  #: ``name <email>``
    date: str  #: the author time, ISO 8601 ("" when the commit's time is impossible)
    version: str | None  #: the ``Qlcapsule-Version`` trailer, when the message has one
    lock: bytes | None  #: capsule.lock as stored; None when the tree has none or it was not read (``problem``)
    signature: bytes | None  #: capsule.sig as stored, likewise
    tags: tuple[str, ...]  #: the capsule's version tags (``refs/capsules/<name>/tags/*``) at this commit
    branches: tuple[str, ...]  #: the capsule's branches whose head is this commit
    problem: str | None = None  #: why capsule.lock, capsule.sig or capsule.yaml was not read
    #: capsule.yaml as stored (check its digest against the lock's entry before reading it), likewise
    definition: bytes | None = None


class StoreReader:
    """A version store opened by :func:`read_store`: its refs listed once, its versions read on demand."""

    def __init__(self, repo: Any, location: str, *, max_refs: int, max_file: int | None) -> None:
        self.repo = repo
        #: where the repository is (resolved path)
        self.location = location
        #: ``refs/capsules/<name>/heads/<branch>`` -> the commit id it points at
        self.heads: dict[str, str] = {}
        #: refs under ``refs/capsules/`` not read, each with why (symbolic, not a commit, not of the layout)
        self.skipped: list[str] = []
        self._limits = {
            LOCK_FILE: min(MAX_LOCK_BYTES, max_file or MAX_LOCK_BYTES),
            SIG_FILE: min(MAX_SIG_BYTES, max_file or MAX_SIG_BYTES),
            DEFINITION_FILE: min(MAX_YAML_BYTES, max_file or MAX_YAML_BYTES),
        }
        self._tags: dict[tuple[str, str], list[str]] = {}  # (capsule, commit id) -> versions
        self._branches: dict[tuple[str, str], list[str]] = {}  # (capsule, commit id) -> branches
        self._list_refs(max_refs)

    def _list_refs(self, max_refs: int) -> None:
        pygit2 = load_pygit2()
        names = [n for n in self.repo.listall_references() if n.startswith(REF_ROOT + "/")]
        if len(names) > max_refs:
            raise StoreError(
                f"{self.location}: {len(names)} refs under {REF_ROOT}/; at most {max_refs} are read in one go"
            )
        for refname in sorted(names):
            parts = refname[len(REF_ROOT) + 1 :].split("/", 2)
            if len(parts) != 3 or parts[1] not in ("heads", "tags") or not parts[0] or not parts[2]:
                self.skipped.append(f"{refname}: not refs/capsules/<name>/heads|tags/<name>")
                continue
            ref = self.repo.references.get(refname)
            if ref is None or ref.type != pygit2.enums.ReferenceType.DIRECT:
                self.skipped.append(f"{refname}: a symbolic ref (it names another ref, which is not followed)")
                continue
            try:
                commit_id = str(ref.peel(pygit2.Commit).id)
            except (pygit2.GitError, KeyError, ValueError):
                self.skipped.append(f"{refname}: points at a missing object or at no commit")
                continue
            name, kind, leaf = parts
            if kind == "heads":
                self.heads[refname] = commit_id
                self._branches.setdefault((name, commit_id), []).append(leaf)
            else:
                self._tags.setdefault((name, commit_id), []).append(leaf)

    def versions(self, ref: str, *, since: str | None = None, limit: int | None = None) -> Iterator[StoredVersion]:
        """The commits reachable from head ``ref`` and not from commit ``since``, oldest first (parents before
        children), at most ``limit`` of them. A ``since`` the repository lacks hides nothing."""
        pygit2 = load_pygit2()
        tip = self.heads.get(ref)
        if tip is None:
            raise StoreError(f"{self.location}: {ref!r} is not a head under {REF_ROOT}/ that can be read")
        capsule = ref[len(REF_ROOT) + 1 :].split("/", 1)[0]
        walker = self.repo.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
        hidden = self._commit(since) if since else None
        if hidden is not None:
            walker.hide(hidden.id)
        count = 0
        try:
            for commit in walker:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield self._stored(capsule, commit)
        except pygit2.GitError as exc:  # a parent missing from the repository (shallow, pruned)
            raise StoreError(f"{self.location}: {ref}: the history cannot be walked ({exc})") from None

    def version(self, commit: str) -> StoredVersion | None:
        """The commit ``commit`` (a full id) read the same way, its tags and branches those of the capsule its
        ``Qlcapsule-Capsule`` trailer names; None when the repository holds no such commit."""
        found = self._commit(commit)
        if found is None:
            return None
        return self._stored(_trailers(found).get("capsule", ""), found)

    def _commit(self, commit_id: str) -> Any | None:
        pygit2 = load_pygit2()
        if not _OID.match(commit_id):
            return None
        try:
            found = self.repo.get(commit_id)
        except (pygit2.GitError, KeyError, ValueError):
            return None
        return found if isinstance(found, pygit2.Commit) else None

    def _stored(self, capsule: str, commit: Any) -> StoredVersion:
        cid = str(commit.id)
        author = commit.author
        who = f"{_text(author.raw_name)} <{_text(author.raw_email)}>"
        files: dict[str, bytes | None] = {}
        problems = []
        for name in (LOCK_FILE, SIG_FILE, DEFINITION_FILE):
            files[name], problem = self._file(commit, name)
            if problem:
                problems.append(problem)
        return StoredVersion(
            capsule=capsule,
            commit=cid,
            parents=tuple(str(p) for p in commit.parent_ids),
            author=who[:_AUTHOR_LIMIT],
            date=_when(author),
            version=_trailers(commit).get("version"),
            lock=files[LOCK_FILE],
            signature=files[SIG_FILE],
            tags=tuple(sorted(self._tags.get((capsule, cid), []), key=semver_key)),
            branches=tuple(self._branches.get((capsule, cid), [])),
            problem="; ".join(problems) or None,
            definition=files[DEFINITION_FILE],
        )

    def _file(self, commit: Any, name: str) -> tuple[bytes | None, str | None]:
        """A top-level file of the commit's tree, read only when it is a regular file within its size limit."""
        pygit2 = load_pygit2()
        try:
            entry = commit.tree[name]
        except KeyError:
            return None, None
        except pygit2.GitError:
            return None, f"the tree of {str(commit.id)[:12]} is missing"
        if entry.filemode not in (pygit2.GIT_FILEMODE_BLOB, pygit2.GIT_FILEMODE_BLOB_EXECUTABLE):
            return None, f"{name} is not a regular file"
        try:
            kind, size = _header(self.repo.odb, entry.id)  # the size, without inflating the blob
        except (pygit2.GitError, KeyError, ValueError):
            return None, f"{name} is missing from the repository"
        limit = self._limits[name]
        if kind != pygit2.enums.ObjectType.BLOB or size > limit:
            return None, f"{name} is {size} bytes; at most {limit} are read"
        return bytes(self.repo[entry.id].data), None


def _header(odb: Any, oid: Any) -> tuple[Any, int]:
    """An object's type and size from its header, without inflating it. pygit2 1.19 has ``Odb.read_header``;
    older ones (the last for Python 3.10 is 1.18) have it per backend (loose objects, packs)."""
    read_header = getattr(odb, "read_header", None)
    if read_header is not None:
        return read_header(oid)  # type: ignore[no-any-return]
    for backend in odb.backends:
        try:
            return backend.read_header(oid)  # type: ignore[no-any-return]
        except KeyError:
            continue
    raise KeyError(str(oid))


def _text(raw: bytes) -> str:
    return raw[: _AUTHOR_LIMIT * 4].decode("utf-8", "replace")


def _trailers(commit: Any) -> dict[str, str]:
    return parse_trailers(commit.raw_message[-_TRAILER_WINDOW:].decode("utf-8", "replace"))


def read_store(
    path: str | os.PathLike[str], *, max_refs: int = READ_MAX_REFS, max_file: int | None = None
) -> StoreReader:
    """Open the version store at ``path`` to read its versions as untrusted content (``catalog sync`` does).

    ``path`` is a bare repository or a work tree, exactly (never one found above it). Nothing the
    repository names outside itself is followed: a repository with ``objects/info/alternates`` (objects
    kept elsewhere) is refused, symbolic refs are listed in ``skipped``, never resolved. Sizes are bounded
    before anything is read: at most ``max_refs`` refs under ``refs/capsules/`` (more is refused),
    capsule.lock and capsule.sig at most the format's limits (64 MiB, 1 MiB) or ``max_file`` bytes, the
    author line 512 characters. Raises StoreError (exit 2) for anything that is not such a repository.
    """
    where = Path(path).expanduser()
    st = Store(open_repository(where, "a version store: a bare repository or a work tree"), dedicated=True)
    alternates = st.git_dir / "objects" / "info" / "alternates"
    if alternates.is_file():
        with alternates.open("rb") as f:
            if f.read(1 << 16).strip():
                raise StoreError(
                    f"{where}: keeps objects outside itself (objects/info/alternates); refusing to read it"
                )
    return StoreReader(st.repo, str(where.resolve()), max_refs=max_refs, max_file=max_file)
