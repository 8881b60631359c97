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
        if not globs.wants_in_walk(path):
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


def sha256_file(path: Path | str) -> str:
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


_O_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _hash_one(root: Path, item: Found) -> FileEntry:
    """Hash one file through a descriptor opened without following symlinks.

    fstat on the same descriptor gives the size and mode of exactly what was
    hashed, and a file swapped for a symlink after the walk is refused.
    """
    full = os.path.join(root, item.path)
    try:
        fd = os.open(full, _O_FLAGS)
    except FileNotFoundError:
        raise InputError(f"{display_path(item.path)}: vanished while hashing") from None
    except PermissionError:
        raise InputError(f"{display_path(item.path)}: permission denied") from None
    except OSError as exc:  # ELOOP: replaced by a symlink after the walk
        raise UnsafePathError(f"{display_path(item.path)}: cannot open safely ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{display_path(item.path)}: is not a regular file")
        h = hashlib.sha256()
        data = os.read(fd, st.st_size + 1) if st.st_size <= CHUNK else b""
        if st.st_size <= CHUNK and len(data) <= st.st_size:
            # Sized read: asking for more would allocate (and zero) a buffer that large.
            h.update(data)
            size = len(data)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            size = 0
            with open(fd, "rb", buffering=0, closefd=False) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
                    size += n
    finally:
        os.close(fd)
    return FileEntry(item.path, h.hexdigest(), size, mode_of(st.st_mode))


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 1))


def hash_files(
    root: Path,
    found: Iterable[Found],
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FileEntry]:
    """Hash ``found`` under ``root``; results keep the input order.

    Large files go to a thread pool (hashlib releases the GIL, so every core
    hashes); small files are hashed on the calling thread meanwhile, because
    for them the per-call overhead dominates and a pool only adds GIL traffic.
    """
    items = list(found)
    results: list[FileEntry | None] = [None] * len(items)
    big = sorted((i for i, f in enumerate(items) if f.size > CHUNK), key=lambda i: -items[i].size)
    n = workers or default_workers()
    taken = iter(big)  # shared work list: next() on a list iterator is atomic under the GIL

    def do(i: int) -> None:
        results[i] = _hash_one(root, items[i])
        if progress is not None:
            progress(items[i].size)

    def drain() -> None:
        for i in taken:
            do(i)

    if big and n > 1:
        from concurrent.futures import ThreadPoolExecutor  # only when there is parallel work

        
        with ThreadPoolExecutor(max_workers=min(n, len(big)), thread_name_prefix="qlcapsule-hash") as pool:
            futures = [pool.submit(drain) for _ in range(min(n, len(big)))]
            for i, f in enumerate(items):
                if f.size <= CHUNK:
                    do(i)
            drain()  # then help with what is left of the large files
            for fut in futures:
                fut.result()
    else:
        for i in range(len(items)):
            do(i)
    return [r for r in results if r is not None]
