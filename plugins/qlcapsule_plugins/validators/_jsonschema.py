"""JSON Schema findings for YAML files: SchemaStore schemas on the ``jsonschema`` library (plugin-internal).

The schemas are the ones ``check-jsonschema`` vendors from SchemaStore (a
dependency of qlcapsule: its ``builtin_schemas/vendor`` folder, with the
SchemaStore licence beside them); the evaluator is the maintained
``jsonschema`` package. Both are located without importing check-jsonschema
itself (its CLI is not needed).

Where a schema offers alternatives (``oneOf``/``anyOf``: a job is a normal job
*or* a reusable-workflow call), only the errors of the best-matching branch are
reported, chosen the way ``jsonschema.exceptions.best_match`` ranks errors: the
branch whose errors lie deepest, then one not only about types, then the fewest.
Each error is placed on the YAML node its JSON path leads to (the composer's
marks): a missing or unexpected key on the key, a wrong value on the value.
:class:`SchemaValidator` is the validator built on one schema (workflows,
action metadata, dependabot, Compose files).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Sequence

import yaml

from qlcapsule import Capsule, Engine, Finding, Severity, Validator

from ._yaml import compose_all, key_node, node_at, position, to_data

#: the distribution that vendors the SchemaStore schemas, and how to get it back
VENDOR = "check-jsonschema"
INSTALL = "pip install check-jsonschema jsonschema"


@lru_cache(maxsize=1)
def _vendor_dir() -> Path | None:
    try:
        spec = find_spec("check_jsonschema")  # locates the package without importing it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "builtin_schemas" / "vendor"
    return folder if folder.is_dir() else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def engine() -> Engine:
    """The schema engine's status: check-jsonschema's vendored schemas evaluated by ``jsonschema``."""
    vendor, evaluator = _version(VENDOR), _version("jsonschema")
    present = vendor is not None and evaluator is not None and _vendor_dir() is not None
    return Engine(
        "schemastore",
        f"{VENDOR} {vendor}, jsonschema {evaluator}" if present else None,
        INSTALL,
        "SchemaStore JSON Schemas (vendored by check-jsonschema) evaluated by jsonschema",
    )


@lru_cache(maxsize=8)
def schema(name: str) -> dict[str, Any] | None:
    """The vendored SchemaStore schema ``name`` (``github-workflows``), or None when it is not installed."""
    folder = _vendor_dir()
    if folder is None:
        return None
    try:
        return json.loads((folder / f"{name}.json").read_text("utf-8"))  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=8)
def _validator(name: str) -> Any:
    found = schema(name)
    if found is None or _version("jsonschema") is None:
        return None
    import jsonschema  # noqa: PLC0415 -- start-up: jsonschema loads only when this component runs

    return jsonschema.validators.validator_for(found)(found)


@dataclass(frozen=True)
class SchemaError:
    """One error: the JSON path it is about, a message, the schema keyword, and whether it names a key."""

    path: tuple[Any, ...]
    message: str
    keyword: str
    at_key: bool


def errors(name: str, doc: Any) -> list[SchemaError] | None:
    """Every error of ``doc`` against schema ``name`` (best branch of each choice); None without the engine."""
    validator = _validator(name)
    return None if validator is None else errors_of(validator, doc)


def errors_of(validator: Any, doc: Any) -> list[SchemaError]:
    """Every error of ``doc`` under a ``jsonschema`` validator, the best branch of each choice."""
    out: list[SchemaError] = []
    for error in validator.iter_errors(doc):
        out.extend(e for leaf in _leaves(error) for e in _described(leaf))
    inner = {e.path[:n] for e in out if e.keyword != "unevaluatedProperties" for n in range(1, len(e.path) + 1)}
    return [e for e in out if e.keyword != "unevaluatedProperties" or e.path not in inner]


def _leaves(error: Any) -> list[Any]:
    """The errors of the best-matching branch of a oneOf/anyOf, recursively; the error itself otherwise."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [error]
    branches: dict[int, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.schema_path[0], []).append(sub)
    depth = len(error.absolute_path)
    # a branch for another type of value (a string where an object was given) says nothing useful
    # about the value: judged among the branches of the right type, as jsonschema's best_match does
    fitting = [
        subs
        for subs in branches.values()
        if not any(s.validator == "type" and len(s.absolute_path) == depth for s in subs)
    ]
    if not fitting:
        types = [str(s.validator_value) for subs in branches.values() for s in subs if s.validator == "type"]
        return [_Mismatch(error, f"{_short(error.instance)} is not of type {', '.join(dict.fromkeys(types))}")]
    resolved = [[leaf for sub in subs for leaf in _leaves(sub)] for subs in fitting]
    if len(resolved) > 1 and all(
        e.validator == "required" and len(e.absolute_path) == depth for r in resolved for e in r
    ):
        keys = ", ".join(dict.fromkeys(e.message.split(" is a required", 1)[0] for r in resolved for e in r))
        return [_Mismatch(error, f"needs one of {keys}", "required")]

    def relevance(errs: list[Any]) -> tuple[int, int, int]:
        # a branch whose errors are about the value itself (a missing or unexpected key) fits worse
        # than one whose errors lie inside it: that one is the shape the author meant
        shallow = sum(1 for e in errs if len(e.absolute_path) <= depth)
        return -shallow, max(len(e.absolute_path) for e in errs), -len(errs)

    return max(resolved, key=relevance)


class _Mismatch:
    """One error standing for a whole choice: no branch takes a value of this type, or each wants a key."""

    def __init__(self, error: Any, message: str, keyword: str = "type") -> None:
        self.absolute_path = error.absolute_path
        self.validator = keyword
        self.validator_value: Any = None
        self.instance = error.instance
        self.schema = error.schema
        self.message = message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _described(error: Any) -> list[SchemaError]:
    path = tuple(error.absolute_path)
    if error.validator == "unevaluatedProperties" and isinstance(error.instance, dict):
        # the keys the message names; a known key whose value fails is among them (draft 2020-12), and
        # errors() drops it where the value's own error says why
        named = [k for k in error.instance if repr(k) in error.message]
        return [SchemaError(path + (k,), f"unexpected key {str(k)!r}", "unevaluatedProperties", True) for k in named]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return [
            SchemaError(path + (key,), f"unexpected key {str(key)!r}", "additionalProperties", True)
            for key in _extra_keys(error.instance, error.schema)
        ] or [SchemaError(path, error.message, error.validator, False)]
    if error.validator == "required":
        about_key = isinstance(error, _Mismatch) is False and bool(path)
        return [SchemaError(path, error.message, "required", about_key)]
    if error.validator == "oneOf" and not error.context:
        message = f"{_short(error.instance)} matches more than one of the alternatives, where exactly one must"
        return [SchemaError(path, message, "oneOf", False)]
    message = error.message
    shown = repr(error.instance)
    if message.startswith(shown) and len(shown) > 60:
        message = _short(error.instance) + message[len(shown) :]
    return [SchemaError(path, message, str(error.validator), False)]


def _extra_keys(instance: dict[Any, Any], node: dict[str, Any]) -> list[Any]:
    props = node.get("properties", {})
    patterns = [re.compile(p) for p in node.get("patternProperties", {})]
    return [k for k in instance if k not in props and not any(p.search(str(k)) for p in patterns)]


def findings(
    rule: str, name: str, root: yaml.Node, doc: Any, path: str, help_uri: str | None = None
) -> Iterator[Finding]:
    """Findings of rule ``rule`` for ``doc`` (composed from ``root``) against schema ``name``.

    Yields nothing when the engine is missing: :func:`engine` reports that, and
    validation turns it into a finding (never silently weaker).
    """
    yield from located(rule, errors(name, doc) or (), root, path, help_uri)


def located(
    rule: str, found: Iterable[SchemaError], root: yaml.Node, path: str, help_uri: str | None = None
) -> Iterator[Finding]:
    """Findings of rule ``rule`` for schema errors of the document composed from ``root``, on their YAML nodes."""
    seen: set[tuple[int, str]] = set()
    for err in found:
        node = key_node(root, err.path) if err.at_key else node_at(root, err.path)
        line, column = position(node)
        label = ".".join(str(p) for p in err.path) or "(root)"
        if (line, err.message) in seen:
            continue
        seen.add((line, err.message))
        extra: dict[str, Any] = {"keyword": err.keyword}
        if help_uri:
            extra["help_uri"] = help_uri
        yield Finding(rule, Severity.ERROR, f"{label}: {err.message}", path, line, column, extra=extra)


class SchemaValidator(Validator):
    """A YAML file checked against one vendored SchemaStore schema, reported under ``<name>.schema``."""

    schema_name: ClassVar[str] = ""
    help_uri: ClassVar[str] = ""
    what: ClassVar[str] = "file"

    def engines(self) -> Sequence[Engine]:
        return (engine(),)

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        docs, error = compose_all(data.decode("utf-8", "replace"))
        rule = f"{self.name}.schema"
        if error is not None:
            return
        if not docs:
            yield Finding(rule, Severity.ERROR, f"empty {self.what}", path, 1, 1)
            return
        root = docs[0]
        doc = to_data(root)
        yield from findings(rule, self.schema_name, root, doc, path, self.help_uri)
        yield from self.more(root, doc, path)

    def more(self, root: Any, doc: Any, path: str) -> Iterable[Finding]:
        return ()
