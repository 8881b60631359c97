"""Deliver to a local directory, atomically.

Each artifact is copied to a temporary file next to its destination (hashing the
bytes as they are written), flushed to disk, size and SHA-256 compared, and then moved into place in one step (``os.link`` when the
destination must not be overwritten, ``os.replace`` otherwise), so a reader never
sees a half-written file and a crash leaves at most a ``.qlcapsule-tmp-*`` file,
which a later delivery to the same directory removes once it is an hour old and no
live delivery holds its lock (:func:`_remove_stale_temp_files`).

Options (capsule.yaml ``targets.<name>.options``):

- ``path`` (default ``dist``): the directory; relative paths are resolved against
  the current working directory (like ``python -m build --outdir``); ``{name}``
  and ``{version}`` are replaced by the capsule's.
- ``overwrite`` (default ``false``): replace an existing file with other content.
  An existing file with the same SHA-256 is accepted as already delivered.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from qlcapsule import (
    Artifact,
    Capsule,
    ConflictError,
    Deliverer,
    Expandable,
    InputError,
    IntegrityError,
    Options,
    Receipt,
    Register,
    get_logger,
    hookimpl,
    sha256_file,
)

log = get_logger("qlcapsule.deliverers.local")

TEMP_PREFIX = ".qlcapsule-tmp-"
#: a temp file older than this (and not locked by a live delivery) was left by a killed one
STALE_AFTER = 3600.0


class LocalOptions(Options):
    path: Expandable = Field(default="dist", description="destination directory; {name} and {version} are expanded")
    overwrite: bool = Field(default=False, description="replace an existing file that has different content")


class LocalDeliverer(Deliverer):
    name = "local"
    description = "copy artifacts into a local directory (atomic rename)"
    Options = LocalOptions

    options: LocalOptions

    def _dir(self, capsule: Capsule) -> Path:
        raw = Path(capsule.expand(self.options.path)).expanduser()
        try:
            return raw.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (OSError ELOOP from 3.13)
            reason = "symlink loop" if isinstance(exc, RuntimeError) else exc.strerror or str(exc)
            raise InputError(f"local target: {raw}: {reason}") from None

    def describe(self, capsule: Capsule, artifact: Artifact) -> str:
        return str(Path(capsule.expand(self.options.path)) / artifact.name)

    def check(self, capsule: Capsule) -> None:
        dest = self._dir(capsule)
        probe = dest
        try:
            while True:
                try:
                    probe.stat()
                    break
                except (FileNotFoundError, NotADirectoryError):
                    probe = probe.parent
        except OSError as exc:  # a name too long; a symlink loop (resolve() no longer raises for it from 3.13)
            raise InputError(f"local target: {dest}: {exc.strerror or exc}") from None
        if not probe.is_dir():
            raise InputError(f"local target: {probe} is not a directory")
        if not os.access(probe, os.W_OK):
            raise InputError(f"local target: {probe} is not writable")
        inside = dest == capsule.root or capsule.root in dest.parents
        if inside and not capsule.globs().prune_dir(dest.relative_to(capsule.root).as_posix()):
            log.warning(
                "local target %s is inside the capsule %s; exclude it in capsule.yaml or it will be sealed",
                dest,
                capsule.root,
            )

    def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
        dest = self._dir(capsule)
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # the destination is the user's input, not a remote side that failed
            raise InputError(f"local target: {dest}: cannot create the directory: {exc.strerror or exc}") from None
        _remove_stale_temp_files(dest)
        return [self._one(dest, a, target) for a in artifacts]

    def _one(self, dest: Path, art: Artifact, target: str) -> Receipt:
        final = dest / art.name
        extra: dict[str, object] = {}
        if final.exists() and sha256_file(final) == art.sha256:
            extra["existing"] = True
            return self._receipt(final, art, target, extra)
        if final.exists() and not self.options.overwrite:
            raise ConflictError(f"{final}: exists with different content; set 'overwrite: true' to replace it")
        try:
            fd, tmpname = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=dest)
        except OSError as exc:
            raise InputError(f"local target: {dest}: cannot create a file: {exc.strerror or exc}") from None
        tmp = Path(tmpname)
        try:
            _lock(fd)  # held while writing: a later delivery never removes a temp file still being written
            h = hashlib.sha256()
            try:
                with os.fdopen(fd, "wb") as out, art.path.open("rb") as src:
                    # hash the bytes as they are written (one pass): a file changed since it was
                    # hashed for the receipt, or a short read, is caught before publishing
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as exc:  # disk full, I/O error, unreadable artifact: local, not remote
                raise InputError(f"local target: {exc.filename or final}: {exc.strerror or exc}") from None
            os.chmod(tmp, 0o644)
            got = h.hexdigest()
            if got != art.sha256 or tmp.stat().st_size != art.size:
                raise IntegrityError(f"{final}: copy has sha256 {got[:12]}..., expected {art.sha256[:12]}...")
            if self.options.overwrite:
                os.replace(tmp, final)
            else:
                try:
                    os.link(tmp, final)  # atomic create-if-absent
                except FileExistsError:
                    raise ConflictError(f"{final}: appeared while delivering; not overwriting") from None
                except OSError:  # no hard links here (some network/FUSE file systems)
                    if final.exists():
                        raise ConflictError(f"{final}: appeared while delivering; not overwriting") from None
                    os.replace(tmp, final)
                if tmp.exists():
                    tmp.unlink()
        finally:
            if tmp.exists():
                tmp.unlink()
        _fsync_dir(dest)
        return self._receipt(final, art, target, extra)

    def _receipt(self, final: Path, art: Artifact, target: str, extra: dict[str, object]) -> Receipt:
        return Receipt(
            provider=self.name,
            target=target,
            location=str(final),
            sha256=art.sha256,
            size=final.stat().st_size,
            url=final.as_uri(),
            extra=extra,
        )


def _lock(fd: int) -> None:
    try:
        import fcntl  # noqa: PLC0415 -- platform: fcntl is POSIX only; the age alone protects temp files without it
    except ImportError:  # Windows: only the age protects a temp file being written
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without locks: the age still protects it
        log.debug("cannot lock the temp file; stale temp files are then judged by age only")


def _remove_stale_temp_files(dest: Path) -> None:
    """Remove ``.qlcapsule-tmp-*`` files left in ``dest`` by a delivery that was killed (SIGKILL, power loss).

    Only a regular file of ours (same user) that is older than :data:`STALE_AFTER`
    and not locked by a live process is removed: a running delivery holds a lock on
    its temp file while writing it, and its mtime stays fresh. Best effort: anything
    doubtful is left alone.
    """
    try:
        import fcntl  # noqa: PLC0415 -- platform: fcntl is POSIX only; the age alone protects temp files without it
    except ImportError:  # pragma: no cover - Windows: no way to tell a live writer, leave them
        return
    now = time.time()
    try:
        candidates = [p for p in dest.iterdir() if p.name.startswith(TEMP_PREFIX)]
    except OSError:
        return
    for path in candidates:
        try:
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < STALE_AFTER:
                continue
            if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
                continue
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                continue  # replaced since we looked
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live delivery is writing it (or locks are not supported here)
            now_st = path.lstat()
            if (now_st.st_dev, now_st.st_ino) == (st.st_dev, st.st_ino):
                path.unlink()
                log.info(
                    "removed the stale temp file %s (%d s old, left by a killed delivery)", path, now - st.st_mtime
                )
        except OSError:
            continue
        finally:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("fsync of directory %s not supported", path)
    finally:
        os.close(fd)


@hookimpl
def qlcapsule_register_deliverers(register: Register) -> None:
    register(LocalDeliverer)
