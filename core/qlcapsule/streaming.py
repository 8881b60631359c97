"""Verify a capsule while an export reads it: every file is read once.

:meth:`Capsule.verify_integrity` hashes every file, then an exporter reads
them all again: two passes over the capsule. A :class:`VerifiedPayload` makes
it one. Its constructor does every check that needs no hashing, before a byte
of the export is written: the lock is there and parses, its digest matches its
file list, its name and version are the capsule's, and the walk finds exactly
the locked files with the locked sizes and modes (messages as
``verify_integrity`` words them). An exporter then reads the files through
:meth:`VerifiedPayload.read`: each file's bytes go to the archive and to its
SHA-256, computed on a helper thread (hashlib releases the GIL, so hashing
overlaps reading and writing). :meth:`VerifiedPayload.finish` waits for the
last digest and raises :class:`IntegrityError` naming the first file whose
content differs from the lock. The exporter calls it before it writes the
archive's last bytes; :func:`qlcapsule.exporting.export_capsule` calls it again
before the export is committed (renamed into place, or reported as done on
stdout), so a tampered capsule never yields an export.

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
from contextvars import ContextVar
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from .errors import DefinitionError, InputError, IntegrityError, UnsafePathError
from .lock import Lock, Status, capsule_digest, parse_lock
from .names import DEFINITION_FILE, LOCK_FILE, SIG_FILE
from .tree import display_path, path_key, walk

if TYPE_CHECKING:
    from .capsule import Capsule

__all__ = ["CHUNK", "OrderedWorker", "PayloadFile", "VerifiedPayload", "active_payload", "payload_for"]

#: read size of large files; files up to this size are read with one call
CHUNK = 1 << 20
#: bytes handed to the hashing thread at once (small files are batched)
_BATCH = 1 << 20
#: bytes read but not hashed yet, at most (memory stays flat)
_AHEAD = 8 << 20
_O_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

_T = TypeVar("_T")
_active: ContextVar[VerifiedPayload | None] = ContextVar("qlcapsule_payload", default=None)


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
    """One helper thread running jobs in the order they were submitted.

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


class VerifiedPayload:
    """What an export of ``capsule`` carries, verified against capsule.lock as it is read."""

    def __init__(self, capsule: Capsule) -> None:
        self.capsule = capsule
        self.root = capsule.root
        raw = capsule._lock_bytes()  # a symlinked or missing capsule.lock is refused
        self.lock: Lock = parse_lock(raw, str(capsule.lock_path))
        status = self._structure(self.lock)
        if not status.clean:
            raise _refuse(self.root, status)
        base = os.fspath(self.root) + os.sep
        modes = {"644": 0o644, "755": 0o755}  # the only modes a valid lock holds
        files = [PayloadFile(e.path, base + e.path, modes[e.mode], e.size, e.sha256) for e in self.lock.files]
        files.append(PayloadFile(LOCK_FILE, os.fspath(capsule.lock_path), 0o644, len(raw), None, raw))
        sig = capsule.sig_bytes()
        if sig is not None:
            files.append(PayloadFile(SIG_FILE, os.fspath(capsule.sig_path), 0o644, len(sig), None, sig))
        files.sort(key=lambda f: path_key(f.path))
        self.files = files
        self._expected = len(self.lock.files)
        self._verified = 0
        self._mismatched: list[str] = []
        self._batch: list[tuple[PayloadFile, bytes, bool]] = []
        self._batch_bytes = 0
        self._worker = OrderedWorker("qlcapsule-verify")
        self._h: hashlib._Hash | None = None  # the file being hashed (on the helper thread only)
        self._finished = False
        #: True once an exporter read a file through :meth:`read`
        self.used = False

    def _structure(self, lock: Lock) -> Status:
        """What ``verify_integrity`` checks before it hashes: the lock, the identity, the set of files.

        Sizes and modes are checked on the descriptor each file is read from
        (:meth:`read`), which saves an lstat per file here.
        """
        status = Status()
        if capsule_digest(lock.files) != lock.digest:
            status.problems.append("capsule.lock: digest does not match its file list (the lock was edited)")
        found = walk(self.root, self.capsule.globs(), stat_files=False)
        on_disk = {f.path for f in found}
        if DEFINITION_FILE not in on_disk:
            raise DefinitionError(
                f"{self.root / DEFINITION_FILE}: excluded by the capsule's own globs; it must be included"
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
        self.used = True
        if self._mismatched:
            raise self._mismatch_error()
        if f.data is not None:
            yield f.data
            return
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
                self._add(f, data, True)
                yield data
                return
            got = 0
            while chunk := os.read(fd, CHUNK):
                got += len(chunk)
                if got > f.size:
                    raise self._changed(f, got)
                self._add(f, chunk, got == f.size)
                yield chunk
            if got != f.size:
                raise self._changed(f, got)
        finally:
            os.close(fd)

    def _open(self, f: PayloadFile) -> int:
        try:
            fd = os.open(f.full, _O_FLAGS)
        except FileNotFoundError:
            raise IntegrityError(f"{self.root}: removed: {display_path(f.path)} (while exporting)") from None
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
            raise _refuse(self.root, problem)
        return fd

    def _changed(self, f: PayloadFile, got: int) -> IntegrityError:
        return IntegrityError(f"{f.full}: changed while exporting (expected {f.size} bytes, read {got})")

    # -- hashing (helper thread) ---------------------------------------------
    def _add(self, f: PayloadFile, data: bytes, last: bool) -> None:
        self._batch.append((f, data, last))
        self._batch_bytes += len(data)
        if self._batch_bytes >= _BATCH:
            self._submit()

    def _submit(self) -> None:
        if self._batch:
            batch, n = self._batch, self._batch_bytes
            self._batch, self._batch_bytes = [], 0
            self._worker.submit(self._hash, batch, n)

    def _hash(self, batch: list[tuple[PayloadFile, bytes, bool]]) -> None:
        for f, data, last in batch:
            if self._h is None:
                self._h = hashlib.sha256(data)
            else:
                self._h.update(data)
            if last:
                if self._h.hexdigest() != f.sha256:
                    self._mismatched.append(f.path)
                self._h = None
                self._verified += 1

    # -- the verdict -----------------------------------------------------------
    def _mismatch_error(self) -> IntegrityError:
        return _refuse(self.root, Status(modified=list(self._mismatched)))

    def finish(self) -> None:
        """Wait for every digest; raise :class:`IntegrityError` unless every locked file was read and matched."""
        if not self._finished:
            try:
                self._submit()
                self._worker.drain()
            finally:
                self.close()
            self._finished = True
        if self._mismatched:
            raise self._mismatch_error()
        if self._verified != self._expected:
            raise IntegrityError(
                f"{self.root}: the export read {self._verified} of the {self._expected} locked files; not verified"
            )

    def close(self) -> None:
        """Stop the helper thread (after an error, without waiting for the rest)."""
        self._worker.close()

    @property
    def complete(self) -> bool:
        """True once :meth:`finish` found every locked file read and matching."""
        return self._finished and not self._mismatched and self._verified == self._expected


def active_payload() -> VerifiedPayload | None:
    """The payload :func:`qlcapsule.exporting.export_capsule` verified for the running export, if any."""
    return _active.get()


def payload_for(capsule: Capsule) -> VerifiedPayload:
    """The active payload of ``capsule``, else a new one (which checks the capsule now)."""
    current = _active.get()
    if current is not None and current.capsule is capsule:
        return current
    return VerifiedPayload(capsule)


def activate(payload: VerifiedPayload | None) -> object:
    """Make ``payload`` the active one; returns a token for :func:`deactivate`."""
    return _active.set(payload)


def deactivate(token: object) -> None:
    _active.reset(token)  # type: ignore[arg-type]
