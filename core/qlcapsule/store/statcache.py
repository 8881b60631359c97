"""A stat cache so a commit neither re-hashes unchanged files nor re-reads the parent's lock.

Like git's index: after a commit has verified every file, it records per path
``(size, mtime_ns, ctime_ns, inode, st_mode)`` from the lstat taken before the
file was checked, the file's SHA-256, its git blob id and its lock mode, plus
the commit those entries describe. The next commit trusts a recorded SHA-256
only when all five stat fields still match. ctime cannot be set from user
space, so an edit that restores size and mtime is still seen. Entries whose
timestamps fall within the filesystem's timestamp granularity of the moment
the cache was written are "racy" (a later edit in the same tick would leave the
stat unchanged): they are kept, marked untrusted, and hashed next time — git's
racy-git rule.

When the cache's commit is the branch head a new commit builds on, its
entries are that head's file list (path -> SHA-256, mode, blob id), so the
parent's capsule.lock need not be parsed and unchanged files need no tree
lookups. Otherwise only the stat part is used.

The file lives in the store (``<gitdir>/qlcapsule/statcache/``), never in the
capsule or the user's index; deleting it only costs a full re-hash. Format
(version 2): a fixed header, one fixed-size little-endian record per path, the
paths NUL-separated, and a SHA-1 of all of it, so a torn or damaged file reads
as empty. It is rewritten only when something changed, by rename and without
fsync: after a crash it is either the old cache, the new one, or rejected by
its checksum — never wrong. ``QLCAPSULE_NO_STAT_CACHE=1`` (or ``commit
--rehash``) turns it off.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Final

from ..format.lock import mkstemp
from ..log import DEBUG, event, get_logger

log = get_logger("statcache")

ENV_OFF = "QLCAPSULE_NO_STAT_CACHE"
#: timestamps closer than this to the cache write are racy (ns filesystems)
RACY_NS = 100_000_000
#: coarse filesystems (whole-second timestamps: FAT, HFS+, some network fs)
RACY_COARSE_NS = 2_000_000_000

StatKey = tuple[int, int, int, int, int]
#: (size, mtime_ns, ctime_ns, inode, st_mode, sha256 raw, git blob id raw or NO_OID, flags)
Record = tuple[int, int, int, int, int, bytes, bytes, int]
SHA: Final = 5
OID: Final = 6
FLAGS: Final = 7
TRUSTED: Final = 1  # flag: the stat fields may be trusted (not racy)
EXEC: Final = 2  # flag: lock mode 755 (else 644)

_MAGIC = b"qlcapsule-statcache\x002\x00"
_HEAD = struct.Struct("<20sII")  # commit id (raw, zeros: none), record count, byte length of the paths
_RECORD = struct.Struct("<QqqQI32s20sB")
NO_OID = b"\0" * 20  # blob id not known (the null id is never an object)


def env_enabled() -> bool:
    return os.environ.get(ENV_OFF, "").strip().lower() in ("", "0", "false", "no")


def record(key: StatKey, sha256: bytes, oid: bytes, mode: str) -> Record:
    """A new, not yet trusted record: ``save`` trusts it unless its timestamps are racy."""
    return (*key, sha256, oid, EXEC if mode == "755" else 0)


def with_oid(rec: Record, oid: bytes) -> Record:
    return (rec[0], rec[1], rec[2], rec[3], rec[4], rec[SHA], oid, rec[FLAGS])


def _racy(key: StatKey | Record, write_ns: int) -> bool:
    newest = max(key[1], key[2])
    margin = RACY_COARSE_NS if key[1] % 1_000_000_000 == 0 else RACY_NS
    return newest >= write_ns - margin


class StatCache:
    """The verified files of one capsule directory, and the commit they were recorded in."""

    def __init__(self, file: Path, root: Path, *, enabled: bool = True) -> None:
        self.file = file
        self.root = str(root)
        self.enabled = enabled
        self.records: dict[str, Record] = {}
        #: hex id of the commit whose files ``records`` are, or None
        self.commit: str | None = None

    @classmethod
    def for_root(cls, cache_dir: Path, root: Path, *, enabled: bool = True) -> StatCache:
        key = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        cache = cls(cache_dir / key, root, enabled=enabled and env_enabled())
        if cache.enabled:
            try:
                cache._load(cache.file.read_bytes())
            except OSError:
                pass
        return cache

    def _load(self, raw: bytes) -> None:
        root = self.root.encode("utf-8", "surrogateescape")
        prefix = _MAGIC + struct.pack("<I", len(root)) + root
        if not raw.startswith(prefix) or len(raw) < len(prefix) + _HEAD.size + 20:
            return  # another format, another directory, or truncated
        body, check = raw[:-20], raw[-20:]
        if hashlib.sha1(body).digest() != check:
            event(log, "statcache.damaged", level=DEBUG, file=str(self.file))
            return  # a damaged cache is only a cache: hash everything
        commit, count, paths_len = _HEAD.unpack_from(raw, len(prefix))
        start = len(prefix) + _HEAD.size
        end = start + count * _RECORD.size
        if end + paths_len != len(body) or not count:
            return
        paths = body[end:].decode("utf-8", "surrogateescape").split("\0")
        if len(paths) != count:
            return
        self.records = dict(zip(paths, _RECORD.iter_unpack(body[start:end]), strict=True))
        self.commit = commit.hex() if commit != NO_OID else None

    def files_of(self, commit: str | None) -> dict[str, Record] | None:
        """path -> record of every file of ``commit`` when this cache recorded exactly that commit, else None."""
        if commit is None or commit != self.commit:
            return None
        return self.records

    def save(self, records: dict[str, Record], commit: str | None, write_ns: int) -> bool:
        """Record every file of ``commit`` (updates ``records``): new records are trusted unless racy.

        A record already trusted stays trusted: its timestamps were older than
        an earlier write, so they are older than this one. Returns True when the
        file was rewritten (False: disabled, unchanged or unwritable).
        """
        if not self.enabled:
            return False
        for p, rec in records.items():
            if not rec[FLAGS] & TRUSTED and not _racy(rec, write_ns):
                records[p] = (rec[0], rec[1], rec[2], rec[3], rec[4], rec[SHA], rec[OID], rec[FLAGS] | TRUSTED)
        if commit == self.commit and records == self.records:
            return False
        root = self.root.encode("utf-8", "surrogateescape")
        paths = "\0".join(records).encode("utf-8", "surrogateescape")
        pack = _RECORD.pack
        body = b"".join(
            (
                _MAGIC,
                struct.pack("<I", len(root)),
                root,
                _HEAD.pack(bytes.fromhex(commit) if commit else NO_OID, len(records), len(paths)),
                b"".join([pack(*r) for r in records.values()]),
                paths,
            )
        )
        try:
            self._write(body + hashlib.sha1(body).digest())
        except OSError as exc:  # a cache that cannot be written only costs speed next time
            event(log, "statcache.unwritable", level=DEBUG, file=str(self.file), error=exc.strerror or str(exc))
            return False
        self.records, self.commit = records, commit
        return True

    def _write(self, data: bytes) -> None:
        # No fsync: the checksum rejects a file torn by a crash, and a lost
        # update only means the next commit hashes a little more.
        self.file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = mkstemp(".statcache.", self.file.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
