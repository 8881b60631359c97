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
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from .errors import InputError, UnsafePathError
from .globs import GlobSet

CHUNK = 1 << 20
ALWAYS_SKIPPED = frozenset({"capsule.lock", "capsule.sig"})


class FileEntry(NamedTuple):
    """One file of a capsule as recorded in the lock (a tuple: cheap to make by the thousand)."""

    path: str
    sha256: str
    size: int
    mode: str  # "644" or "755"

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "mode": self.mode}


class Found(NamedTuple):
    """A file the walk found; ``stat`` is its lstat result when the walk took one."""

    path: str
    size: int
    mode: str
    stat: os.stat_result | None = None


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


def walk(root: Path, globs: GlobSet, *, stat_files: bool = True) -> list[Found]:
    """Every included regular file under ``root``, sorted by UTF-8 bytes of the path.

    With ``stat_files=False`` types come from the directory entries (no lstat per
    file) and ``size``/``mode`` are left unknown (-1, ""): :func:`hash_files`
    takes them from fstat on the descriptor it hashes.
    """
    found: list[Found] = []
    _walk_dir(os.fspath(root), "", globs, found, stat_files)
    found.sort(key=lambda f: path_key(f.path))
    return found


def _walk_dir(base: str, rel: str, globs: GlobSet, out: list[Found], stat_files: bool = True) -> None:
    try:
        entries = list(os.scandir(os.path.join(base, rel) if rel else base))
    except PermissionError:
        raise InputError(f"{rel or '.'}: permission denied") from None
    for entry in entries:
        name = entry.name
        try:
            if not name.isascii():  # ASCII is valid UTF-8: skip the encode for most names
                name.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(name).decode("utf-8", "backslashreplace")
            raise UnsafePathError(f"{rel + '/' if rel else ''}{shown}: file name is not valid UTF-8") from None
        path = f"{rel}/{name}" if rel else name
        if "\\" in name:
            raise UnsafePathError(f"{display_path(path)}: file name contains a backslash (not portable; rename or exclude it)")
        if not rel and name in ALWAYS_SKIPPED:
            continue
        if entry.is_dir(follow_symlinks=False):  # d_type: no syscall
            if not globs.prune_dir(path):
                _walk_dir(base, path, globs, out, stat_files)
            continue
        if not globs.wants_in_walk(path):
            continue
        if entry.is_symlink():
            raise UnsafePathError(f"{display_path(path)}: is a symlink; capsules hold regular files only (exclude it or replace it)")
        if not entry.is_file(follow_symlinks=False):
            raise UnsafePathError(f"{display_path(path)}: is not a regular file (device, FIFO or socket)")
        if stat_files:
            st = entry.stat(follow_symlinks=False)
            out.append(Found(path, st.st_size, mode_of(st.st_mode), st))
        else:
            out.append(Found(path, -1, ""))


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


def _open(root: str, path: str) -> tuple[int, os.stat_result]:
    """Open without following symlinks; fstat gives size and mode of exactly what is hashed."""
    full = os.path.join(root, path)
    try:
        fd = os.open(full, _O_FLAGS)
    except FileNotFoundError:
        raise InputError(f"{display_path(path)}: vanished while hashing") from None
    except PermissionError:
        raise InputError(f"{display_path(path)}: permission denied") from None
    except OSError as exc:  # ELOOP: replaced by a symlink after the walk
        raise UnsafePathError(f"{display_path(path)}: cannot open safely ({exc.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafePathError(f"{display_path(path)}: is not a regular file")
    return fd, st


def _hash_fd(path: str, fd: int, st: os.stat_result) -> FileEntry:
    """Hash an open descriptor (closing it)."""
    try:
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
    return FileEntry(path, h.hexdigest(), size, mode_of(st.st_mode))


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

    ``workers`` counts every hashing thread, the caller included: more threads
    than cores only adds GIL traffic. The calling thread opens every file once
    and fstats it; small files it
    hashes itself (for them per-call overhead dominates, and a pool would only
    add GIL traffic), large ones go to worker threads through a bounded queue
    (hashlib releases the GIL, so every core hashes). When the queue is full or
    the walk is done, the calling thread hashes large files too.
    """
    import queue
    import threading

    items = list(found)
    results: list[FileEntry | None] = [None] * len(items)
    base = str(root)
    n = workers or default_workers()
    jobs: queue.Queue[tuple[int, int, os.stat_result] | None] = queue.Queue(maxsize=2 * n)
    errors: list[BaseException] = []
    threads: list[threading.Thread] = []

    def finish(i: int, fd: int, st: os.stat_result) -> None:
        results[i] = _hash_fd(items[i].path, fd, st)
        if progress is not None:
            progress(st.st_size)

    def worker() -> None:
        while (job := jobs.get()) is not None:
            if errors:
                os.close(job[1])
                continue
            try:
                finish(*job)
            except BaseException as exc:  # noqa: BLE001  (handed to the calling thread, re-raised there)
                errors.append(exc)

    def drain() -> None:
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                finish(*job)

    try:
        for i, item in enumerate(items):
            fd, st = _open(base, item.path)
            if st.st_size <= CHUNK or n == 1:
                finish(i, fd, st)
                continue
            if len(threads) < n - 1:  # the calling thread is the n-th hasher
                t = threading.Thread(target=worker, name="qlcapsule-hash", daemon=True)
                t.start()
                threads.append(t)
            try:
                jobs.put_nowait((i, fd, st))
            except queue.Full:
                finish(i, fd, st)
        drain()
    finally:
        for _ in threads:
            jobs.put(None)
        for t in threads:
            t.join()
        while True:  # descriptors of jobs never taken (after an error)
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                os.close(job[1])
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]
