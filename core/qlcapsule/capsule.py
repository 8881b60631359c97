"""The Capsule: a directory with a definition, a lock and maybe a signature.

This is the object plugins receive. It reads; the only writes are ``seal``
(capsule.lock, atomically) and what the pipeline asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .errors import DefinitionError, InputError, IntegrityError
from .globs import GlobSet, check_glob
from .lock import Lock, Status, atomic_write, build_lock, compare, parse_lock, read_lock, render_lock
from .names import (
    DEFAULT_EXCLUDE,
    DEFINITION_FILE,
    DNS_LABEL,
    LOCK_FILE,
    MAX_SIG_BYTES,
    SEMVER,
    SIG_FILE,
    TOP_LEVEL_KEYS,
)
from .tree import FileEntry, Skipped, Unlocked, check_relative, describe_unlocked, read_regular
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


def _light_read(path: Path) -> dict[str, Any] | None:
    """The raw definition when it passes the checks verify needs, else None.

    verify and status must start fast, and pydantic alone costs more than the
    rest of an 8-file verify. capsule.yaml is covered by the lock digest, so the
    full validation done at seal time still stands whenever the file verifies;
    anything unusual (a duplicate key included) falls back to the full loader,
    which names the error. The result depends on the bytes alone, so it is
    cached by content (caches.py): most runs never import PyYAML.
    """
    from . import caches

    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return caches.cached_definition(raw, _light_parse)  # type: ignore[no-any-return]


def _light_parse(raw: bytes) -> dict[str, Any] | None:
    import yaml

    from .names import MAX_YAML_BYTES

    if len(raw) > MAX_YAML_BYTES:
        return None  # the full loader refuses it in one line

    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(raw.decode("utf-8"))
        try:
            node = loader.get_single_node()
            if node is None or _needs_full_loader(node):
                return None
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except (ValueError, yaml.YAMLError, RecursionError):  # ValueError: not UTF-8, 2024-02-30, 5,000 digits
        return None  # the full loader names the problem
    if not isinstance(data, dict) or not set(data) <= TOP_LEVEL_KEYS:
        return None
    name, version = data.get("name"), data.get("version")
    if not (isinstance(name, str) and DNS_LABEL.match(name) and isinstance(version, str) and SEMVER.match(version)):
        return None
    for key in ("include", "exclude"):
        value = data.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return None
        try:
            for pattern in value:
                check_glob(pattern)
        except ValueError:
            return None
    if not isinstance(data.get("policy", {}), dict):
        return None
    return data


def _needs_full_loader(node: Any) -> bool:
    """Whether the full loader must read this document: a mapping under ``node`` repeats a key
    (compared as written, like yamlsrc), or an alias is used (a node reached twice; the full
    loader limits how far aliases may expand).
    """
    import yaml

    stack = [node]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return True
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys = [k.value if isinstance(k, yaml.ScalarNode) else id(k) for k, _ in node.value]
            if len(set(keys)) != len(keys):
                return True
            stack.extend(v for _, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return False


_PLAIN_KEYS = frozenset(
    {"name", "version", "description", "authors", "license", "labels", "include", "exclude", "generator"}
)
_GENERATOR_KEYS = frozenset({"template", "version", "commit", "source", "answers"})


def _is_str_list(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


def plainly_valid(raw: dict[str, Any]) -> bool:
    """Whether a light-read definition is certainly valid without asking pydantic.

    Covers the definitions most capsules have (the keys ``init`` and ``new``
    write: name, version, description, authors, license, labels, include,
    exclude, generator) with checks stricter than the model's; True means
    the model accepts it (a property test holds the two together). Anything
    else, or any doubt, is False, and the caller validates with the model,
    which also words the error. This keeps pydantic (~0.15 s of imports and
    model building) off ``seal``.
    """
    if not set(raw) <= _PLAIN_KEYS:
        return False
    # name, version, include and exclude were checked by _light_read (YAML strings are exact str).
    if "description" in raw and type(raw["description"]) is not str:
        return False
    if "license" in raw and not (raw["license"] is None or type(raw["license"]) is str):
        return False
    if "authors" in raw and not _is_str_list(raw["authors"]):
        return False
    labels = raw.get("labels", {})
    if type(labels) is not dict or not all(type(k) is str and type(v) is str for k, v in labels.items()):
        return False
    if "generator" in raw:
        gen = raw["generator"]
        if gen is None:
            return True
        if type(gen) is not dict or not set(gen) <= _GENERATOR_KEYS or type(gen.get("template")) is not str:
            return False
        if not all(gen.get(k) is None or type(gen[k]) is str for k in ("version", "commit", "source")):
            return False
        answers = gen.get("answers", {})
        if type(answers) is not dict or not all(type(k) is str for k in answers):
            return False
    return True


class Capsule:
    """A capsule directory.

    ``definition`` (the validated pydantic model) is built on first use;
    ``name``, ``version``, ``globs()`` and ``setting()`` work from a light read
    so integrity checks never import pydantic.
    """

    def __init__(
        self, root: Path, definition: CapsuleDefinition | None = None, raw: dict[str, Any] | None = None
    ) -> None:
        self.root = root
        self._definition = definition
        self._raw = raw

    @classmethod
    def load(cls, root: str | Path = ".", *, strict: bool = True) -> Capsule:
        """Open a capsule; ``strict=False`` defers full validation of capsule.yaml to first use."""
        path = Path(root)
        if not path.exists():
            raise InputError(f"{path}: no such directory")
        if not path.is_dir():
            raise InputError(f"{path}: not a directory")
        definition_path = path / DEFINITION_FILE
        if not definition_path.is_file():
            raise DefinitionError(f"{definition_path}: no capsule.yaml here (run 'qlcapsule init {path}')")
        if not strict:
            raw = _light_read(definition_path)
            if raw is not None:
                return cls(path.resolve(), raw=raw)
        from .model import load_definition

        return cls(path.resolve(), load_definition(definition_path))

    def check_definition(self) -> None:
        """Validate capsule.yaml fully (raises DefinitionError naming file, line and key).

        :func:`plainly_valid` vouches for the common definitions without
        pydantic; anything else goes through the model.
        """
        if self._definition is None and self._raw is not None and plainly_valid(self._raw):
            return
        self.definition  # noqa: B018

    def validate_settings(self) -> tuple[dict[str, bool], str, float]:
        """``validate.rules``, ``validate.fail_on`` and ``validate.min_score`` (after :meth:`check_definition`)."""
        if self._definition is None and self._raw is not None and "validate" not in self._raw:
            return {}, "error", 0.0  # the model's defaults (a test holds them equal)
        cfg = self.definition.validate_config
        return dict(cfg.rules), cfg.fail_on, cfg.min_score

    @property
    def definition(self) -> CapsuleDefinition:
        if self._definition is None:
            from .model import load_definition

            self._definition = load_definition(self.root / DEFINITION_FILE)
        return self._definition

    def setting(self, key: str, default: Any = None) -> Any:
        """A top-level value of capsule.yaml as written (raw YAML data, no defaults applied)."""
        if self._raw is not None:
            return self._raw.get(key, default)
        return self.definition.model_dump(by_alias=True, exclude_unset=True).get(key, default)

    # -- names ------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._raw["name"] if self._raw is not None else self.definition.name

    @property
    def version(self) -> str:
        return self._raw["version"] if self._raw is not None else self.definition.version

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
        if self._raw is not None:
            return GlobSet(self._raw.get("include", ["**"]), DEFAULT_EXCLUDE + self._raw.get("exclude", []))
        return GlobSet(self.definition.include, self.definition.all_excludes())

    # -- reading ----------------------------------------------------------
    def scan(
        self,
        *,
        progress: Callable[[int], None] | None = None,
        alongside: Callable[[], object] | None = None,
        skipped: Skipped | None = None,
    ) -> list[FileEntry]:
        """Walk and hash the included files as they are on disk now (see :func:`qlcapsule.tree.scan`)."""
        found = scan_tree(self.root, self.globs(), progress=progress, alongside=alongside, skipped=skipped)
        if not any(f.path == DEFINITION_FILE for f in found):
            raise DefinitionError(
                f"{self.root / DEFINITION_FILE}: excluded by the capsule's own globs; it must be included"
            )
        return found

    def read_lock(self) -> Lock | None:
        return read_lock(self.lock_path)

    def _lock_bytes(self) -> bytes:
        """capsule.lock as written; IntegrityError when the capsule was never sealed."""
        raw = read_regular(self.lock_path, name="capsule.lock")
        if raw is None:
            raise IntegrityError(f"{self.lock_path}: not sealed (run 'qlcapsule seal {self.root}')")
        return raw

    def sig_bytes(self) -> bytes | None:
        """capsule.sig as written, None when unsigned.

        A symlink, a FIFO or a directory is refused (UnsafePathError), a file over
        1 MiB too (SignatureError): capsule.sig is not in the lock, so this is its check.
        """
        from .errors import SignatureError

        return read_regular(self.sig_path, name="capsule.sig", limit=MAX_SIG_BYTES, too_big=SignatureError)

    def require_lock(self) -> Lock:
        return parse_lock(self._lock_bytes(), str(self.lock_path))

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

        Sealing is where capsule.yaml is fully validated, whatever ``load`` did:
        by :func:`plainly_valid` when that can vouch for it, else by the model,
        alongside the hashing (it needs no hash).
        """
        entries = self.scan(progress=progress, alongside=self.check_definition)
        lock = build_lock(self.name, self.version, entries)
        written = atomic_write(self.lock_path, render_lock(lock))
        return SealResult(lock, written)

    def status(self, *, progress: Callable[[int], None] | None = None) -> Status:
        return self._status(progress)[0]

    def _status(self, progress: Callable[[int], None] | None, skipped: Skipped | None = None) -> tuple[Status, Lock]:
        raw = self._lock_bytes()
        entries = self.scan(progress=progress, skipped=skipped)
        # Fast path: when the lock is byte for byte what sealing the disk now
        # would write, nothing changed (files, modes, the digest, name and
        # version are all in those bytes) and the lock need not be parsed.
        fresh = build_lock(self.name, self.version, entries)
        if render_lock(fresh) == raw:
            return Status(), fresh
        lock = parse_lock(raw, str(self.lock_path))
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
        what the capsule does (see :class:`qlcapsule.tree.Unlocked`); with ``strict`` any of
        it is an IntegrityError too: the lock does not vouch for it.
        """
        if strict and unlocked is None:
            unlocked = Unlocked()
        status, lock = self._status(progress, unlocked)
        if not status.clean:
            lines = status.lines()
            more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
            err = IntegrityError(f"{self.root}: {lines[0]}{more}")
            err.status = status  # type: ignore[attr-defined]
            raise err
        if strict and unlocked is not None and unlocked.count:
            lines = describe_unlocked(unlocked.summary())
            more = f" (+{len(lines) - 1} more kind{'s' if len(lines) > 2 else ''})" if len(lines) > 1 else ""
            raise IntegrityError(f"{self.root}: {lines[0]}{more}; --strict refuses it")
        return lock
