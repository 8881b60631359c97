"""Walking and hashing a capsule's files.

The walk refuses what cannot be sealed honestly: symlinks, devices, FIFOs,
sockets and names that are not valid UTF-8. Excluded directories are pruned
before they are entered (so a ``.venv`` full of symlinks is never looked at).
What the walk passes over (pruned directories, files not included) can be
handed to a ``skipped`` callback: :class:`Unlocked` uses it to name the files
outside the lock that still change what a capsule does when it is used
(bytecode, VCS metadata, executables), without a second walk.

Hashing streams each file in 1 MiB chunks on a thread pool: hashlib releases
the GIL while it hashes, so every core works and memory stays flat (one buffer
per worker) whatever the file sizes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from ..errors import InputError, IntegrityError, QlcapsuleError, UnsafePathError
from .globs import GlobSet

CHUNK = 1 << 20
ALWAYS_SKIPPED = frozenset({"capsule.lock", "capsule.sig"})
#: atomic_write's temp files for those (``.capsule.lock.<16 hex>.tmp``): one left by a killed
#: seal or sign is not part of the capsule and must not be sealed into the next lock
_OWN_TEMP = re.compile(r"\.capsule\.(?:lock|sig)\.[0-9a-f]{16}\.tmp")


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
    if stat_files:

        def emit(path: str, entry: os.DirEntry[str]) -> None:
            st = entry.stat(follow_symlinks=False)
            found.append(Found(path, st.st_size, mode_of(st.st_mode), st))

    else:

        def emit(path: str, entry: os.DirEntry[str]) -> None:
            found.append(Found(path, -1, ""))

    _walk_dir(os.fspath(root), "", globs, emit)
    found.sort(key=lambda f: path_key(f.path))
    return found


Skipped = Callable[[str, "os.DirEntry[str]", bool], None]

#: names that run or steer tools although they are never locked (see docs/format.md, "Outside the lock")
_VCS = frozenset({".git", ".hg", ".svn"})
_BYTECODE_SUFFIXES = (".pyc", ".pyo", ".pyd")
UNLOCKED_KINDS = {
    "vcs": ("VCS metadata", "git, hg and svn run the hooks and commands it configures"),
    "bytecode": ("compiled Python", "imported instead of the locked source"),
    "executable": ("executable", "runs without being checked"),
}


class Unlocked:
    """The ``skipped`` callback of a walk: what sits inside a capsule, outside its lock, and can change
    what the capsule does (VCS metadata, compiled Python, files with an executable bit).

    Only a count and the first path (in UTF-8 byte order) are kept per kind, so memory stays flat
    whatever the tree holds. Pruned directories are judged by their name alone: a ``.git`` or
    ``__pycache__`` directory is reported, never entered.
    """

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def __call__(self, path: str, entry: os.DirEntry[str], is_dir: bool) -> None:
        name = entry.name
        if name in _VCS:
            kind = "vcs"
        elif (is_dir and name == "__pycache__") or (not is_dir and name.endswith(_BYTECODE_SUFFIXES)):
            kind = "bytecode"
        elif not is_dir and entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mode & 0o111:
            kind = "executable"
        else:
            return
        shown = path + "/" if is_dir else path
        self.count[kind] = self.count.get(kind, 0) + 1
        first = self.first.get(kind)
        if first is None or path_key(shown) < path_key(first):
            self.first[kind] = shown

    def summary(self) -> dict[str, dict[str, object]]:
        """``{kind: {"count": n, "first": path}}`` in the order of :data:`UNLOCKED_KINDS`."""
        return {k: {"count": self.count[k], "first": self.first[k]} for k in UNLOCKED_KINDS if k in self.count}


def describe_unlocked(summary: dict[str, dict[str, Any]]) -> list[str]:
    """One line per kind of :meth:`Unlocked.summary`, for a warning or an error."""
    lines = []
    for kind, item in summary.items():
        n = int(item["count"])
        more = f" and {n - 1} more" if n > 1 else ""
        label, why = UNLOCKED_KINDS.get(kind, (kind, "not verified"))
        lines.append(f"not in the lock: {label} {display_path(str(item['first']))}{more} ({why})")
    return lines


class NotRegular(UnsafePathError):
    """A symlink, device, FIFO or socket met where a capsule holds regular files (bad input, exit 2).

    Where the lock records a regular file at ``path`` (capsule-relative) it is tampering instead:
    :func:`replaced` says so.
    """

    def __init__(self, message: str, path: str, what: str) -> None:
        super().__init__(message)
        self.path, self.what = path, what


def replaced(exc: NotRegular, shown: object, locked: Iterable[str]) -> QlcapsuleError:
    """``exc`` as it is reported where a lock is checked: a sealed file replaced by a symlink (or a
    device...) is tampering (:class:`IntegrityError`, exit 1, worded like every ``modified:``);
    anything else stays the bad input it was."""
    if exc.path in set(locked):
        return IntegrityError(f"{shown}: modified: {display_path(exc.path)} (now {exc.what}; sealed as a regular file)")
    return exc


def visit(root: str, globs: GlobSet, emit: Callable[[str, os.DirEntry[str]], None]) -> None:
    """Call ``emit(path, entry)`` for every included regular file under ``root``, in
    directory order, refusing what :func:`walk` refuses (the store's scan uses it)."""
    _walk_dir(root, "", globs, emit)


def _walk_dir(
    base: str,
    rel: str,
    globs: GlobSet,
    emit: Callable[[str, os.DirEntry[str]], None],
    skipped: Skipped | None = None,
) -> None:
    """Call ``emit(path, entry)`` for every included regular file, in directory order, and
    ``skipped(path, entry, is_dir)`` for every pruned directory and every file left out."""
    try:
        entries = list(os.scandir(os.path.join(base, rel) if rel else base))
    except PermissionError:
        raise InputError(f"{rel or '.'}: permission denied") from None
    # A directory's files before its subdirectories: large files next to a big
    # src/ tree reach the hashing workers first, so the cores end together.
    subdirs: list[str] = []
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
            raise UnsafePathError(
                f"{display_path(path)}: file name contains a backslash (not portable; rename or exclude it)"
            )
        if not rel and (name in ALWAYS_SKIPPED or (name[:9] == ".capsule." and _OWN_TEMP.fullmatch(name))):
            continue
        if entry.is_dir(follow_symlinks=False):  # d_type: no syscall
            if not globs.prune_dir(path):
                subdirs.append(path)
            elif skipped is not None:
                skipped(path, entry, True)
            continue
        if not globs.wants_in_walk(path):
            if skipped is not None:
                skipped(path, entry, False)
            continue
        if entry.is_symlink():
            raise NotRegular(
                f"{display_path(path)}: is a symlink; capsules hold regular files only (exclude it or replace it)",
                path,
                "a symlink",
            )
        if not entry.is_file(follow_symlinks=False):
            raise NotRegular(
                f"{display_path(path)}: is not a regular file (device, FIFO or socket)", path, "not a regular file"
            )
        emit(path, entry)
    for path in subdirs:
        _walk_dir(base, path, globs, emit, skipped)


def check_relative(path: str, where: str = "path") -> str:
    """Refuse a recorded path that could escape the capsule."""
    if not path or "\x00" in path or path.startswith("/") or "\\" in path:
        raise UnsafePathError(f"{where}: {path!r} is not a safe relative POSIX path")
    wrapped = f"/{path}/"  # an empty, "." or ".." segment, as substring tests (a lock has thousands of paths)
    if "//" in wrapped or "/./" in wrapped or "/../" in wrapped:
        raise UnsafePathError(f"{where}: {path!r} escapes the capsule or is not normalised")
    return path


def read_regular(
    path: Path, *, name: str, limit: int | None = None, too_big: type[QlcapsuleError] | None = None
) -> bytes | None:
    """The bytes of one of a capsule's own files (capsule.lock, capsule.sig); None when missing.

    They are not in the lock, so nothing else checks what they are: a symlink would let a
    capsule point them anywhere on the reader's disk (and into a version store or an
    export), a FIFO would hang the reader. Both are refused, as is a file over ``limit``.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path}: is a symlink; {name} must be a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{path}: is not a regular file (a directory, device, FIFO or socket)")
    error: type[QlcapsuleError] = too_big or InputError
    if limit is not None and st.st_size > limit:
        raise error(f"{path}: {st.st_size} bytes; a {name} is at most {limit // 1024} KiB")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafePathError(f"{path}: cannot open safely ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise UnsafePathError(f"{path}: is not a regular file (a directory, device, FIFO or socket)")
        raw = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(raw) > limit:
        raise error(f"{path}: larger than {limit // 1024} KiB; a {name} is at most that")
    return raw


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


class _Stopped(Exception):
    """A scan was abandoned while a worker was hashing (never leaves the module)."""


def _hash_fd(path: str, fd: int, st: os.stat_result, stop: Callable[[], bool] | None = None) -> FileEntry:
    """Hash an open descriptor (closing it); ``stop()`` is polled between chunks of a large file."""
    try:
        h = hashlib.sha256()
        data = os.read(fd, st.st_size + 1) if st.st_size <= CHUNK else b""
        if st.st_size <= CHUNK and len(data) <= st.st_size:
            # Sized read: asking for more would allocate (and zero) a buffer that large.
            h.update(data)
            size = len(data)
        else:
            size = _hash_mapped(fd, h, stop) if st.st_size >= MAP_MIN else 0
            os.lseek(fd, size, os.SEEK_SET)
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            with open(fd, "rb", buffering=0, closefd=False) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
                    size += n
                    if stop is not None and stop():
                        raise _Stopped
    finally:
        os.close(fd)
    return FileEntry(path, h.hexdigest(), size, mode_of(st.st_mode))


MAP_MIN = 8 * CHUNK  # files at least this large are hashed through mmap when a lease can be taken
MAP_WINDOW = 8 * CHUNK  # bytes mapped at a time: resident memory stays flat


def _hash_mapped(fd: int, h: Any, stop: Callable[[], bool] | None) -> int:
    """Hash what it safely can of ``fd`` through mmap; return the bytes hashed (0: not possible).

    Reading a mapping saves the kernel-to-user copy of ``read()`` (about 40 %
    of the CPU time spent on a large file), but touching a page past a
    concurrent truncation kills the process with SIGBUS. So a mapping is used
    only under a Linux read lease: while it is held, any process that opens
    the file for writing or truncates it waits until the lease is released.
    The lease is checked before every window; when a writer is waiting the
    lease is released and the caller reads the rest with ``read()`` (which
    sees the change and reports the file as modified). Without leases
    (not Linux, a file owned by someone else, a file open for writing
    elsewhere) nothing is mapped.
    """
    try:
        import fcntl  # noqa: PLC0415 -- platform: fcntl is POSIX only; without it nothing is mapped
        import mmap  # noqa: PLC0415 -- start-up: mmap loads only for a leased large file
        import signal  # noqa: PLC0415 -- start-up: signal (it builds enums) loads only for a leased large file

        # A lease break is signalled; SIGURG's default action is to ignore it
        # (SIGIO's, the default signal, would terminate the process).
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except (ImportError, AttributeError, OSError):
        return 0
    done = 0
    try:
        end = os.fstat(fd).st_size  # under the lease: it cannot shrink now
        while done < end and fcntl.fcntl(fd, fcntl.F_GETLEASE) == fcntl.F_RDLCK:
            length = min(MAP_WINDOW, end - done)
            with mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=done) as window:
                h.update(window)
            done += length
            if stop is not None and stop():
                raise _Stopped
    finally:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return done


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 1))


class _Hasher:
    """The hashing threads of one scan.

    ``workers`` counts every hashing thread, the caller included: more threads
    than cores only adds GIL traffic. The calling thread opens every file once
    and fstats it; small files it hashes itself (for them per-call overhead
    dominates, and a pool would only add GIL traffic), large ones go to worker
    threads through a bounded queue (hashlib releases the GIL, so every core
    hashes). When the queue is full, or once everything is submitted, the
    calling thread hashes large files too.
    """

    def __init__(self, root: str, workers: int | None, progress: Callable[[int], None] | None) -> None:
        import queue  # noqa: PLC0415 -- start-up: queue loads only when a scan hashes files

        self._queue_mod = queue
        self._threading = threading
        self.root = root
        self.n = workers or default_workers()
        self.progress = progress
        self.jobs: queue.Queue[tuple[int, str, int, os.stat_result] | None] = queue.Queue(maxsize=2 * self.n)
        self.results: dict[int, FileEntry] = {}
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.stopping = False

    def _stopped(self) -> bool:
        return self.stopping

    def _finish(self, key: int, path: str, fd: int, st: os.stat_result) -> None:
        self.results[key] = _hash_fd(path, fd, st, self._stopped)
        if self.progress is not None:
            self.progress(st.st_size)

    def _worker(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.errors or self.stopping:
                os.close(job[2])
                continue
            try:
                self._finish(*job)
            except _Stopped:
                continue
            except BaseException as exc:  # noqa: BLE001  (handed to the calling thread, re-raised there)
                self.errors.append(exc)

    def submit(self, key: int, path: str) -> None:
        fd, st = _open(self.root, path)
        if st.st_size <= CHUNK or self.n == 1:
            self._finish(key, path, fd, st)
            return
        if len(self.threads) < self.n - 1:  # the calling thread is the n-th hasher
            t = self._threading.Thread(target=self._worker, name="qlcapsule-hash", daemon=True)
            t.start()
            self.threads.append(t)
        try:
            self.jobs.put_nowait((key, path, fd, st))
        except self._queue_mod.Full:
            self._finish(key, path, fd, st)

    def drain(self) -> None:
        """Hash, on the calling thread, what no worker has taken yet."""
        while True:
            try:
                job = self.jobs.get_nowait()
            except self._queue_mod.Empty:
                return
            if job is not None:
                self._finish(*job)

    def close(self, ok: bool) -> None:
        """Stop the workers (after an error: at once, hashing nothing more) and close every descriptor."""
        self.stopping = not ok
        for _ in self.threads:
            self.jobs.put(None)
        for t in self.threads:
            t.join()
        while True:  # descriptors of jobs never taken (after an error)
            try:
                job = self.jobs.get_nowait()
            except self._queue_mod.Empty:
                break
            if job is not None:
                os.close(job[2])
        if ok and self.errors:
            raise self.errors[0]


def hash_files(
    root: Path,
    found: Iterable[Found],
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FileEntry]:
    """Hash ``found`` under ``root``; results keep the input order (see :class:`_Hasher`)."""
    items = list(found)
    hasher = _Hasher(str(root), workers, progress)
    ok = False
    try:
        for i, item in enumerate(items):
            hasher.submit(i, item.path)
        hasher.drain()
        ok = True
    finally:
        hasher.close(ok)
    return [hasher.results[i] for i in range(len(items))]


def scan(
    root: Path,
    globs: GlobSet,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    alongside: Callable[[], object] | None = None,
    skipped: Skipped | None = None,
) -> list[FileEntry]:
    """Walk and hash in one pass; entries sorted by UTF-8 bytes of the path.

    Each file is opened as soon as the walk finds it, so the workers start on
    the first large file while the walk goes on. ``alongside`` runs on the
    calling thread once everything is submitted, while the workers finish the
    large files: work that does not need the hashes (parsing the lock,
    validating capsule.yaml) costs no wall time when a worker is still busy.
    An exception from it stops the scan. ``skipped`` sees what the walk leaves out
    (see :func:`_walk_dir`; :class:`Unlocked` is the one in use).
    """
    hasher = _Hasher(os.fspath(root), workers, progress)
    paths: list[str] = []

    def emit(path: str, entry: os.DirEntry[str]) -> None:
        hasher.submit(len(paths), path)
        paths.append(path)

    ok = False
    try:
        _walk_dir(os.fspath(root), "", globs, emit, skipped)
        if alongside is not None:
            alongside()
        hasher.drain()
        ok = True
    finally:
        hasher.close(ok)
    results = hasher.results
    entries = [results[i] for i in range(len(paths))]
    entries.sort(key=lambda f: path_key(f.path))
    return entries
