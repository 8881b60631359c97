"""The Capsule: a directory with a definition, a lock and maybe a signature.

This is the object plugins receive. It reads; the only writes are ``seal``
(capsule.lock, atomically) and what the pipeline asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..errors import DefinitionError, InputError, IntegrityError, SignatureError
from .globs import GlobSet
from .lock import Lock, Status, atomic_write, build_lock, compare, parse_lock, read_lock, render_lock
from .names import (
    DEFINITION_FILE,
    LOCK_FILE,
    MAX_SIG_BYTES,
    SIG_FILE,
)
from .tree import (
    FileEntry,
    NotRegular,
    Skipped,
    Unlocked,
    check_relative,
    describe_unlocked,
    read_regular,
    replaced,
)
from .tree import scan as scan_tree

if TYPE_CHECKING:
    from .model import CapsuleDefinition

__all__ = ["Capsule", "SealResult"]


@dataclass
class SealResult:
    lock: Lock
    written: bool

    @property
    def digest(self) -> str:
        return self.lock.digest


class Capsule:
    """A capsule directory.

    ``definition`` is capsule.yaml validated by the one validator,
    :func:`qlcapsule.format.model.load_definition` (every error named with file, line and key).
    """

    def __init__(self, root: Path, definition: CapsuleDefinition | None = None, *, shown: Path | None = None) -> None:
        self.root = root
        #: the directory as the user named it (relative stays relative): what messages say
        self.shown = root if shown is None else shown
        self._definition = definition

    @classmethod
    def load(cls, root: str | Path = ".", *, strict: bool = True) -> Capsule:
        """Open a capsule; ``strict=False`` reads capsule.yaml on first use instead of now.

        Either way it is read and validated once, by the model: ``seal`` uses the deferral
        to do it alongside the hashing.
        """
        path = Path(root)
        if not path.exists():
            raise InputError(f"{path}: no such directory", file=str(path))
        if not path.is_dir():
            raise InputError(f"{path}: not a directory", file=str(path))
        definition_path = path / DEFINITION_FILE
        if not definition_path.is_file():
            raise DefinitionError(
                f"{definition_path}: no capsule.yaml here (run 'qlcapsule init {path}')", file=str(definition_path)
            )
        if not strict:
            return cls(path.resolve(), shown=path)
        from .model import load_definition  # noqa: PLC0415 -- start-up: the capsule.yaml model (pydantic, yaml) loads only when capsule.yaml is validated (strict=False skips it)

        return cls(path.resolve(), load_definition(definition_path), shown=path)

    def check_definition(self) -> None:
        """Validate capsule.yaml (raises DefinitionError listing every error with file, line and key)."""
        self.definition  # noqa: B018

    def validate_settings(self) -> tuple[dict[str, bool | str], str, float]:
        """``validate.rules``, ``validate.fail_on`` and ``validate.min_score``."""
        cfg = self.definition.validate_config
        return dict(cfg.rules), cfg.fail_on, cfg.min_score

    @property
    def definition(self) -> CapsuleDefinition:
        if self._definition is None:
            from .model import load_definition  # noqa: PLC0415 -- start-up: the capsule.yaml model (pydantic, yaml) loads only when capsule.yaml is validated (strict=False skips it)

            self._definition = load_definition(self.root / DEFINITION_FILE, shown=self.shown / DEFINITION_FILE)
        return self._definition

    def setting(self, key: str, default: Any = None) -> Any:
        """A top-level value of capsule.yaml as written (raw YAML data, no defaults applied)."""
        return self.definition.model_dump(by_alias=True, exclude_unset=True).get(key, default)

    # -- names ------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def version(self) -> str:
        return self.definition.version

    @property
    def ref(self) -> str:
        """``name@version``: the in-toto subject name."""
        return f"{self.name}@{self.version}"

    def expand(self, template: str) -> str:
        """``template`` with ``{name}`` and ``{version}`` replaced: the placeholders of option values."""
        return template.replace("{name}", self.name).replace("{version}", self.version)

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def sig_path(self) -> Path:
        return self.root / SIG_FILE

    def globs(self) -> GlobSet:
        return GlobSet(self.definition.include, self.definition.all_excludes())

    # -- reading ----------------------------------------------------------
    def scan(
        self,
        *,
        progress: Callable[[int], None] | None = None,
        alongside: Callable[[], object] | None = None,
        skipped: Skipped | None = None,
    ) -> list[FileEntry]:
        """Walk and hash the included files as they are on disk now (see :func:`qlcapsule.format.tree.scan`)."""
        found = scan_tree(self.root, self.globs(), progress=progress, alongside=alongside, skipped=skipped)
        if not any(f.path == DEFINITION_FILE for f in found):
            raise DefinitionError(
                f"{self.shown / DEFINITION_FILE}: excluded by the capsule's own globs; it must be included"
            )
        return found

    def read_lock(self) -> Lock | None:
        return read_lock(self.lock_path)

    def _lock_bytes(self) -> bytes:
        """capsule.lock as written; IntegrityError when the capsule was never sealed."""
        raw = read_regular(self.lock_path, name="capsule.lock")
        if raw is None:
            raise IntegrityError(f"{self.shown / LOCK_FILE}: not sealed (run 'qlcapsule seal {self.shown}')")
        return raw

    def sig_bytes(self) -> bytes | None:
        """capsule.sig as written, None when unsigned.

        A symlink, a FIFO or a directory is refused (UnsafePathError), a file over
        1 MiB too (SignatureError): capsule.sig is not in the lock, so this is its check.
        """
        return read_regular(self.sig_path, name="capsule.sig", limit=MAX_SIG_BYTES, too_big=SignatureError)

    def require_lock(self) -> Lock:
        return parse_lock(self._lock_bytes(), str(self.shown / LOCK_FILE))

    @property
    def digest(self) -> str:
        """The capsule digest recorded in the lock."""
        return self.require_lock().digest

    def files(self) -> list[str]:
        """Paths recorded in the lock, in lock order."""
        return [e.path for e in self.require_lock().files]

    def open(self, path: str) -> Path:
        """Absolute path of a capsule-relative path, refusing escapes."""
        check_relative(path)
        return self.root / path

    def payload(self) -> Iterator[tuple[str, Path, str]]:
        """What an export carries: every locked file, then capsule.lock and capsule.sig.

        Yields ``(path, absolute path, mode)`` sorted by UTF-8 path bytes.
        """
        lock = self.require_lock()
        items = [(e.path, self.root / e.path, e.mode) for e in lock.files]
        items.append((LOCK_FILE, self.lock_path, "644"))
        if self.sig_bytes() is not None:  # a symlinked capsule.sig is refused, not followed
            items.append((SIG_FILE, self.sig_path, "644"))
        items.sort(key=lambda t: t[0].encode("utf-8"))
        yield from items

    # -- sealing and checking ---------------------------------------------
    def seal(self, *, progress: Callable[[int], None] | None = None) -> SealResult:
        """Write capsule.lock for the files on disk; an unchanged capsule is left untouched.

        capsule.yaml is validated by the model, alongside the hashing when ``load`` deferred it.
        """
        entries = self.scan(progress=progress, alongside=self.check_definition)
        lock = build_lock(self.name, self.version, entries)
        written = atomic_write(self.lock_path, render_lock(lock))
        return SealResult(lock, written)

    def status(self, *, progress: Callable[[int], None] | None = None) -> Status:
        return self._status(progress)[0]

    def _status(self, progress: Callable[[int], None] | None, skipped: Skipped | None = None) -> tuple[Status, Lock]:
        self.check_definition()  # a bad capsule.yaml is bad input (exit 2), said before "not sealed"
        raw = self._lock_bytes()
        try:
            entries = self.scan(progress=progress, skipped=skipped)
        except NotRegular as exc:  # a sealed file replaced by a symlink is tampering (exit 1)
            lock = parse_lock(raw, str(self.shown / LOCK_FILE))
            raise replaced(exc, self.shown, (e.path for e in lock.files)) from None
        # Fast path: when the lock is byte for byte what sealing the disk now
        # would write, nothing changed (files, modes, the digest, name and
        # version are all in those bytes) and the lock need not be parsed.
        fresh = build_lock(self.name, self.version, entries)
        if render_lock(fresh) == raw:
            return Status(), fresh
        lock = parse_lock(raw, str(self.shown / LOCK_FILE))
        status = compare(lock, entries)
        if lock.name != self.name or lock.version != self.version:
            status.identity.append(
                f"capsule.lock: sealed as {lock.name}@{lock.version} but capsule.yaml says {self.ref}"
            )
        return status, lock

    def verify_integrity(
        self,
        *,
        progress: Callable[[int], None] | None = None,
        unlocked: Unlocked | None = None,
        strict: bool = False,
    ) -> Lock:
        """Raise IntegrityError naming what changed; return the lock when the disk matches it.

        ``unlocked`` collects, in the same walk, what sits outside the lock and can change
        what the capsule does (see :class:`qlcapsule.format.tree.Unlocked`); with ``strict`` any of
        it is an IntegrityError too: the lock does not vouch for it.
        """
        if strict and unlocked is None:
            unlocked = Unlocked()
        status, lock = self._status(progress, unlocked)
        if not status.clean:
            lines = status.lines()
            more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
            err = IntegrityError(f"{self.shown}: {lines[0]}{more}")
            err.status = status  # type: ignore[attr-defined]
            raise err
        if strict and unlocked is not None and unlocked.count:
            lines = describe_unlocked(unlocked.summary())
            more = f" (+{len(lines) - 1} more kind{'s' if len(lines) > 2 else ''})" if len(lines) > 1 else ""
            raise IntegrityError(f"{self.shown}: {lines[0]}{more}; --strict refuses it")
        return lock
