"""capsule.lock: the seal.

The lock lists every included file (capsule.yaml too, never capsule.lock or
capsule.sig) sorted by the UTF-8 bytes of its POSIX path, each with ``path``,
``sha256``, ``size`` and ``mode`` ("644" or "755").

The **capsule digest** is ``sha256(JCS(files))`` where ``files`` is that list of
objects with exactly the four keys above and JCS is the JSON Canonicalization
Scheme (RFC 8785). For these values (strings and non-negative integers) JCS is
what ``json.dumps(files, sort_keys=True, separators=(",", ":"),
ensure_ascii=False).encode("utf-8")`` produces, so any language can recompute
it. The lock itself is written as indented JSON with a fixed key order and a
final newline, atomically (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from .errors import DefinitionError, UnsafePathError, long_number
from .tree import FileEntry, check_relative, display_path, path_key, read_regular

LOCK_VERSION = 1
#: also the JSON Schema's pattern (where "$" is the end of the text); Python code uses it with fullmatch
HEX64 = r"^[0-9a-f]{64}$"


class LockEntry(NamedTuple):
    """One ``files`` entry of capsule.lock (a tuple: cheap to make by the thousand)."""

    path: str
    sha256: str
    size: int
    mode: str


@dataclass
class Lock:
    """The parsed capsule.lock (its JSON Schema: ``qlcapsule schema lock``, from lockschema.py)."""

    name: str
    version: str
    digest: str
    files: list[LockEntry]
    lockVersion: int = LOCK_VERSION  # noqa: N815  (the field's name in the file)
    algorithm: str = "sha256"

    def entries(self) -> list[FileEntry]:
        return [FileEntry(e.path, e.sha256, e.size, e.mode) for e in self.files]


_HEX64 = re.compile(HEX64)
_TOP_KEYS = ("lockVersion", "algorithm", "name", "version", "digest", "files")
_ENTRY_KEYS = ("path", "sha256", "size", "mode")
_ENTRY_KEYSET = frozenset(_ENTRY_KEYS)
_MODES = frozenset({"644", "755"})


def _path_ok(path: str) -> bool:
    """check_relative's rules as substring tests (no exceptions, no split)."""
    wrapped = f"/{path}/"
    return bool(path) and not (
        path[0] == "/" or "\\" in path or "\x00" in path or "//" in wrapped or "/./" in wrapped or "/../" in wrapped
    )


def _check(cond: bool, where: str, loc: str, msg: str) -> None:
    if not cond:
        raise DefinitionError(f"{where}: {loc}: {msg}")


def _validate(data: Any, where: str) -> Lock:
    # Hand-written so that verify never imports pydantic; lockschema.py states the
    # same rules as a JSON Schema and a test keeps the two in agreement.
    _check(isinstance(data, dict), where, "(root)", "expected a JSON object")
    for key in data:
        _check(key in _TOP_KEYS, where, str(key), "unknown key")
    for key in _TOP_KEYS:
        _check(key in data, where, key, "required key is missing")
    _check(
        data["lockVersion"] == LOCK_VERSION and type(data["lockVersion"]) is int,
        where,
        "lockVersion",
        f"unsupported lock version {data['lockVersion']!r} (this qlcapsule reads {LOCK_VERSION})",
    )
    _check(data["algorithm"] == "sha256", where, "algorithm", f"unsupported algorithm {data['algorithm']!r}")
    for key in ("name", "version"):
        _check(isinstance(data[key], str), where, key, "expected a string")
    _check(
        isinstance(data["digest"], str) and bool(_HEX64.fullmatch(data["digest"])),
        where,
        "digest",
        "expected 64 lowercase hex digits",
    )
    _check(isinstance(data["files"], list), where, "files", "expected a list")
    files: list[LockEntry] = []
    hex_ok = _HEX64.fullmatch
    for i, item in enumerate(data["files"]):
        # Fast path for well-formed entries (all C-level checks); anything else
        # goes through the checks below, which name the problem.
        if type(item) is dict and item.keys() == _ENTRY_KEYSET:
            path, digest, size, mode = item["path"], item["sha256"], item["size"], item["mode"]
            if (
                type(path) is str
                and type(digest) is str
                and type(size) is int
                and size >= 0
                and mode in _MODES
                and hex_ok(digest)
                and _path_ok(path)
            ):
                files.append(LockEntry(path, digest, size, mode))
                continue
        loc = f"files.{i}"
        _check(isinstance(item, dict), where, loc, "expected an object")
        for key in item:
            _check(key in _ENTRY_KEYS, where, f"{loc}.{key}", "unknown key")
        for key in _ENTRY_KEYS:
            _check(key in item, where, f"{loc}.{key}", "required key is missing")
        path, digest, size, mode = item["path"], item["sha256"], item["size"], item["mode"]
        _check(isinstance(path, str), where, f"{loc}.path", "expected a string")
        try:
            check_relative(path, "path")
        except UnsafePathError as exc:
            raise DefinitionError(f"{where}: {loc}.path: {exc}") from None
        _check(
            isinstance(digest, str) and bool(_HEX64.fullmatch(digest)),
            where,
            f"{loc}.sha256",
            "expected 64 lowercase hex digits",
        )
        _check(type(size) is int and size >= 0, where, f"{loc}.size", "expected a non-negative integer")
        _check(mode in ("644", "755"), where, f"{loc}.mode", "expected '644' or '755'")
        files.append(LockEntry(path, digest, size, mode))
    return Lock(name=data["name"], version=data["version"], digest=data["digest"], files=files)


def canonical_files(files: Iterable[FileEntry | LockEntry]) -> bytes:
    """The JCS (RFC 8785) bytes of the file list the capsule digest covers."""
    # Keys written in sorted order already, so the C encoder needs no sort_keys.
    items = [{"mode": f.mode, "path": f.path, "sha256": f.sha256, "size": f.size} for f in files]
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def capsule_digest(files: Iterable[FileEntry | LockEntry]) -> str:
    return hashlib.sha256(canonical_files(files)).hexdigest()


def build_lock(name: str, version: str, files: list[FileEntry]) -> Lock:
    ordered = sorted(files, key=lambda f: path_key(f.path))
    return Lock(
        name=name,
        version=version,
        digest=capsule_digest(ordered),
        files=[LockEntry(f.path, f.sha256, f.size, f.mode) for f in ordered],
    )


def render_lock(lock: Lock) -> bytes:
    """The lock file bytes: fixed key order, one file entry per line (small diffs), final newline.

    ``json.dumps`` with ``indent`` falls back to the pure-Python encoder, which
    costs ~0.2 s on 5,000 files; each line here is formatted directly, and only
    a path that needs escaping goes through the C encoder.
    """
    dump = json.dumps
    head = (
        "{\n"
        f'  "lockVersion": {lock.lockVersion},\n'
        f'  "algorithm": {dump(lock.algorithm)},\n'
        f'  "name": {dump(lock.name, ensure_ascii=False)},\n'
        f'  "version": {dump(lock.version, ensure_ascii=False)},\n'
        f'  "digest": {dump(lock.digest)},\n'
    )
    if not lock.files:
        return (head + '  "files": []\n}\n').encode("utf-8")

    def quoted(path: str) -> str:
        # What json.dumps(path, ensure_ascii=False) gives, without the call for plain names.
        if path.isascii() and path.isprintable() and '"' not in path and "\\" not in path:
            return f'"{path}"'
        return dump(path, ensure_ascii=False)

    # Each row is exactly json.dumps({"path", "sha256", "size", "mode"}) (a test holds them equal).
    rows = ",\n".join(
        f'    {{"path": {quoted(e.path)}, "sha256": "{e.sha256}", "size": {e.size}, "mode": "{e.mode}"}}'
        for e in lock.files
    )
    return (head + '  "files": [\n' + rows + "\n  ]\n}\n").encode("utf-8")


def parse_lock(raw: bytes, where: str = "capsule.lock") -> Lock:
    """Parse lock bytes; structural problems raise DefinitionError naming the field."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DefinitionError(f"{where}: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"{where}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise DefinitionError(f"{where}: invalid JSON: nested too deeply") from None
    except ValueError:  # an integer longer than int_max_str_digits (Python's own words differ by version)
        raise DefinitionError(f"{where}: invalid JSON: {long_number()}") from None
    lock = _validate(data, where)
    keys = [path_key(e.path) for e in lock.files]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise DefinitionError(f"{where}: files: not sorted by path or has duplicate paths")
    return lock


def read_lock(path: Path) -> Lock | None:
    raw = read_regular(path, name="capsule.lock")  # a symlink or a FIFO is refused, not followed
    return None if raw is None else parse_lock(raw, str(path))


def mkstemp(prefix: str, folder: Path | str, suffix: str = "") -> tuple[int, str]:
    """``tempfile.mkstemp`` (mode 600, O_EXCL) without importing tempfile, which pulls
    in shutil, random, bz2 and lzma: ~10 ms of every seal, sign and commit."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = os.path.join(folder, prefix + os.urandom(8).hex() + suffix)
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: no free temporary name for {prefix}*{suffix}")


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> bool:
    """Write ``data`` to ``path`` via a temp file and rename. Returns False when unchanged."""
    try:
        st = os.lstat(path)  # a symlink or a FIFO is replaced, never read or written through
        if stat.S_ISREG(st.st_mode) and st.st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    fd, tmp = mkstemp(f".{path.name}.", path.parent, ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return True


@dataclass
class Status:
    """Differences between a lock and the files on disk."""

    modified: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    mode_changed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: (old, new) pairs among removed/added whose content is identical
    renamed: list[tuple[str, str]] = field(default_factory=list)
    #: the lock was sealed under another name/version than capsule.yaml says (reported after file changes,
    #: which usually explain it)
    identity: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.modified or self.added or self.removed or self.mode_changed or self.problems or self.identity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "modified": self.modified,
            "added": self.added,
            "removed": self.removed,
            "mode_changed": self.mode_changed,
            "renamed": [{"from": a, "to": b} for a, b in self.renamed],
            "problems": self.problems + self.identity,
        }

    def lines(self) -> list[str]:
        d = display_path
        out = [f"lock: {p}" for p in self.problems]
        moved_from = {a for a, _ in self.renamed}
        moved_to = {b for _, b in self.renamed}
        out += [f"modified: {d(p)}" for p in self.modified]
        out += [f"renamed: {d(a)} -> {d(b)}" for a, b in self.renamed]
        out += [f"added: {d(p)}" for p in self.added if p not in moved_to]
        out += [f"removed: {d(p)}" for p in self.removed if p not in moved_from]
        out += [f"mode changed: {d(p)}" for p in self.mode_changed]
        out += [f"lock: {p}" for p in self.identity]
        return out


def compare(lock: Lock, disk: list[FileEntry]) -> Status:
    """Compare a lock with freshly hashed files; also checks the lock's own digest."""
    status = Status()
    if capsule_digest(lock.files) != lock.digest:
        status.problems.append("capsule.lock: digest does not match its file list (the lock was edited)")
    recorded = {e.path: e for e in lock.files}
    actual = {e.path: e for e in disk}
    for path, rec in recorded.items():
        cur = actual.get(path)
        if cur is None:
            status.removed.append(path)
        elif cur.sha256 != rec.sha256 or cur.size != rec.size:
            status.modified.append(path)
        elif cur.mode != rec.mode:
            status.mode_changed.append(path)
    status.added = [p for p in actual if p not in recorded]
    by_content: dict[tuple[str, int], list[str]] = {}
    for p in status.added:
        by_content.setdefault((actual[p].sha256, actual[p].size), []).append(p)
    for p in status.removed:
        candidates = by_content.get((recorded[p].sha256, recorded[p].size))
        if candidates:
            status.renamed.append((p, candidates.pop(0)))
    return status
