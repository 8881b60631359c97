"""The common commit — the next version of a capsule into its bare store — without pygit2.

Importing pygit2 (libgit2, its enums, ssl) costs more than the rest of an
incremental commit of the 5,000-file bench capsule. The commit a CI loop makes
again and again needs none of it when:

- the store is a bare repository named by ``--store``/``$QLCAPSULE_STORE``,
  with the branch head a loose ref (or in ``packed-refs``) and the head
  commit a loose object;
- the stat cache recorded exactly that head commit, so every file's SHA-256,
  mode and blob id are known without reading a tree;
- no merge is in progress, and the author and committer come from
  ``GIT_AUTHOR_*``/``GIT_COMMITTER_*`` or plain ``[user]`` entries of the git
  config files (no ``include``, no escapes).

Then the new tree is computed from the records (every directory's tree id,
only the directories on changed paths written), the commit is a loose object,
and the ref moves as git moves it: under the capsule's ``flock``, a
``<ref>.lock`` created with ``O_EXCL``, the old value compared, the new value
fsync'd and renamed into place, the reflog appended. Anything else — first
commit, new branch, a head git has packed, unusual config — returns None
before the ref moves (at most some objects were added), and :func:`storecommit.commit_tree` does the full
commit with pygit2. Both write the same objects (a test compares them).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import zlib
from pathlib import Path
from typing import Any

from .errors import StoreError
from .gitpack import _fsync_dir, write_loose, write_loose_file, write_objects
from .log import event, get_logger
from .names import LOCK_FILE, SIG_FILE
from .statcache import EXEC, FLAGS, NO_OID, OID, SHA, StatCache, with_oid
from .store import (
    _RETRIES,
    MERGE_STATE,
    CommitResult,
    Store,
    _explicit,
    capsule_lock,
    clear_stale_ref_lock,
    identity,
    integrity_error,
    parse_trailers,
    version_message,
)
from .storecommit import PACK_THRESHOLD, _result, _tree_sort_key, pack_blobs
from .storedisk import check_disk, hash_check

log = get_logger("store")

ENV_OFF = "QLCAPSULE_STORE_NO_QUICK"
_HEX40 = re.compile(r"[0-9a-f]{40}")
_TREE_MODE = 0o040000
#: characters libgit2 trims from the ends of a signature's name and email
_CRUD = " .,:;<>\"\\'"


#: environment that changes which config files git/libgit2 read: leave those setups to libgit2
_CONFIG_ENV = (
    "GIT_CONFIG",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_CONFIG_COUNT",
    "GIT_DIR",
)


class _Unsupported(Exception):
    """The quick path does not apply; the full commit takes over (nothing was written)."""


# -- reading the store ------------------------------------------------------------


def _read_ref(git_dir: Path, refname: str) -> str | None:
    try:
        text = (git_dir / refname).read_text("ascii").strip()
    except (FileNotFoundError, NotADirectoryError):
        text = None
    except (OSError, UnicodeDecodeError):
        raise _Unsupported from None
    if text is not None:
        if not _HEX40.fullmatch(text):
            raise _Unsupported  # a symbolic ref, or a torn one: libgit2 decides
        return text
    try:
        packed = (git_dir / "packed-refs").read_text("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        raise _Unsupported from None
    for line in packed.splitlines():
        oid, _, name = line.partition(" ")
        if name == refname and _HEX40.fullmatch(oid):
            return oid
    return None


def _read_commit(git_dir: Path, oid: str) -> tuple[str, list[str], str]:
    """``(tree, parents, message)`` of a loose commit object."""
    try:
        raw = zlib.decompress((git_dir / "objects" / oid[:2] / oid[2:]).read_bytes())
    except (OSError, zlib.error):
        raise _Unsupported from None  # packed by git gc, say
    header, _, body = raw.partition(b"\0")
    if not header.startswith(b"commit "):
        raise _Unsupported
    head, _, message = body.partition(b"\n\n")
    tree, parents = "", []
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = value.decode("ascii")
        elif key == b"parent":
            parents.append(value.decode("ascii"))
    if not _HEX40.fullmatch(tree):
        raise _Unsupported
    return tree, parents, message.decode("utf-8", "replace")


# -- who commits ------------------------------------------------------------------

_SECTION = re.compile(r'^\[\s*([A-Za-z0-9.-]+)\s*(?:"([^"\\]*)")?\s*\]\s*(?:[#;].*)?$')
_ENTRY = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\s*(?:=\s*(.*?))?\s*$")


def _config_values(path: Path) -> dict[tuple[str, str], str]:
    """``(section, key) -> value`` of a git config file with nothing unusual in it; {} when absent."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError):
        raise _Unsupported from None
    out: dict[tuple[str, str], str] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            m = _SECTION.match(line)
            if m is None:
                raise _Unsupported
            section = m.group(1).lower() + (f".{m.group(2)}" if m.group(2) is not None else "")
            if section.split(".")[0] in ("include", "includeif"):
                raise _Unsupported  # what an include brings in is libgit2's business
            continue
        m = _ENTRY.match(line)
        if m is None or any(c in line for c in '\\"#;'):
            raise _Unsupported  # continuation lines, escapes, quoting, trailing comments
        out[(section, m.group(1).lower())] = "true" if m.group(2) is None else m.group(2)
    return out


def _config(git_dir: Path) -> dict[tuple[str, str], str]:
    """The config libgit2 reads for a repository: system, XDG, global, then the repository's own."""
    home = os.environ.get("HOME")
    xdg = os.environ.get("XDG_CONFIG_HOME") or (os.path.join(home, ".config") if home else None)
    files = [Path("/etc/gitconfig")]
    if xdg:
        files.append(Path(xdg) / "git" / "config")
    if home:
        files.append(Path(home) / ".gitconfig")
    files.append(git_dir / "config")
    merged: dict[tuple[str, str], str] = {}
    for f in files:
        merged.update(_config_values(f))
    return merged


def _identity(kind: str, config: dict[tuple[str, str], str]) -> tuple[str, str]:
    """``store.signature`` without pygit2: the same rules, the config read here."""

    def configured() -> tuple[str, str] | None:
        name, email = config.get(("user", "name")), config.get(("user", "email"))
        return (name, email) if name and email else None  # libgit2's default signature needs both

    name, email = identity(kind, configured)
    for value in (name, email):  # what libgit2 would trim or refuse: let it
        if not value or value[0] in _CRUD or value[-1] in _CRUD or any(c in value for c in "<>\n\0"):
            raise _Unsupported
    return name, email


def _when(now: float) -> str:
    offset = time.localtime(now).tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    return f"{int(now)} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"


# -- writing ------------------------------------------------------------------------


def _trees(entries: dict[str, tuple[int, bytes]], dirty: set[str]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Every tree of ``entries`` (path -> (mode, raw blob id)); the root id and the dirty trees as (raw id, data)."""
    dirs: dict[str, dict[str, tuple[int, bytes]]] = {"": {}}
    for path, entry in entries.items():
        parent, _, name = path.rpartition("/")
        table = dirs.get(parent)
        if table is None:
            table = dirs[parent] = {}
            child = parent
            while child:  # register the directory chain up to one already known
                up, _, base = child.rpartition("/")
                known = up in dirs
                dirs.setdefault(up, {})[base] = (_TREE_MODE, b"")
                if known:
                    break
                child = up
        table[name] = entry
    pending: list[tuple[bytes, bytes]] = []
    ids: dict[str, bytes] = {}
    for d in sorted(dirs, key=lambda x: -x.count("/") - (1 if x else 0)):  # deepest first, root last
        table = dirs[d]
        for name, (mode, _) in table.items():
            if mode == _TREE_MODE:
                table[name] = (mode, ids[f"{d}/{name}" if d else name])
        data = b"".join(
            b"%o %s\x00%s" % (mode, name.encode("utf-8"), oid)
            for name, (mode, oid) in sorted(table.items(), key=_tree_sort_key)
        )
        ids[d] = hashlib.sha1(b"tree %d\x00" % len(data) + data).digest()
        if d in dirty:
            pending.append((ids[d], data))
    return ids[""], pending


def _dirty_dirs(paths: list[str]) -> set[str]:
    out = {""}
    for p in paths:
        while "/" in p:
            p = p.rpartition("/")[0]
            if p in out:
                break
            out.add(p)
    return out


def _cas_ref(git_dir: Path, refname: str, new: str, old: str, ident: str, message: str, reflog: bool) -> bool:
    """Move ``refname`` from ``old`` to ``new`` as git does (``<ref>.lock``, compare, fsync, rename)."""
    path = git_dir / refname
    lock = path.with_name(path.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    except FileExistsError:
        clear_stale_ref_lock(git_dir, refname)
        return False
    try:
        try:
            current = _read_ref(git_dir, refname)
        except _Unsupported:
            current = None
        if current != old:
            os.close(fd)
            lock.unlink()
            return False
        os.write(fd, new.encode("ascii") + b"\n")
        os.fsync(fd)
        os.close(fd)
        if reflog:
            log_file = git_dir / "logs" / refname
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(log_file, "ab") as f:
                f.write(f"{old} {new} {ident}\t{message}\n".encode())
                f.flush()
                os.fsync(f.fileno())
        os.replace(lock, path)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return True


# -- the commit -----------------------------------------------------------------------


def try_commit(
    capsule: Any,
    files: Any,
    digest: str,
    lock_bytes: bytes,
    sig_bytes: bytes | None,
    *,
    store: Any,
    branch: str,
    message: str | None,
) -> CommitResult | None:
    """Commit without pygit2 when the conditions in the module docstring hold; None otherwise (nothing written)."""
    if os.environ.get(ENV_OFF) or any(os.environ.get(v) for v in _CONFIG_ENV):
        return None
    git_dir = _explicit(store)
    if git_dir is None:
        return None
    try:
        return _commit(capsule, files, digest, lock_bytes, sig_bytes, git_dir.absolute(), branch, message)
    except _Unsupported:
        return None


def _commit(
    capsule: Any,
    files: Any,
    digest: str,
    lock_bytes: bytes,
    sig_bytes: bytes | None,
    git_dir: Path,
    branch: str,
    message: str | None,
) -> CommitResult:
    if not ((git_dir / "HEAD").is_file() and (git_dir / "objects").is_dir() and (git_dir / "refs").is_dir()):
        raise _Unsupported
    if (capsule.root / MERGE_STATE).exists():
        raise _Unsupported
    config = _config(git_dir)
    if config.get(("core", "bare"), "").lower() != "true" or ("extensions", "objectformat") in config:
        raise _Unsupported
    refname = Store.head_ref(capsule.name, branch)
    head = _read_ref(git_dir, refname)
    if head is None:
        raise _Unsupported  # a first commit, or a new branch: the full path
    cache = StatCache.for_root(git_dir / "qlcapsule" / "statcache", capsule.root)
    parent = cache.files_of(head) if cache.enabled else None
    if parent is None or any(rec[OID] == NO_OID for rec in parent.values()):
        raise _Unsupported
    head_tree, head_parents, head_message = _read_commit(git_dir, head)
    author = _identity("AUTHOR", config)
    committer = _identity("COMMITTER", config)
    # -- from here on, the same checks and messages as storecommit.commit_tree
    by_sha: dict[bytes, str] = {}
    for path, rec in parent.items():
        by_sha.setdefault(rec[SHA], path)
    check = check_disk(capsule.root, capsule.globs(), files, cache, parent, by_sha.__contains__)
    if check.problems:
        raise integrity_error(capsule.root, check.problems)
    problems = hash_check(capsule.root, check.hash_only, check.records)
    if problems:
        raise integrity_error(capsule.root, problems)
    hashed = len(check.hash_only) + len(check.need_blob)
    objects = git_dir / "objects"
    new_oids: dict[str, bytes] = {}
    if len(check.need_blob) > PACK_THRESHOLD:
        packed, problems = pack_blobs(objects, capsule.root, check.need_blob, check.records)
        new_oids = {p: bytes.fromhex(oid) for p, oid in packed.items()}
    else:
        for p in check.need_blob:
            oid = write_loose_file(objects, capsule.root / p, check.records[p][SHA].hex())
            if oid is None:
                problems.append(f"modified: {p}")
            else:
                new_oids[p] = bytes.fromhex(oid)
    if problems:
        raise integrity_error(capsule.root, problems)

    records = check.records
    entries: dict[str, tuple[int, bytes]] = {}
    for path, rec in records.items():
        raw = new_oids.get(path) or (rec[OID] if rec[OID] != NO_OID else None)
        if raw is None:
            source = by_sha.get(rec[SHA])
            raw = parent[source][OID] if source is not None else None
        if raw is None:
            raise StoreError(f"{path}: blob for sha256:{rec[SHA].hex()} is missing from the store (run with --rehash)")
        entries[path] = (0o100755 if rec[FLAGS] & EXEC else 0o100644, raw)
        if rec[OID] != raw:
            records[path] = with_oid(rec, raw)
    entries[LOCK_FILE] = (0o100644, bytes.fromhex(write_loose(objects, b"blob", lock_bytes)))
    if sig_bytes is not None:
        entries[SIG_FILE] = (0o100644, bytes.fromhex(write_loose(objects, b"blob", sig_bytes)))
    root_id, pending = _trees(entries, _dirty_dirs(check.changed + check.gone))
    tree = root_id.hex()
    fresh = [(b"tree", data) for raw, data in pending if not (objects / raw.hex()[:2] / raw.hex()[2:]).exists()]
    write_objects(objects, fresh)

    text = version_message(capsule.name, capsule.version, digest, message)
    reflog = (
        config.get(("core", "logallrefupdates"), "").lower() in ("always", "true")
        or (git_dir / "logs" / refname).exists()
    )
    with capsule_lock(git_dir, capsule.name):
        for attempt in range(_RETRIES):
            current = _read_ref(git_dir, refname)
            if current is None:
                raise _Unsupported  # deleted meanwhile: nothing of ours points anywhere yet
            if current == head:
                tip_tree, tip_parents, tip_message = head_tree, head_parents, head_message
            else:
                tip_tree, tip_parents, tip_message = _read_commit(git_dir, current)
            if tip_tree == tree and parse_trailers(tip_message).get("version") == capsule.version:
                cache.save(records, current, time.time_ns())
                return _result(
                    str(git_dir), capsule, digest, len(files), current, branch, refname, tip_parents, False, 0, hashed
                )
            now = time.time()
            when = _when(now)
            body = (
                f"tree {tree}\nparent {current}\n"
                f"author {author[0]} <{author[1]}> {when}\ncommitter {committer[0]} <{committer[1]}> {when}\n\n{text}"
            ).encode()
            commit = write_loose(objects, b"commit", body)
            ident = f"{committer[0]} <{committer[1]}> {when}"
            if _cas_ref(git_dir, refname, commit, current, ident, f"qlcapsule commit: {capsule.ref}", reflog):
                break
            time.sleep(min(0.001 * (attempt + 1), 0.05))
        else:
            raise StoreError(f"{git_dir}: could not update {refname} (too many concurrent writers); try again")
    cache.save(records, commit, time.time_ns())
    event(log, "store.commit", capsule=capsule.ref, commit=commit, branch=branch, new_blobs=len(new_oids), quick=True)
    return _result(
        str(git_dir), capsule, digest, len(files), commit, branch, refname, [current], True, len(new_oids), hashed
    )
