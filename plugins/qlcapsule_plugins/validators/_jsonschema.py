"""A small JSON Schema (draft-07) evaluator for vendored schemas (plugin-internal).

The ``jsonschema`` package costs ~70 ms to import, more than the whole
``validate`` budget allows per run; the GitHub workflow schema uses only the
keywords below, so a focused evaluator gives the same verdicts (a test checks
it against ``jsonschema`` on valid and broken workflows). Errors come back as
``(instance path, message, at_key)``, the best branch chosen for
``oneOf``/``anyOf`` the way ``jsonschema.exceptions.best_match`` does: the
deepest error of the branch that got furthest.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

Path = tuple[Any, ...]
Error = tuple[Path, str, bool]

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Evaluator:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.root = schema

    def resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}  # remote references are not followed (vendored schemas have none)
        node: Any = self.root
        for part in ref[1:].split("/")[1:]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def errors(self, instance: Any, schema: Any = None, path: Path = ()) -> list[Error]:  # noqa: C901 - one branch per JSON Schema keyword (issue 19 replaces this evaluator)
        schema = self.root if schema is None else schema
        if schema is True or schema == {}:
            return []
        if schema is False:
            return [(path, "is not allowed here", False)]
        out: list[Error] = []
        if "$ref" in schema:
            return self.errors(instance, self.resolve(schema["$ref"]), path)
        t = schema.get("type")
        if t is not None:
            types = t if isinstance(t, list) else [t]
            if not any(_TYPES[x](instance) for x in types):
                return [(path, f"{_short(instance)} is not of type {' or '.join(types)}", False)]
        if "enum" in schema and instance not in schema["enum"]:
            choices = ", ".join(_short(c) for c in schema["enum"][:8])
            out.append((path, f"{_short(instance)} is not one of {choices}", False))
        if "const" in schema and instance != schema["const"]:
            out.append((path, f"{_short(instance)} is not {_short(schema['const'])}", False))
        if isinstance(instance, str):
            if "pattern" in schema and not _regex(schema["pattern"]).search(instance):
                out.append((path, f"{_short(instance)} does not match {schema['pattern']!r}", False))
            if "minLength" in schema and len(instance) < schema["minLength"]:
                out.append((path, f"{_short(instance)} is too short", False))
        if isinstance(instance, list):
            out += self._array(instance, schema, path)
        if isinstance(instance, dict):
            out += self._object(instance, schema, path)
        for sub in schema.get("allOf", ()):
            out += self.errors(instance, sub, path)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                out += self._choice(instance, schema[key], path, key)
        if "not" in schema and not self.errors(instance, schema["not"], path):
            out.append((path, f"{_short(instance)} is not allowed here", False))
        return out

    def _array(self, instance: list[Any], schema: dict[str, Any], path: Path) -> list[Error]:
        out: list[Error] = []
        if "minItems" in schema and len(instance) < schema["minItems"]:
            out.append((path, f"needs at least {schema['minItems']} item(s)", False))
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(instance):
                out += self.errors(item, items, path + (i,))
        elif isinstance(items, list):
            for i, (item, sub) in enumerate(zip(instance, items, strict=False)):
                out += self.errors(item, sub, path + (i,))
        return out

    def _object(self, instance: dict[str, Any], schema: dict[str, Any], path: Path) -> list[Error]:
        out: list[Error] = []
        for req in schema.get("required", ()):
            if req not in instance:
                out.append((path, f"{req!r} is a required property", False))
        if "minProperties" in schema and len(instance) < schema["minProperties"]:
            out.append((path, f"needs at least {schema['minProperties']} key(s)", False))
        props = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        additional = schema.get("additionalProperties", True)
        for key, value in instance.items():
            matched = False
            if key in props:
                matched = True
                out += self.errors(value, props[key], path + (key,))
            for pattern, sub in patterns.items():
                if _regex(pattern).search(str(key)):
                    matched = True
                    out += self.errors(value, sub, path + (key,))
            if not matched:
                if additional is False:
                    out.append((path + (key,), f"unexpected key {str(key)!r}", True))
                elif isinstance(additional, dict):
                    out += self.errors(value, additional, path + (key,))
        for key, dep in schema.get("dependencies", {}).items():
            if key in instance:
                if isinstance(dep, list):
                    out += [(path, f"{key!r} requires {d!r}", False) for d in dep if d not in instance]
                else:
                    out += self.errors(instance, dep, path)
        return out

    def _choice(self, instance: Any, branches: list[Any], path: Path, key: str) -> list[Error]:
        results = [self.errors(instance, b, path) for b in branches]
        passing = sum(1 for r in results if not r)
        if key == "anyOf" and passing:
            return []
        if key == "oneOf" and passing == 1:
            return []
        if key == "oneOf" and passing > 1:
            return [(path, f"{_short(instance)} is valid under more than one alternative", False)]

        def relevance(errs: list[Error]) -> tuple[int, bool, int]:
            # an unexpected key is an error about its object (as jsonschema places
            # additionalProperties): counted deeper, the branch that does not expect
            # runs-on/steps at all would beat the one a missing 'matrix' is about
            deepest = max(len(p) - (1 if at_key else 0) for p, _m, at_key in errs)
            typed = not all("is not of type" in m for _p, m, _k in errs)
            return deepest, typed, -len(errs)

        return max(results, key=relevance)
