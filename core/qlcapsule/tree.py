"""Walking and hashing a capsule's files.

The walk refuses what cannot be sealed honestly: symlinks, devices, FIFOs,
sockets and names that are not valid UTF-8. Excluded directories are pruned
before they are entered (so a ``.venv`` full of symlinks is never looked at).

Hashing streams each file in 1 MiB chunks on a thread pool: hashlib releases
the GIL while it hashes, so every core works and memory stays flat (one buffer
per worker) whatever the file sizes.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import InputError, UnsafePathError
from .globs import GlobSet

CHUNK = 1 << 20
ALWAYS_SKIPPED = frozenset({"capsule.lock", "capsule.sig"})


@dataclass(frozen=True)
class FileEntry:
    """One file of a capsule as recorded in the lock."""

    path: str
    sha256: str
    size: int
    mode: str  # "644" or "755"

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "mode": self.mode}


@dataclass(frozen=True)
class Found:
    path: str
    size: int
    mode: str


def display_path(path: str) -> str:
    """``path`` for a one-line message: quoted and escaped when it holds control characters."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path) or path != path.strip():
        return json.dumps(path, ensure_ascii=False)
    return path


def mode_of(st_mode: int) -> str:
    return "755" if st_mode & 0o111 else "644"


def path_key(path: str) -> bytes:
    """Sort key: the bytes of the UTF-8 POSIX path."""
    return path.encode("utf-8")


def walk(root: Path, globs: GlobSet) -> list[Found]:
    """Every included regular file under ``root``, sorted by UTF-8 bytes of the path."""
    found: list[Found] = []
    _walk_dir(root, "", globs, found)
    found.sort(key=lambda f: path_key(f.path))
    return found


def _walk_dir(base: Path, rel: str, globs: GlobSet, out: list[Found]) -> None:
    try:
        entries = list(os.scandir(base / rel if rel else base))
    except PermissionError:
        raise InputError(f"{rel or '.'}: permission denied") from None
    for entry in entries:
        name = entry.name
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(name).decode("utf-8", "backslashreplace")
            raise UnsafePathError(f"{rel + '/' if rel else ''}{shown}: file name is not valid UTF-8") from None
        path = f"{rel}/{name}" if rel else name
        if "\\" in name:
            raise UnsafePathError(f"{display_path(path)}: file name contains a backslash (not portable; rename or exclude it)")
        if not rel and name in ALWAYS_SKIPPED:
            continue
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if not globs.prune_dir(path):
                _walk_dir(base, path, globs, out)
            continue
        if not globs.wants(path):
            continue
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(f"{display_path(path)}: is a symlink; capsules hold regular files only (exclude it or replace it)")
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{display_path(path)}: is not a regular file (device, FIFO or socket)")
        out.append(Found(path, st.st_size, mode_of(st.st_mode)))


def check_relative(path: str, where: str = "path") -> str:
    """Refuse a recorded path that could escape the capsule."""
    if not path or "\x00" in path or path.startswith("/") or "\\" in path:
        raise UnsafePathError(f"{where}: {path!r} is not a safe relative POSIX path")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise UnsafePathError(f"{where}: {path!r} escapes the capsule or is not normalised")
    return path


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed in chunks."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def _small_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def default_workers() -> int:
    return max(2, min(16, (os.cpu_count() or 1) + 1))


def hash_files(
    root: Path,
    found: Iterable[Found],
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FileEntry]:
    """Hash ``found`` under ``root`` on a thread pool; results keep the input order."""
    items = list(found)

    def one(item: Found) -> FileEntry:
        full = root / item.path
        try:
            digest = _small_sha256(full) if item.size <= CHUNK else sha256_file(full)
            st = os.stat(full, follow_symlinks=False)
        except FileNotFoundError:
            raise InputError(f"{display_path(item.path)}: vanished while hashing") from None
        except PermissionError:
            raise InputError(f"{display_path(item.path)}: permission denied") from None
        if progress is not None:
            progress(item.size)
        return FileEntry(item.path, digest, st.st_size, mode_of(st.st_mode))

    n = workers or default_workers()
    if len(items) < 8 or n == 1:
        return [one(i) for i in items]
    # Largest first so one big file does not finish last on a single core.
    order = sorted(range(len(items)), key=lambda i: -items[i].size)
    results: list[FileEntry | None] = [None] * len(items)
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="qlcapsule-hash") as pool:
        for idx, entry in zip(order, pool.map(one, (items[i] for i in order), chunksize=16)):
            results[idx] = entry
    return [r for r in results if r is not None]
