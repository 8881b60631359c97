"""Deliver to a local directory, atomically.

Each artifact is copied to a temporary file next to its destination (hashing the
bytes as they are written), flushed to disk, size and SHA-256 compared, and then moved into place in one step (``os.link`` when the
destination must not be overwritten, ``os.replace`` otherwise), so a reader never
sees a half-written file and a crash leaves at most a ``.qlcapsule-tmp-*`` file.

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
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from qlcapsule import (
    Artifact,
    Capsule,
    ConflictError,
    Deliverer,
    InputError,
    IntegrityError,
    Options,
    Receipt,
    get_logger,
    hookimpl,
    sha256_file,
)

log = get_logger("qlcapsule.deliverers.local")


class LocalOptions(Options):
    path: str = Field(default="dist", description="destination directory; {name} and {version} are expanded")
    overwrite: bool = Field(default=False, description="replace an existing file that has different content")


class LocalDeliverer(Deliverer):
    name = "local"
    description = "copy artifacts into a local directory (atomic rename)"
    Options = LocalOptions

    options: LocalOptions

    def _dir(self, capsule: Capsule) -> Path:
        return Path(capsule.expand(self.options.path)).expanduser().resolve()

    def describe(self, capsule: Capsule, artifact: Artifact) -> str:
        return str(Path(capsule.expand(self.options.path)) / artifact.name)

    def check(self, capsule: Capsule) -> None:
        dest = self._dir(capsule)
        probe = dest
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise InputError(f"local target: {probe} is not a directory")
        if not os.access(probe, os.W_OK):
            raise InputError(f"local target: {probe} is not writable")
        if dest == capsule.root or capsule.root in dest.parents:
            log.warning(
                "local target %s is inside the capsule %s; exclude it in capsule.yaml or it will be sealed",
                dest,
                capsule.root,
            )

    def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
        dest = self._dir(capsule)
        dest.mkdir(parents=True, exist_ok=True)
        return [self._one(dest, a, target) for a in artifacts]

    def _one(self, dest: Path, art: Artifact, target: str) -> Receipt:
        final = dest / art.name
        extra: dict[str, object] = {}
        if final.exists() and sha256_file(final) == art.sha256:
            extra["existing"] = True
            return self._receipt(final, art, target, extra)
        if final.exists() and not self.options.overwrite:
            raise ConflictError(f"{final}: exists with different content; set 'overwrite: true' to replace it")
        fd, tmpname = tempfile.mkstemp(prefix=".qlcapsule-tmp-", dir=dest)
        tmp = Path(tmpname)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, art.path.open("rb") as src:
                # hash the bytes as they are written (one pass): a file changed since it was
                # hashed for the receipt, or a short read, is caught before publishing
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
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
def qlcapsule_register_deliverers(register):  # type: ignore[no-untyped-def]
    register(LocalDeliverer)
