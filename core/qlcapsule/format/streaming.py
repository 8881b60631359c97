"""The one integrity path of every export: the capsule's payload, checked against capsule.lock as it is read.

:func:`qlcapsule.steps.exporting.export_capsule` makes one :class:`PayloadReader`
per export and hands it to the exporter (``Exporter.export(capsule, out, fmt,
payload)``). Its constructor does every check that needs no hashing, before
a byte of the export is written: the lock is there and parses, its digest
matches its file list, its name and version are the capsule's, and the walk
finds exactly the locked files (messages as ``verify_integrity`` words them).

An exporter that carries the files reads them through :meth:`PayloadReader.read`:
each file's size and mode are checked on the descriptor it is read from, and
its bytes go to the export and to the file's SHA-256, computed on a helper
thread (hashlib releases the GIL, so hashing overlaps reading and writing):
every file is read once. :meth:`PayloadReader.verify` waits for the last
digest, hashes the locked files the exporter did not read (an exporter that
writes only generated files reads none), and raises :class:`IntegrityError`
naming the first file whose content differs from the lock. An exporter may
call it before it writes its archive's last bytes; the core calls it after
``export`` returns, before the export is committed (renamed into place, or its
last write passed on to a pipe), so a tampered capsule never yields an export.

capsule.lock and capsule.sig are read once, here; the lock is parsed from
exactly the bytes that go into the archive.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from ..errors import DefinitionError, InputError, IntegrityError, UnsafePathError
from .lock import Lock, Status, capsule_digest, parse_lock
from .names import DEFINITION_FILE, LOCK_FILE, SIG_FILE
from .tree import Found, NotRegular, display_path, hash_files, path_key, replaced, walk

if TYPE_CHECKING:
    from .capsule import Capsule

__all__ = ["CHUNK", "OrderedWorker", "PayloadFile", "PayloadReader"]

#: read size of large files; files up to this size are read with one call
CHUNK = 1 << 20
#: bytes handed to the hashing thread at once (small files are batched)
_BATCH = 1 << 20
#: bytes read but not hashed yet, at most (memory stays flat)
_AHEAD = 8 << 20
_O_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

_T = TypeVar("_T")


class PayloadFile(NamedTuple):
    """One file an export carries, sorted by the UTF-8 bytes of ``path``."""

    path: str  # capsule-relative POSIX path
    full: str  # absolute path on disk
    mode: int  # 0o644 or 0o755, from the lock
    size: int
    sha256: str | None  # None for capsule.lock and capsule.sig (checked here, served from ``data``)
    data: bytes | None = None


def _refuse(root: object, status: Status) -> IntegrityError:
    lines = status.lines()
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    err = IntegrityError(f"{root}: {lines[0]}{more}")
    err.status = status  # type: ignore[attr-defined]
    return err


def _sha256_path(full: str) -> str:
    h = hashlib.sha256()
    with open(full, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class OrderedWorker:
    """One helper thread running jobs in the order they were submitted (core only; not public API).

    The caller goes on (reading, writing) while the thread works; it blocks
    only when more than ``ahead`` bytes of submitted jobs are not done yet, so
    memory stays bounded. A job's exception is raised by the call that waits
    for it (a later :meth:`submit`, or :meth:`drain`).
    """

    def __init__(self, name: str, ahead: int = _AHEAD) -> None:
        self.name = name
        self.limit = ahead
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[Future[None], int]] = deque()
        self._ahead = 0

    def submit(self, fn: Callable[[_T], object], arg: _T, nbytes: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=self.name)
        self._pending.append((self._pool.submit(fn, arg), nbytes))  # type: ignore[arg-type]
        self._ahead += nbytes
        while self._ahead > self.limit:
            self._wait_one()

    def _wait_one(self) -> None:
        fut, n = self._pending.popleft()
        self._ahead -= n
        fut.result()

    def drain(self) -> None:
        """Wait for every job; raise the first failure."""
        while self._pending:
            self._wait_one()

    def close(self) -> None:
        """Drop the jobs not started and stop the thread (after the running job)."""
        for fut, _ in self._pending:
            fut.cancel()
        self._pending.clear()
        self._ahead = 0
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


#: one chunk for the hashing thread: the file, its running SHA-256, the bytes, whether they end the file
_Job = tuple[PayloadFile, "hashlib._Hash", bytes, bool]


class PayloadReader:
    """What an export of ``capsule`` carries, verified against capsule.lock as it is read.

    ``files``: every locked file plus capsule.lock and capsule.sig (when
    present), sorted by the UTF-8 bytes of their paths, each a
    :class:`PayloadFile` (``path``, ``mode`` 0o644/0o755 and ``size`` from
    the lock). Read them with :meth:`read` (chunks) or :meth:`read_bytes`, in
    any order, from one thread.
    """

    def __init__(self, capsule: Capsule) -> None:
        self.capsule = capsule
        self.root = capsule.root
        raw = capsule._lock_bytes()  # a symlinked or missing capsule.lock is refused
        self.lock: Lock = parse_lock(raw, str(capsule.shown / LOCK_FILE))
        status = self._structure(self.lock)
        if not status.clean:
            raise _refuse(capsule.shown, status)
        base = os.fspath(self.root) + os.sep
        modes = {"644": 0o644, "755": 0o755}  # the only modes a valid lock holds
        files = [PayloadFile(e.path, base + e.path, modes[e.mode], e.size, e.sha256) for e in self.lock.files]
        files.append(PayloadFile(LOCK_FILE, os.fspath(capsule.lock_path), 0o644, len(raw), None, raw))
        sig = capsule.sig_bytes()
        if sig is not None:
            files.append(PayloadFile(SIG_FILE, os.fspath(capsule.sig_path), 0o644, len(sig), None, sig))
        files.sort(key=lambda f: path_key(f.path))
        self.files = files
        self._hashed: set[str] = set()  # locked files whose every byte was hashed (by the helper thread)
        #: called with the size of every chunk :meth:`read` hands out (the export's progress), when set
        self.progress: Callable[[int], None] | None = None
        self._mismatched: list[str] = []
        self._batch: list[_Job] = []
        self._batch_bytes = 0
        self._worker = OrderedWorker("qlcapsule-verify")

    def _structure(self, lock: Lock) -> Status:
        """What ``verify_integrity`` checks before it hashes: the lock, the identity, the set of files.

        Sizes and modes are checked on the descriptor each file is read from
        (:meth:`read`), which saves an lstat per file here.
        """
        status = Status()
        if capsule_digest(lock.files) != lock.digest:
            status.problems.append("capsule.lock: digest does not match its file list (the lock was edited)")
        try:
            found = walk(self.root, self.capsule.globs(), stat_files=False)
        except NotRegular as exc:  # a sealed file replaced by a symlink is tampering (exit 1)
            raise replaced(exc, self.capsule.shown, (e.path for e in lock.files)) from None
        on_disk = {f.path for f in found}
        if DEFINITION_FILE not in on_disk:
            raise DefinitionError(
                f"{self.capsule.shown / DEFINITION_FILE}: excluded by the capsule's own globs; it must be included"
            )
        recorded = {e.path: e for e in lock.files}
        status.removed = [e.path for e in lock.files if e.path not in on_disk]
        status.added = [f.path for f in found if f.path not in recorded]
        if status.added and status.removed:  # a rename is an added file with a removed one's content
            gone = {(recorded[p].sha256, recorded[p].size): p for p in reversed(status.removed)}
            for p in status.added:
                full = os.path.join(self.root, p)
                key = (_sha256_path(full), os.path.getsize(full))
                if key in gone:
                    status.renamed.append((gone.pop(key), p))
        if lock.name != self.capsule.name or lock.version != self.capsule.version:
            status.identity.append(
                f"capsule.lock: sealed as {lock.name}@{lock.version} but capsule.yaml says {self.capsule.ref}"
            )
        return status

    # -- reading -------------------------------------------------------------
    def read(self, f: PayloadFile) -> Iterator[bytes]:
        """The bytes of ``f``: one chunk for files up to :data:`CHUNK`, else chunks of that size.

        Each chunk is handed to the file's SHA-256 before it is yielded. A file
        whose size or type changed since the walk raises :class:`IntegrityError`,
        as does an earlier file whose digest turned out wrong (so a tampered
        capsule stops the export early).
        """
        if self._mismatched:
            raise self._mismatch_error()
        if f.data is not None:
            if self.progress is not None:
                self.progress(len(f.data))
            yield f.data
            return
        h = hashlib.sha256()
        fd = self._open(f)
        try:
            if f.size < CHUNK:
                data = os.read(fd, f.size + 1)
                while len(data) < f.size + 1:  # short reads happen on some file systems
                    more = os.read(fd, f.size + 1 - len(data))
                    if not more:
                        break
                    data += more
                if len(data) != f.size:
                    raise self._changed(f, len(data))
                self._add((f, h, data, True))
                if self.progress is not None:
                    self.progress(len(data))
                yield data
                return
            got = 0
            while chunk := os.read(fd, CHUNK):
                got += len(chunk)
                if got > f.size:
                    raise self._changed(f, got)
                self._add((f, h, chunk, got == f.size))
                if self.progress is not None:
                    self.progress(len(chunk))
                yield chunk
            if got != f.size:
                raise self._changed(f, got)
        finally:
            os.close(fd)

    def read_bytes(self, f: PayloadFile) -> bytes:
        """All the bytes of ``f`` at once (for small files)."""
        return b"".join(self.read(f))

    def _open(self, f: PayloadFile) -> int:
        try:
            fd = os.open(f.full, _O_FLAGS)
        except FileNotFoundError:
            raise IntegrityError(f"{self.capsule.shown}: removed: {display_path(f.path)} (while exporting)") from None
        except PermissionError:
            raise InputError(f"{display_path(f.path)}: permission denied") from None
        except OSError as exc:  # ELOOP: replaced by a symlink after the walk
            raise UnsafePathError(f"{display_path(f.path)}: cannot open safely ({exc.strerror})") from None
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise UnsafePathError(f"{display_path(f.path)}: is not a regular file")
        if st.st_size != f.size:
            problem = Status(modified=[f.path])
        elif (0o755 if st.st_mode & 0o111 else 0o644) != f.mode:
            problem = Status(mode_changed=[f.path])
        if problem is not None:
            os.close(fd)
            raise _refuse(self.capsule.shown, problem)
        return fd

    def _changed(self, f: PayloadFile, got: int) -> IntegrityError:
        return IntegrityError(f"{f.full}: changed while exporting (expected {f.size} bytes, read {got})")

    # -- hashing (helper thread) ---------------------------------------------
    def _add(self, job: _Job) -> None:
        self._batch.append(job)
        self._batch_bytes += len(job[2])
        if self._batch_bytes >= _BATCH:
            self._submit()

    def _submit(self) -> None:
        if self._batch:
            batch, n = self._batch, self._batch_bytes
            self._batch, self._batch_bytes = [], 0
            self._worker.submit(self._hash, batch, n)

    def _hash(self, batch: list[_Job]) -> None:
        for f, h, data, last in batch:
            h.update(data)
            if last:
                if h.hexdigest() != f.sha256:
                    self._mismatched.append(f.path)
                self._hashed.add(f.path)

    # -- the verdict -----------------------------------------------------------
    def _mismatch_error(self) -> IntegrityError:
        return _refuse(self.capsule.shown, Status(modified=list(self._mismatched)))

    def verify(self) -> None:
        """Raise :class:`IntegrityError` unless every locked file matches the lock.

        Waits for the digests of what was read, then hashes the locked files
        that were not read in full (with the hashing ``verify_integrity`` uses,
        on every core). Cheap to call again.
        """
        self._submit()
        self._worker.drain()
        if not self._mismatched:
            rest = [e for e in self.lock.files if e.path not in self._hashed]
            if rest:
                found = [Found(e.path, e.size, e.mode) for e in rest]
                status = Status()
                for got, want in zip(hash_files(self.root, found), rest, strict=True):
                    if (got.sha256, got.size) != (want.sha256, want.size):
                        status.modified.append(want.path)
                    elif got.mode != want.mode:
                        status.mode_changed.append(want.path)
                    else:
                        self._hashed.add(want.path)
                if not status.clean:
                    raise _refuse(self.capsule.shown, status)
        if self._mismatched:
            raise self._mismatch_error()

    def close(self) -> None:
        """Stop the helper thread (after an error, without waiting for the rest)."""
        self._worker.close()
