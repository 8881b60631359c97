"""The base classes a plugin implements.

A component is a class with a ``name``, an ``Options`` pydantic model (validated
before any work starts) and the methods of its kind. Plugins register component
*classes*; the core instantiates them with validated options::

    exporter = registry.exporter("zip").from_options({"level": 9})

Options models forbid unknown keys, so a typo in capsule.yaml is an error that
names the field.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import types
import typing
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Iterable, Mapping, NamedTuple, Sequence, TypeVar

from ..errors import InputError, OptionsError, PluginError, QlcapsuleError

if TYPE_CHECKING:
    from pydantic import BaseModel, ConfigDict, ValidationError

    from ..format.capsule import Capsule
    from ..format.streaming import PayloadReader
    from .findings import Engine, Finding, Rule
    from .records import Artifact, GeneratorRecord, KeyPair, Receipt, TemplateInfo

    class Options(BaseModel):
        """Base for component options: unknown keys are errors."""

        model_config = ConfigDict(extra="forbid")


__all__ = [
    "Options",
    "Component",
    "Generator",
    "GeneratorRecord",
    "TemplateInfo",
    "Validator",
    "FileToCheck",
    "Signer",
    "KeyPair",
    "Exporter",
    "Deliverer",
    "Artifact",
    "Receipt",
]

# pydantic costs more to import (~0.15 s, and ~0.1 s more to build the first
# model) than a whole 8-file verify. The base Options model is therefore built
# on first use: a component without options of its own (the signers) is built
# from no options without it, as there is nothing to validate.
_options_base: Any = None


def _base_options() -> Any:
    global _options_base
    if _options_base is None:
        from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator  # noqa: PLC0415 -- start-up: pydantic loads only when a component has options (see above)

        class Options(BaseModel):
            """Base for component options: unknown keys are errors, ``true`` is not a number."""

            model_config = ConfigDict(extra="forbid")

            @field_validator("*", mode="before")
            @classmethod
            def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
                # pydantic's lax mode reads true as 1: ``port: true`` in capsule.yaml became port 1
                if isinstance(value, bool) and info.field_name is not None:
                    field = cls.model_fields.get(info.field_name)
                    if field is not None and _numeric_not_bool(field.annotation):
                        raise ValueError(f"expected a number, not {str(value).lower()}")
                return value

        Options.__module__ = __name__
        Options.__qualname__ = "Options"
        _options_base = Options
        globals()["Options"] = Options
    return _options_base


def _numeric_not_bool(annotation: Any) -> bool:
    """True when ``annotation`` accepts an int or float but not a bool (``int``, ``int | None``, ...)."""
    seen: set[Any] = set()

    def walk(t: Any) -> None:
        if t in seen:
            return
        seen.add(t)
        if typing.get_origin(t) is typing.Annotated:
            walk(typing.get_args(t)[0])
            return
        for arg in typing.get_args(t):
            walk(arg)

    walk(annotation)
    return bool(seen & {int, float}) and bool not in seen and Any not in seen


def _type_name(annotation: Any) -> str:
    """An option's type as its model spells it, without validators: ``int | None``, ``dict[str, str]``."""

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if inner else getattr(origin, "__name__", "")
    return getattr(annotation, "__name__", str(annotation))


def _constraints(meta: Any) -> list[str]:
    """The bounds and pattern a field's metadata holds (``>= 1``, ``pattern ^(gzip|none)$``); validators say nothing."""
    found = []
    for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        value = getattr(meta, attr, None)
        if value is not None:
            found.append(f"{sign} {value}")
    pattern = getattr(meta, "pattern", None)
    if pattern is not None:
        found.append(f"pattern {pattern}")
    return found


#: plain records, kept in ``records.py``: building a dataclass costs ~0.5 ms at import
_RECORDS = ("GeneratorRecord", "TemplateInfo", "KeyPair", "Artifact", "Receipt")


def __getattr__(name: str) -> Any:  # PEP 562: ``components.Options`` built lazily
    if name == "Options":
        return _base_options()
    if name in _RECORDS:
        from . import records  # noqa: PLC0415 -- start-up: the record dataclasses (~0.5 ms) load on first use

        return getattr(records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _BaseOptionsAttr:
    """``Component.Options`` until a subclass sets its own: the base model, built on first use."""

    def __get__(self, obj: object, owner: type) -> Any:
        return _base_options()


_C = TypeVar("_C", bound="Component")


def format_validation_error(exc: ValidationError, where: str, model: type[BaseModel] | None = None) -> str:
    """One line naming every failing field of a pydantic error, ``where: a: reason; b: reason``; an unknown
    key close to one ``model`` allows says which was meant."""
    from ..format.model import missing_keys, unknown_key  # noqa: PLC0415 -- start-up: the capsule.yaml model (pydantic, yaml) loads only when this is called

    errors = exc.errors()
    missing = missing_keys(errors)  # type: ignore[arg-type]
    parts = []
    for err in errors:
        loc = tuple(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = unknown_key(loc, model, missing.get(loc[:-1])) if model is not None else "unknown key"
        parts.append(f"{'.'.join(str(p) for p in loc) or '(root)'}: {msg}")
    return f"{where}: " + "; ".join(parts)


class Component(ABC):  # noqa: B024  (the kinds below declare the abstract methods)
    """Common behaviour of every component kind.

    The kinds below are abstract base classes: a class that leaves one of its
    kind's abstract methods out is refused when its plugin registers it (one
    line naming the plugin and the methods), not when the method is first called.
    """

    kind: ClassVar[str] = "component"
    #: the name users type (``--format zip``, ``provider: s3``); unique per kind
    name: ClassVar[str] = ""
    #: one line for ``qlcapsule plugins``
    description: ClassVar[str] = ""
    #: a pydantic model (subclass of ``qlcapsule.Options``); the empty base by default
    Options: ClassVar[Any] = _BaseOptionsAttr()
    #: modules the component imports beyond qlcapsule's own dependencies (``("boto3",)``); checked with
    #: ``importlib.util.find_spec`` when the component is looked up, never imported for the check
    requires: ClassVar[Sequence[str]] = ()
    #: what installs ``requires``, as ``pip install`` takes it: ``qlcapsule[s3]``, ``my-plugin[aws]``
    extra: ClassVar[str] = ""

    def __init__(self, options: Any = None) -> None:
        self._options = options
        #: where each top-level option came from, when the caller says (``--option``, ``capsule.yaml exports.tar``)
        self.sources: dict[str, str] = {}

    @property
    def options(self) -> Any:
        """The validated options (an instance of ``Options``); the model's defaults when none were given."""
        if self._options is None:
            self._options = self.Options()
        return self._options

    @options.setter
    def options(self, value: Any) -> None:
        self._options = value

    @classmethod
    def summary(cls) -> str:
        """The one line ``qlcapsule plugins`` shows: ``description``, else the first line of the class docstring."""
        if cls.description:
            return cls.description
        doc = (cls.__dict__.get("__doc__") or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    @classmethod
    def missing_modules(cls) -> list[str]:
        """The modules of ``requires`` that cannot be imported here (found without importing them)."""
        from importlib.util import find_spec  # noqa: PLC0415 -- start-up: importlib.util.find_spec loads only when this is called

        missing = []
        for module in cls.requires:
            try:
                found = find_spec(module) is not None
            except (ImportError, ValueError):  # a parent package missing, or a blocked module
                found = False
            if not found:
                missing.append(module)
        return missing

    @classmethod
    def unavailable(cls) -> str | None:
        """Why the component cannot run here (one line naming what to install), or None when it can."""
        missing = cls.missing_modules()
        if not missing:
            return None
        return f"{cls.kind} {cls.name!r} needs {', '.join(missing)}, which is not installed: {cls.install_hint()}"

    @classmethod
    def install_hint(cls) -> str:
        """The command that installs ``requires``: ``pip install "<extra>"``, else the modules to install."""
        return f'pip install "{cls.extra}"' if cls.extra else f"install {', '.join(cls.requires)}"

    @classmethod
    def require(cls) -> None:
        """Raise :class:`InputError` (exit 2) when the component cannot run here; see :meth:`unavailable`."""
        reason = cls.unavailable()
        if reason is not None:
            raise InputError(reason)

    @classmethod
    def describe_options(cls) -> list[dict[str, Any]]:
        """Each option of ``Options``, in order: name, type, default (or required), constraints and help.

        Read from the model itself (``export --list-options``), so what is listed is what is validated.
        """
        if not cls.declares_options():
            return []
        out = []
        for name, field in cls.Options.model_fields.items():
            required = field.is_required()
            default = None if required else field.get_default(call_default_factory=True)
            out.append(
                {
                    "name": name,
                    "type": _type_name(field.annotation),
                    "required": required,
                    "default": default,
                    "constraints": [c for m in field.metadata for c in _constraints(m)],
                    "help": field.description or "",
                }
            )
        return out

    @classmethod
    def declares_options(cls) -> bool:
        """True when the class (or a base below ``Component``) sets its own ``Options`` model."""
        return any("Options" in klass.__dict__ for klass in cls.__mro__ if klass is not Component)

    @classmethod
    def from_options(cls: type[_C], raw: Mapping[str, Any] | None = None, *, where: str = "") -> _C:
        """Validate ``raw`` with ``cls.Options`` (once) and return an instance.

        Raises :class:`OptionsError` with one line naming the field. No options
        for a component without an ``Options`` model of its own is nothing to
        validate: pydantic is not imported for it (``verify --key``).
        """
        if not raw and not cls.declares_options():
            return cls()
        from pydantic import ValidationError  # noqa: PLC0415 -- start-up: pydantic loads only when a component has options

        try:
            opts = cls.Options.model_validate(dict(raw or {}))
        except ValidationError as exc:
            what = where or f"{cls.kind} {cls.name!r} options"
            raise OptionsError(format_validation_error(exc, what, cls.Options)) from None
        return cls(opts)


# -- generators ---------------------------------------------------------------


class Generator(Component):
    """Renders a template into a directory."""

    kind = "generator"

    @abstractmethod
    def handles(self, source: str) -> bool:
        """True when this generator understands ``source`` (a template name, path or URL)."""

    @abstractmethod
    def generate(
        self,
        source: str,
        dest: Path,
        answers: Mapping[str, Any],
        *,
        version: str | None = None,
        interactive: bool = False,
    ) -> GeneratorRecord:
        """Render ``source`` (at ``version`` when given) into ``dest`` with ``answers``."""

    def templates(self) -> Sequence[str]:
        """The templates this generator offers by name alone (its built-ins), for ``qlcapsule templates``."""
        return ()

    def describe(self, source: str) -> TemplateInfo:
        """The template ``source`` names (one of :meth:`templates`, a path, a URL): id, version, questions.

        Reads the template without rendering anything; raises like :meth:`generate` for a bad source.
        """

        raise PluginError(f"generator {self.name!r} cannot describe its templates (template {source!r})")


# -- validators ---------------------------------------------------------------


class FileToCheck(NamedTuple):
    """One file handed to :meth:`Validator.check_files`: its capsule, capsule-relative POSIX path and bytes."""

    capsule: Capsule
    path: str
    data: bytes


class Validator(Component):
    """Produces findings for files (matched by ``patterns``) and/or whole capsules."""

    kind = "validator"
    #: the rules this validator can report, by id
    rules: ClassVar[Sequence[Rule]] = ()
    #: glob patterns (capsule globs) of the files ``check_file`` wants; empty = none
    patterns: ClassVar[Sequence[str]] = ()

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        """Findings for one file. ``path`` is the capsule-relative POSIX path."""
        return ()

    def check_capsule(self, capsule: Capsule) -> Iterable[Finding]:
        """Findings for the capsule as a whole."""
        return ()

    def check_files(self, files: Sequence[FileToCheck]) -> Iterable[Iterable[Finding]]:
        """Findings for many files at once, one iterable per file in the order given.

        Validation calls this, not :meth:`check_file`, for a validator that runs
        engines (one that overrides :meth:`engines`): it hands over every file the
        validator applies to across the capsules one process validates, possibly
        of several capsules, so an engine that is slow to start (zizmor, hadolint)
        starts once per batch instead of once per file. The default checks each
        file with :meth:`check_file`. An override must keep one capsule's content
        from changing another capsule's findings (run a failed batch again per
        capsule, say).
        """
        return [self.check_file(f.capsule, f.path, f.data) for f in files]

    def engines(self) -> Sequence[Engine]:
        """The external engines this validator runs, as installed now (``qlcapsule validate --engines``).

        A missing engine that is not ``optional`` becomes a ``<validator>.engine-missing``
        warning wherever the validator applies, so a broken install never checks less in silence.
        """
        return ()


# -- signers ------------------------------------------------------------------


class Signer(Component):
    """Signs and verifies DSSE PAE bytes with one key algorithm."""

    kind = "signer"

    @abstractmethod
    def generate_key(self) -> KeyPair: ...

    @abstractmethod
    def load_signing_key(self, material: bytes) -> Any: ...

    @abstractmethod
    def load_verify_key(self, material: bytes) -> Any: ...

    @abstractmethod
    def keyid(self, key: Any) -> str: ...

    @abstractmethod
    def sign(self, key: Any, pae: bytes) -> bytes: ...

    @abstractmethod
    def verify(self, key: Any, pae: bytes, signature: bytes) -> bool: ...


# -- exporters ----------------------------------------------------------------


class Exporter(Component):
    """Turns a sealed capsule into an artifact written to a binary stream.

    ``export`` must write the same bytes for the same capsule, whatever the
    files' mtimes, owners or umask: use :meth:`timestamp` for every date it
    writes. Exporters whose ``streams`` is True never seek or read ``out``, so
    they can write to a pipe (``-o -``). A format listed in
    ``directory_formats`` is written by :meth:`export_dir` into a new directory
    instead of a stream.
    """

    kind = "exporter"
    #: formats this exporter writes (``--format``); the first is its default
    formats: ClassVar[Sequence[str]] = ()
    #: formats (a subset of ``formats``) whose output is a directory, written by ``export_dir``
    directory_formats: ClassVar[Sequence[str]] = ()
    #: True when ``export`` never seeks ``out`` (so ``-o -`` works)
    streams: ClassVar[bool] = False
    media_type: ClassVar[str] = "application/octet-stream"

    def filename(self, capsule: Capsule, fmt: str) -> str:
        return f"{capsule.name}-{capsule.version}.{fmt}"

    def check(self, fmt: str) -> None:
        """Refuse option values that do not suit ``fmt``; called before any byte is written."""

    def media_type_for(self, fmt: str) -> str:
        """The media type of ``fmt``'s output (default: ``media_type``)."""
        return self.media_type

    @abstractmethod
    def export(self, capsule: Capsule, out: BinaryIO, fmt: str, payload: PayloadReader) -> None:
        """Write ``fmt`` to ``out``; read the capsule's files through ``payload`` (checked against the lock).

        ``payload.files`` is every locked file plus capsule.lock and capsule.sig,
        sorted; ``payload.read(f)`` yields a file's bytes while hashing them.
        The core calls ``payload.verify()`` after ``export`` returns and commits
        the output only when every locked file matched (docs/export.md).
        """

    def export_dir(self, capsule: Capsule, dest: Path, fmt: str, payload: PayloadReader) -> None:
        """Write a directory format into ``dest`` (an empty directory the caller created); ``payload`` as for ``export``."""
        raise NotImplementedError

    @staticmethod
    def timestamp(capsule: Capsule) -> int:
        """The one date an export may carry, in seconds since the epoch.

        ``SOURCE_DATE_EPOCH`` when set (https://reproducible-builds.org); else the
        capsule's own date: the ``created`` time of the signed statement in
        capsule.sig when the capsule is signed; else 1980-01-01T00:00:00Z (the
        earliest date a ZIP file can hold), so the bytes never depend on when or
        where the export ran.
        """
        return export_timestamp(capsule)


#: 1980-01-01T00:00:00Z: the fallback export date (the ZIP epoch).
DEFAULT_EPOCH = 315532800
#: 9999-12-31T23:59:59Z: the latest date an export accepts (tar needs a PAX ``mtime`` past 2242, ZIP clamps to 2107)
LATEST_EPOCH = 253402300799


def export_timestamp(capsule: Capsule) -> int:
    """See :meth:`Exporter.timestamp`."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if raw:
        if not raw.isdigit():
            raise OptionsError(f"SOURCE_DATE_EPOCH: {raw!r} is not a non-negative integer number of seconds")
        if int(raw) > LATEST_EPOCH:
            raise OptionsError(f"SOURCE_DATE_EPOCH: {raw} is after 9999-12-31T23:59:59Z")
        return int(raw)
    created = _signed_created(capsule.sig_path)
    return created if created is not None else DEFAULT_EPOCH


def _signed_created(sig_path: Path) -> int | None:
    """``predicate.created`` of the DSSE statement in capsule.sig, or None."""
    import base64  # noqa: PLC0415 -- start-up: base64 and the tree walk load only when an export reads capsule.sig

    from ..format.tree import read_regular  # noqa: PLC0415 -- start-up: base64 and the tree walk load only when an export reads capsule.sig

    try:
        raw = read_regular(sig_path, name="capsule.sig", limit=1024 * 1024)  # never a symlink's target
        if raw is None:
            return None
        envelope = json.loads(raw)
        statement = json.loads(base64.b64decode(envelope["payload"]))
        created = statement["predicate"]["created"]
        when = _dt.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError, TypeError, RecursionError, QlcapsuleError):  # RecursionError: [[[[...]]]]
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return max(0, int(when.timestamp()))


# -- deliverers ---------------------------------------------------------------


class Deliverer(Component):
    """Sends artifacts to a destination and returns one receipt per artifact."""

    kind = "deliverer"

    def check(self, capsule: Capsule) -> None:
        """Validate credentials and reachability without writing (``--dry-run``)."""

    @abstractmethod
    def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
        """Send ``artifacts`` to ``target``; one receipt per artifact, with what the destination reports."""
