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
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import DefinitionError, UnsafePathError
from .tree import FileEntry, check_relative, display_path, path_key

LOCK_VERSION = 1
HEX64 = r"^[0-9a-f]{64}$"


class LockEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    sha256: str = Field(pattern=HEX64)
    size: int = Field(ge=0)
    mode: Literal["644", "755"]

    @field_validator("path")
    @classmethod
    def _safe(cls, v: str) -> str:
        try:
            return check_relative(v, "path")
        except UnsafePathError as exc:
            raise ValueError(str(exc)) from None


class Lock(BaseModel):
    """The parsed capsule.lock."""

    model_config = ConfigDict(extra="forbid")
    lockVersion: Literal[1] = LOCK_VERSION
    algorithm: Literal["sha256"] = "sha256"
    name: str
    version: str
    digest: str = Field(pattern=HEX64)
    files: list[LockEntry]

    def entries(self) -> list[FileEntry]:
        return [FileEntry(e.path, e.sha256, e.size, e.mode) for e in self.files]


def canonical_files(files: Iterable[FileEntry]) -> bytes:
    """The JCS (RFC 8785) bytes of the file list the capsule digest covers."""
    items = [f.to_dict() for f in files]
    return json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def capsule_digest(files: Iterable[FileEntry]) -> str:
    return hashlib.sha256(canonical_files(files)).hexdigest()


def build_lock(name: str, version: str, files: list[FileEntry]) -> Lock:
    ordered = sorted(files, key=lambda f: path_key(f.path))
    return Lock(
        name=name,
        version=version,
        digest=capsule_digest(ordered),
        files=[LockEntry(path=f.path, sha256=f.sha256, size=f.size, mode=f.mode) for f in ordered],  # type: ignore[arg-type]
    )


def render_lock(lock: Lock) -> bytes:
    doc: dict[str, Any] = {
        "lockVersion": lock.lockVersion,
        "algorithm": lock.algorithm,
        "name": lock.name,
        "version": lock.version,
        "digest": lock.digest,
        "files": [{"path": e.path, "sha256": e.sha256, "size": e.size, "mode": e.mode} for e in lock.files],
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def parse_lock(raw: bytes, where: str = "capsule.lock") -> Lock:
    """Parse lock bytes; structural problems raise DefinitionError naming the field."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DefinitionError(f"{where}: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"{where}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    try:
        lock = Lock.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise DefinitionError(f"{where}: {loc}: {msg}") from None
    keys = [path_key(e.path) for e in lock.files]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise DefinitionError(f"{where}: files: not sorted by path or has duplicate paths")
    return lock


def read_lock(path: Path) -> Lock | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    return parse_lock(raw, str(path))


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> bool:
    """Write ``data`` to ``path`` via a temp file and rename. Returns False when unchanged."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
        return not (
            self.modified or self.added or self.removed or self.mode_changed or self.problems or self.identity
        )

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
    if capsule_digest(lock.entries()) != lock.digest:
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
