"""A stat cache so a commit does not re-hash files that have not changed.

Like git's index: after a commit has read and verified every file, it records
``(size, mtime_ns, ctime_ns, inode, mode) -> sha256`` per path. The next
commit trusts a recorded SHA-256 only when all five still match. ctime cannot
be set from user space, so an edit that restores size and mtime is still
seen. Entries written within the filesystem's timestamp granularity of the
moment they were read are "racy" (a later edit in the same tick would leave
the stat unchanged), so they are not recorded — git's racy-git rule.

The cache lives in the store (``<gitdir>/qlcapsule/statcache/``), never in
the capsule or the user's index; deleting it only costs a full re-hash.
``QLCAPSULE_NO_STAT_CACHE=1`` (or ``commit --rehash``) turns it off.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from .lock import atomic_write
from .log import event, get_logger

log = get_logger("statcache")

ENV_OFF = "QLCAPSULE_NO_STAT_CACHE"
#: timestamps closer than this to the read are racy (ns filesystems)
RACY_NS = 100_000_000
#: coarse filesystems (whole-second timestamps: FAT, HFS+, some network fs)
RACY_COARSE_NS = 2_000_000_000

StatKey = tuple[int, int, int, int, int]
_HEADER = "qlcapsule-statcache 1 "


def env_enabled() -> bool:
    return os.environ.get(ENV_OFF, "").strip().lower() in ("", "0", "false", "no")


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)


def _racy(key: StatKey, read_ns: int) -> bool:
    newest = max(key[1], key[2])
    margin = RACY_COARSE_NS if key[1] % 1_000_000_000 == 0 else RACY_NS
    return newest >= read_ns - margin


class StatCache:
    """path -> (stat key, sha256) for one capsule directory."""

    def __init__(self, file: Path, root: Path, *, enabled: bool = True) -> None:
        self.file = file
        self.root = str(root)
        self.enabled = enabled
        self.entries: dict[str, tuple[StatKey, str]] = {}

    @classmethod
    def for_root(cls, cache_dir: Path, root: Path, *, enabled: bool = True) -> StatCache:
        key = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        cache = cls(cache_dir / key, root, enabled=enabled and env_enabled())
        if not cache.enabled:
            return cache
        try:
            raw = cache.file.read_bytes().decode("utf-8", "surrogateescape")
        except OSError:
            return cache
        head, _, body = raw.partition("\n")
        if head != _HEADER + cache.root:
            return cache
        fields = body.split("\0")
        try:
            for i in range(0, len(fields) - 6, 7):
                stat: StatKey = (int(fields[i + 1]), int(fields[i + 2]), int(fields[i + 3]), int(fields[i + 4]), int(fields[i + 5]))
                cache.entries[fields[i]] = (stat, fields[i + 6])
        except ValueError:
            cache.entries.clear()  # a damaged cache is only a cache: hash everything
        return cache

    def lookup(self, path: str, key: StatKey) -> str | None:
        rec = self.entries.get(path)
        if rec is not None and rec[0] == key:
            return rec[1]
        return None

    def save(self, files: dict[str, tuple[StatKey, str]], read_ns: int) -> None:
        """Record verified files; racy ones are left out so they are hashed next time."""
        if not self.enabled:
            return
        parts = [_HEADER + self.root + "\n"]
        for p, (k, sha) in files.items():
            if not _racy(k, read_ns):
                parts.append(f"{p}\0{k[0]}\0{k[1]}\0{k[2]}\0{k[3]}\0{k[4]}\0{sha}\0")
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.file, "".join(parts).encode("utf-8", "surrogateescape"))
        except OSError as exc:  # a cache that cannot be written only costs speed next time
            event(log, "statcache.unwritable", level=logging.DEBUG, file=str(self.file), error=exc.strerror or str(exc))
