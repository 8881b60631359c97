"""capsule.lock: the seal. The one reader, validator and digest of the lock.

The lock lists every included file (capsule.yaml too, never capsule.lock or
capsule.sig) sorted by the UTF-8 bytes of its POSIX path, each with ``path``,
``sha256``, ``size`` and ``mode`` ("644" or "755").

The **capsule digest** is ``sha256(JCS(files))`` where ``files`` is that list of
objects with exactly the four keys above and JCS is the JSON Canonicalization
Scheme (RFC 8785). For these values (strings without lone surrogates and
integers below 2**53) JCS is what ``json.dumps(files, sort_keys=True,
separators=(",", ":"), ensure_ascii=False).encode("utf-8")`` produces, so any
language can recompute it. :func:`capsule_digest` is the only encoder: seal,
verify, export, import and the version store all call it. The lock itself is
written as indented JSON with a fixed key order and a final newline,
atomically (temp file + rename).

Every reader of lock bytes (verify, export, import, merge, the store's commit)
goes through :func:`parse_lock`: a size bound, UTF-8, JSON (too deep or a
too-long number is one line, exit 2), then the model below, then sorted,
unique paths. The model (:data:`LOCK_MODEL`) states each field's rule once, as
its JSON Schema and the Python check that means the same; ``qlcapsule schema
lock`` prints :func:`lock_schema`, generated from it. It is not a pydantic
model so that verify never imports pydantic (~0.1 s of start-up).
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import re
import stat
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from ..errors import DefinitionError, UnsafePathError, parse_json
from .names import LOCK_FILE, MAX_LOCK_BYTES
from .tree import FileEntry, check_relative, display_path, path_key, read_regular

LOCK_VERSION = 1
#: also the JSON Schema's pattern (where "$" is the end of the text); Python code uses it with fullmatch
HEX64 = r"^[0-9a-f]{64}$"
#: JCS writes numbers as IEEE doubles: larger integers would not round-trip, so sizes stay below this
MAX_SIZE = 2**53 - 1
#: the one problem line for a lock whose digest is not the digest of its own file list
EDITED = "capsule.lock: digest does not match its file list (the lock was edited)"


class LockEntry(NamedTuple):
    """One ``files`` entry of capsule.lock (a tuple: cheap to make by the thousand)."""

    path: str
    sha256: str
    size: int
    mode: str


@dataclass
class Lock:
    """The parsed capsule.lock (its JSON Schema: ``qlcapsule schema lock``, from :data:`LOCK_MODEL`)."""

    name: str
    version: str
    digest: str
    files: list[LockEntry]
    lockVersion: int = LOCK_VERSION  # noqa: N815  (the field's name in the file)
    algorithm: str = "sha256"

    def entries(self) -> list[FileEntry]:
        return [FileEntry(e.path, e.sha256, e.size, e.mode) for e in self.files]

    @property
    def edited(self) -> bool:
        """True when ``digest`` is not the digest of ``files``: someone changed the lock by hand."""
        return capsule_digest(self.files) != self.digest


# -- the model ------------------------------------------------------------------


class Rule(NamedTuple):
    """One value's rule, stated once: its JSON Schema and the Python check that means the same.

    ``check`` returns None for a valid value, else what is wrong with it (one phrase).
    A test holds the two in agreement (``jsonschema`` against :func:`parse_lock`).
    """

    schema: dict[str, Any]
    check: Callable[[Any], str | None]


_HEX64 = re.compile(HEX64)


def _unicode(value: str) -> str | None:
    """JSON's \\ud800 escapes can make a string no UTF-8 encoder accepts (nor the digest)."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode (a lone surrogate)"
    return None


def _const(value: Any, what: str) -> Rule:
    return Rule(
        {"const": value},
        lambda v: (
            None
            if type(v) is type(value) and v == value
            else f"unsupported {what} {v!r} (this qlcapsule reads {value!r})"
        ),
    )


def _text(description: str) -> Rule:
    return Rule(
        {"type": "string", "description": description},
        lambda v: _unicode(v) if type(v) is str else "expected a string",
    )


def _hex64(description: str) -> Rule:
    # maxLength: the `$` of the pattern may match before a final newline in some regex engines (Python's re)
    return Rule(
        {"type": "string", "pattern": HEX64, "maxLength": 64, "description": description},
        lambda v: None if type(v) is str and _HEX64.fullmatch(v) else "expected 64 lowercase hex digits",
    )


def _path(v: Any) -> str | None:
    if type(v) is not str:
        return "expected a string"
    try:
        check_relative(v, "path")
    except UnsafePathError as exc:
        return str(exc).removeprefix("path: ")
    return _unicode(v)


def _object(title: str, fields: dict[str, Rule], description: str) -> dict[str, Any]:
    return {
        "title": title,
        "description": description,
        "type": "object",
        "properties": {k: r.schema for k, r in fields.items()},
        "required": list(fields),
        "additionalProperties": False,
    }


ENTRY_MODEL: dict[str, Rule] = {
    "path": Rule(
        {
            "type": "string",
            "minLength": 1,
            "description": "capsule-relative POSIX path; no '..', '.' or empty segment, no leading '/', no '\\\\' or NUL",
        },
        _path,
    ),
    "sha256": _hex64("SHA-256 of the file's bytes"),
    "size": Rule(
        {"type": "integer", "minimum": 0, "maximum": MAX_SIZE, "description": "bytes"},
        lambda v: None if type(v) is int and 0 <= v <= MAX_SIZE else "expected a non-negative integer below 2**53",
    ),
    "mode": Rule(
        {"enum": ["644", "755"], "description": '"755" when any execute bit is set'},
        lambda v: None if v in ("644", "755") and type(v) is str else "expected '644' or '755'",
    ),
}
_ENTRY_SCHEMA = _object("LockEntry", ENTRY_MODEL, "one locked file")

LOCK_MODEL: dict[str, Rule] = {
    "lockVersion": _const(LOCK_VERSION, "lock version"),
    "algorithm": _const("sha256", "algorithm"),
    "name": _text("the capsule's name at sealing time"),
    "version": _text("the capsule's version at sealing time"),
    "digest": _hex64("the capsule digest: SHA-256 of the JCS (RFC 8785) encoding of `files`"),
    "files": Rule(
        {
            "type": "array",
            "items": _ENTRY_SCHEMA,
            "description": "sorted by the UTF-8 bytes of path; no duplicates (not expressible in JSON Schema)",
        },
        lambda v: None if type(v) is list else "expected a list",
    ),
}


def lock_schema() -> dict[str, Any]:
    """The published JSON Schema of capsule.lock (``qlcapsule schema lock``), made from :data:`LOCK_MODEL`."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **_object("capsule.lock", LOCK_MODEL, "the seal of a capsule (docs/format.md, section 3)"),
    }


def _check_object(value: Any, model: dict[str, Rule], where: str, loc: str) -> None:
    if type(value) is not dict:
        raise DefinitionError(f"{where}: {loc.rstrip('.') or '(root)'}: expected an object")
    for key in value:
        if key not in model:
            raise DefinitionError(f"{where}: {loc}{key}: unknown key")
    for key, rule in model.items():
        if key not in value:
            raise DefinitionError(f"{where}: {loc}{key}: required key is missing")
        problem = rule.check(value[key])
        if problem is not None:
            raise DefinitionError(f"{where}: {loc}{key}: {problem}")


_ENTRY_ROW = operator.itemgetter(*ENTRY_MODEL)
_ENTRY_CHECKS = tuple(rule.check for rule in ENTRY_MODEL.values())


def _validate(data: Any, where: str) -> Lock:
    """The model's checks on parsed JSON; DefinitionError naming the field."""
    _check_object(data, LOCK_MODEL, where, "")
    items = data["files"]
    # The same rules column by column (a C-level loop per rule, the cost of thousands of
    # entries); the first entry that breaks one is then checked alone, which names it.
    rows = None
    if set(map(type, items)) <= {dict} and set(map(len, items)) <= {len(ENTRY_MODEL)}:
        try:
            rows = list(map(_ENTRY_ROW, items))  # all keys there and no others: it is a row
        except KeyError:
            pass
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(ENTRY_MODEL)
    if rows is None or any(
        set(map(check, column)) - {None} for check, column in zip(_ENTRY_CHECKS, columns, strict=True)
    ):
        for i, item in enumerate(items):
            _check_object(item, ENTRY_MODEL, where, f"files.{i}.")
        raise AssertionError("a column check and the entry check disagree")  # pragma: no cover
    return Lock(
        name=data["name"], version=data["version"], digest=data["digest"], files=list(map(LockEntry._make, rows))
    )


def canonical_files(files: Iterable[FileEntry | LockEntry]) -> bytes:
    """The JCS (RFC 8785) bytes of the file list the capsule digest covers: the one encoder.

    Each object is written with its keys in sorted order; the path goes through
    JSON's own string encoder (raw UTF-8, only ``"``, ``\\`` and control
    characters escaped, as JCS says); ``sha256`` (hex) and ``mode`` (644/755) need
    no escaping and ``size`` is an integer below 2**53, so this is JCS exactly.
    """
    quote = encode_basestring
    body = ",".join(
        [f'{{"mode":"{f.mode}","path":{quote(f.path)},"sha256":"{f.sha256}","size":{f.size}}}' for f in files]
    )
    return f"[{body}]".encode()


def capsule_digest(files: Iterable[FileEntry | LockEntry]) -> str:
    """The capsule digest: lowercase hex SHA-256 of :func:`canonical_files`."""
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


def parse_lock(raw: bytes, where: str = LOCK_FILE) -> Lock:
    """Read and check lock bytes: the one lock reader. Bad input raises DefinitionError (one line, exit 2).

    It does not compare ``digest`` with the file list (:attr:`Lock.edited`): an
    edited lock is tampering (exit 1), which each caller reports in its own terms.
    """
    if len(raw) > MAX_LOCK_BYTES:
        raise DefinitionError(f"{where}: {len(raw)} bytes; a capsule.lock is at most {MAX_LOCK_BYTES // 2**20} MiB")
    data = parse_json(raw, where, DefinitionError)
    lock = _validate(data, where)
    # The model refused lone surrogates, so code point order is UTF-8 byte order.
    paths = [e.path for e in lock.files]
    if paths != sorted(paths) or len(set(paths)) != len(paths):
        raise DefinitionError(f"{where}: files: not sorted by path or repeat a path")
    return lock


def read_lock(path: Path) -> Lock | None:
    """capsule.lock at ``path`` through :func:`parse_lock`; None when there is none."""
    raw = read_regular(path, name="capsule.lock", limit=MAX_LOCK_BYTES)  # a symlink or a FIFO is refused
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
    if lock.edited:
        status.problems.append(EDITED)
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
