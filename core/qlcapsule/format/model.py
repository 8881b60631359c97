"""capsule.yaml as pydantic models.

``load_definition(path)`` is the one way the tool reads and validates a definition:
:mod:`qlcapsule.format.yamlsrc` (size cap, alias budget, duplicate keys refused, the line of
every key), then the models (unknown keys refused). Every error is reported, each on
one line ``capsule.yaml:LINE: key.path: reason`` (:class:`SchemaError` keeps the list).
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ..errors import DefinitionError
from . import yamlsrc
from .globs import check_glob
from .names import (  # noqa: F401  (re-exported: the format's constants live in names.py)
    DEFAULT_EXCLUDE,
    DEFINITION_FILE,
    DNS_LABEL,
    LOCK_FILE,
    SEMVER,
    SIG_FILE,
)

#: What ``ship`` and ``keygen`` write, excluded by default so that no output ever enters a capsule:
#: ship's default output and local target (``dist/`` at the top, where ``cd capsule && qlcapsule ship``
#: writes it) and key files (``*.key`` and the ``*.key.pub`` keygen writes beside it, the development
#: key included). ``*.pem`` is not among them: certificates are content, and a private key in
#: one is the secrets validator's finding, not a file to drop silently. Unlike
#: :data:`DEFAULT_EXCLUDE`, each can be taken back by listing the same pattern under ``include:``
#: (``include: ["**", "*.key"]`` seals a capsule's ``*.key`` files).
OUTPUT_EXCLUDE = ["/dist/", "*.key", "*.key.pub"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GeneratorInfo(_Strict):
    """Provenance of a generated capsule, enough to re-render it later."""

    template: str = Field(description="template id")
    version: str | None = Field(default=None, description="template version")
    commit: str | None = Field(default=None, description="template commit, for git sources")
    source: str | None = Field(default=None, description="where the template came from: name, path or git URL@rev")
    answers: dict[str, Any] = Field(default_factory=dict)


class ValidateConfig(_Strict):
    rules: dict[str, bool | str] = Field(
        default_factory=dict,
        description="rule id (or validator name) -> on/off, or the severity its findings are reported with",
    )

    @field_validator("rules")
    @classmethod
    def _settings(cls, rules: dict[str, bool | str]) -> dict[str, bool | str]:
        for key, value in rules.items():
            if not isinstance(value, bool) and value not in ("error", "warning", "note"):
                raise ValueError(f"{key}: {value!r} is neither true/false nor a severity (error, warning, note)")
        return rules

    fail_on: Literal["error", "warning", "never"] = "error"
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)


class PolicyConfig(_Strict):
    """Signature policy applied by ``verify``."""

    require_signature: bool = False
    threshold: int = Field(default=1, ge=1)
    trust: str | None = Field(
        default=None,
        description="ignored: a capsule never names its own trust root (verifiers pass --key, --trust or $QLCAPSULE_TRUST_FILE)",
    )
    min_version: str | None = Field(default=None, description="refuse signatures for versions older than this (SemVer)")

    @field_validator("min_version")
    @classmethod
    def _min_semver(cls, v: str | None) -> str | None:
        if v is not None and not SEMVER.match(v):
            raise ValueError(f"{v!r} is not a SemVer 2.0.0 version (like 1.2.3)")
        return v


Event = Literal["success", "failure"]


def _all_events() -> list[Event]:
    return ["success", "failure"]


class WebhookConfig(_Strict):
    url: str
    secret_env: str | None = Field(default=None, description="environment variable holding the HMAC secret")
    events: list[Event] = Field(default_factory=_all_events)


TargetOrigin = Literal["capsule", "operator", "builtin", "trusted"]


class TargetConfig(_Strict):
    """A named delivery target. Options are checked by the provider's own model; never secrets.

    The same schema serves capsule.yaml ``targets:`` and the operator's targets file
    (:mod:`qlcapsule.steps.targets`). Who wrote a definition decides what it may do, so each
    one carries its origin: ``capsule`` (the default: the content under test),
    ``operator`` (the operator's targets file), ``builtin`` (local ./dist) or
    ``trusted`` (capsule.yaml under the operator's opt-in). ``delivery.load_deliverer``
    lets only ``operator`` and ``trusted`` definitions reach credentials.
    """

    provider: str
    formats: list[str] | None = Field(default=None, description="which exports to deliver (default: ship's)")
    options: dict[str, Any] = Field(default_factory=dict)
    notify: list[WebhookConfig] = Field(default_factory=list)

    _origin: TargetOrigin = PrivateAttr(default="capsule")
    #: the file that defined it, for error messages
    _file: str = PrivateAttr(default="capsule.yaml")
    #: line of each key under this target ("" = the target itself), when known
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)

    @property
    def origin(self) -> TargetOrigin:
        return self._origin

    @property
    def file(self) -> str:
        return self._file

    def with_origin(self, origin: TargetOrigin, file: str, lines: dict[str, int] | None = None) -> TargetConfig:
        """A copy marked as defined by ``origin`` in ``file``."""
        copy = self.model_copy(deep=True)
        copy._origin, copy._file, copy._lines = origin, file, dict(lines or {})
        return copy

    def where(self, key: str = "") -> str:
        """``FILE:LINE`` of ``key`` under this target (its own line when the key has none), or ``FILE``."""
        line = self._lines.get(key) or self._lines.get("")
        return f"{self._file}:{line}" if line else self._file


class TargetsFile(_Strict):
    """The operator's targets file: ``targets:`` as in capsule.yaml, and nothing else."""

    targets: dict[str, TargetConfig] = Field(default_factory=dict)


class ShipConfig(_Strict):
    formats: list[str] = Field(default_factory=lambda: ["tar.gz"])
    targets: list[str] = Field(default_factory=list, description="target names; empty = local ./dist")
    sign: bool = True
    commit: bool = True
    validate_: bool = Field(default=True, alias="validate", description="run the validators first")
    deliver: bool = Field(default=True, description="deliver the exports (off: they stay in --output)")
    branch: str = Field(default="main", description="store branch the version is committed to")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CapsuleDefinition(_Strict):
    """The definition of a capsule (capsule.yaml)."""

    name: str = Field(description="DNS label: lowercase letters, digits and '-', at most 63 characters")
    version: str = Field(description="SemVer 2.0.0")
    description: str = ""
    authors: list[str] = Field(default_factory=list)
    license: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    generator: GeneratorInfo | None = None
    include: list[str] = Field(default_factory=lambda: ["**"])
    exclude: list[str] = Field(
        default_factory=list,
        description="added to the built-in excludes (VCS and cache directories, .qlcapsule/, and the outputs "
        "/dist/, *.key, *.key.pub: list one of those under include to seal it)",
    )
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    exports: dict[str, dict[str, Any]] = Field(default_factory=dict, description="exporter name -> options")
    targets: dict[str, TargetConfig] = Field(default_factory=dict)
    ship: ShipConfig = Field(default_factory=ShipConfig)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if not DNS_LABEL.match(v):
            raise ValueError(f"{v!r} is not a DNS label (lowercase a-z, 0-9 and '-', 1-63 characters)")
        return v

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not SEMVER.match(v):
            raise ValueError(f"{v!r} is not a SemVer 2.0.0 version (like 1.2.3)")
        return v

    @field_validator("include", "exclude")
    @classmethod
    def _globs(cls, v: list[str]) -> list[str]:
        for i, pattern in enumerate(v):
            try:
                check_glob(pattern)
            except ValueError as exc:
                raise ValueError(f"bad glob {pattern!r} (item {i}): {exc}") from None
        return v

    @property
    def validate_config(self) -> ValidateConfig:
        return self.validate_

    def all_excludes(self) -> list[str]:
        """The built-in excludes, the output excludes not taken back by ``include``, then ``exclude``."""
        outputs = [p for p in OUTPUT_EXCLUDE if p not in self.include]
        return DEFAULT_EXCLUDE + outputs + list(self.exclude)


class Problem(NamedTuple):
    """One schema error: where it is and what is wrong."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}"


class SchemaError(DefinitionError):
    """A YAML file the models refuse; ``problems`` lists every error, the message has one line each."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0] if problems else None
        super().__init__(
            "\n".join(str(p) for p in problems),
            file=first.file if first else None,
            line=first.line if first else None,
            key=first.key if first else None,
        )
        self.problems = problems


def parse_definition(data: Any, lines: dict[yamlsrc.KeyPath, int], filename: str) -> CapsuleDefinition:
    if not isinstance(data, dict):
        raise DefinitionError(f"{filename}:1: expected a mapping at the top level", file=filename, line=1, key="(root)")
    try:
        return CapsuleDefinition.model_validate(data)
    except ValidationError as exc:
        raise schema_error(exc, lines, filename, CapsuleDefinition) from None


def schema_error(
    exc: ValidationError, lines: dict[yamlsrc.KeyPath, int], filename: str, model: type[BaseModel]
) -> SchemaError:
    """Every error of ``exc`` as ``FILE:LINE: key.path: reason``, in the order of the file.

    An unknown key close to a key the model knows at that place says so ("did you mean
    version?"), preferring a required key that is missing there.
    """
    errors = exc.errors()
    missing = missing_keys(errors)
    problems = []
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = unknown_key(loc, model, missing.get(loc[:-1], []))
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        problems.append(Problem(filename, yamlsrc.line_of(lines, loc), yamlsrc.dotted(loc), msg))
    problems.sort(key=lambda p: p.line or 0)
    return SchemaError(problems)


def unknown_key(loc: tuple[Any, ...], model: type[BaseModel], missing: list[str] | None = None) -> str:
    """ "unknown key" for the key at ``loc`` under ``model``, naming the key meant when one is close:
    a key ``missing`` at that place first, else any key the model allows there."""
    return "unknown key" + _suggestion(str(loc[-1]), list(missing or []), _keys_at(model, loc[:-1]))


def missing_keys(errors: list[Any]) -> dict[tuple[Any, ...], list[str]]:
    """The required keys each mapping of a pydantic error list lacks, by the mapping's place."""
    missing: dict[tuple[Any, ...], list[str]] = {}
    for err in errors:
        if err["type"] == "missing":
            missing.setdefault(tuple(err["loc"][:-1]), []).append(str(err["loc"][-1]))
    return missing


def _suggestion(key: str, missing: list[str], known: list[str] | None) -> str:
    import difflib  # noqa: PLC0415 -- start-up: difflib loads only to suggest a key for an error

    for candidates in (missing, known or []):
        close = difflib.get_close_matches(key, candidates, n=1)
        if close:
            return f" (did you mean {close[0]}?)"
    return ""


def _keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The keys the models allow in the mapping at ``loc`` under ``model``; None when that is no model."""
    annotation: Any = model
    for part in loc:
        annotation = _unoptional(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {f.alias or name: f for name, f in annotation.model_fields.items()}
            if part not in fields:
                return None
            annotation = fields[part].annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        elif get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        else:
            return None
    annotation = _unoptional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or name for name, f in annotation.model_fields.items()]
    return None


def _unoptional(annotation: Any) -> Any:
    """``X`` for ``X | None``; anything else as it is."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        return args[0]
    return annotation


def load_definition(path: Path, shown: Path | None = None) -> CapsuleDefinition:
    """Read and validate a capsule.yaml file; messages name it ``shown`` (as the user named it), else ``path``."""
    data, lines = yamlsrc.load_file(path, shown)
    return parse_definition(data, lines, str(path if shown is None else shown))


def definition_schema() -> dict[str, Any]:
    schema = CapsuleDefinition.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://qlcapsule.dev/schema/capsule.json"
    return schema
