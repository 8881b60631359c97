"""``template.yaml``: a template's id, version, questions, conditions and excludes.

::

    id: fastapi-service            # recorded as generator.template
    version: 1.2.0                 # recorded as generator.version
    description: A FastAPI service
    questions:                     # asked in this order
      name:
        type: str                  # str | int | float | bool
        help: Capsule and service name
        default: "{{ _folder_name | kebab }}"   # may use earlier answers
        regex: "^[a-z][a-z0-9-]*$"
      port: {type: int, default: 8000}
      python: {type: str, default: "3.12", choices: ["3.11", "3.12", "3.13"]}
      docker: {type: bool, default: true}
      registry: {type: str, default: ghcr.io, when: "docker"}   # asked only when docker
    conditions:                    # template path glob -> expression; file kept when true
      "docker-compose.yml.j2": "docker"
    exclude: ["*.orig"]            # template paths never rendered
"""

from __future__ import annotations

import re
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qlcapsule import InputError

from ._source import SPEC_FILE, Files

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    type: Literal["str", "int", "float", "bool"] = "str"
    help: str = ""
    default: Any = None
    choices: list[Any] = Field(default_factory=list)
    regex: str | None = None
    when: Any = None

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"bad regex: {exc}") from None
        return v

    def rendered_default(self, env: Any, ctx: dict[str, Any]) -> Any:
        from jinja2 import TemplateError

        if isinstance(self.default, str) and ("{{" in self.default or "{%" in self.default):
            try:
                return env.from_string(self.default).render(ctx)
            except TemplateError as exc:
                raise InputError(f"default of question {self.name}: {exc}") from None
        return self.default


class TemplateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    version: str
    description: str = ""
    questions: list[Question] = Field(default_factory=list)
    conditions: dict[str, Any] = Field(default_factory=dict)
    exclude: list[str] = Field(default_factory=list)

    def excluded(self, rel: str) -> bool:
        from qlcapsule import compile_glob

        return any(compile_glob(p).match_file(rel) for p in self.exclude)

    def wanted(self, rel: str, check: Callable[[Any], bool]) -> bool:
        from qlcapsule import compile_glob

        return all(check(expr) for pattern, expr in self.conditions.items() if compile_glob(pattern).match_file(rel))


def load_spec(files: Files, source: str) -> TemplateSpec:
    import yaml

    raw = files.get(SPEC_FILE)
    if raw is None:
        raise InputError(f"template {source}: no {SPEC_FILE}")
    where = f"template {source}: {SPEC_FILE}"
    try:
        data = yaml.safe_load(raw[0].decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise InputError(f"{where}{f':{mark.line + 1}' if mark else ''}: invalid YAML: {exc.problem}") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping")
    questions = data.get("questions") or {}
    if not isinstance(questions, dict):
        raise InputError(f"{where}: questions: expected a mapping of name -> question")
    items = []
    for name, q in questions.items():
        if not _NAME.match(str(name)):
            raise InputError(f"{where}: questions.{name}: not a valid identifier")
        items.append({**(q or {}), "name": str(name)} if isinstance(q, dict) else {"name": str(name), "default": q})
    if isinstance(data.get("version"), (int, float)):
        data["version"] = str(data["version"])  # 'version: 1' is a YAML number
    try:
        spec = TemplateSpec.model_validate({**data, "questions": items})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        if loc[:1] == ["questions"] and len(loc) > 1 and isinstance(loc[1], int):
            loc[1] = items[loc[1]]["name"]
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise InputError(f"{where}: {'.'.join(str(p) for p in loc)}: {msg}") from None
    for q in spec.questions:
        if q.default is not None and not (isinstance(q.default, str) and "{" in q.default):
            coerce(q, q.default, f"{where}: questions.{q.name}.default")
    return spec


def coerce(q: Question, value: Any, what: str) -> Any:
    """``value`` as the question's type, checked against its choices and regex."""
    try:
        if q.type == "bool":
            if isinstance(value, bool):
                out: Any = value
            elif str(value).strip().lower() in _TRUE:
                out = True
            elif str(value).strip().lower() in _FALSE:
                out = False
            else:
                raise ValueError("expected true or false")
        elif q.type == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected an integer")
            out = int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
        elif q.type == "float":
            if isinstance(value, bool):
                raise ValueError("expected a number")
            out = float(value)
        else:
            if isinstance(value, (dict, list)):
                raise ValueError("expected a string")
            out = str(value)
    except ValueError as exc:
        reason = str(exc) if "expected" in str(exc) else f"expected {q.type}"
        raise InputError(f"{what}: {value!r}: {reason}") from None
    if q.choices and out not in [coerce(q.model_copy(update={"choices": []}), c, what) for c in q.choices]:
        raise InputError(f"{what}: {out!r} is not one of {', '.join(str(c) for c in q.choices)}")
    if q.regex and not re.fullmatch(q.regex, str(out)):
        raise InputError(f"{what}: {out!r} does not match {q.regex!r}" + (f" ({q.help})" if q.help else ""))
    return out
