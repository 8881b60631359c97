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
from pydantic_core import SchemaError, SchemaValidator, core_schema
from pydantic_core import ValidationError as CoreValidationError

from qlcapsule import InputError, compile_glob, yamlsrc

from ._limits import RenderTimeout, short
from ._source import SPEC_FILE, Files

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_MATCHERS: dict[str, Callable[[str], bool] | None] = {}


def fullmatch(pattern: str, text: str) -> bool:
    """Whether all of ``text`` matches a question's ``regex``.

    pydantic-core's Rust engine (already a dependency) matches in linear time, so a pattern
    like ``^(a+)+$`` cannot backtrack without end, in any thread and on any platform. The few
    patterns it cannot compile (lookarounds, backreferences, ``\\Z``) go to Python's ``re``,
    interrupted by the generator's clock (RenderTimeout) when it runs away.
    """
    if pattern not in _MATCHERS:
        if len(_MATCHERS) > 256:
            _MATCHERS.clear()
        _MATCHERS[pattern] = _linear(pattern)
    matcher = _MATCHERS[pattern]
    return matcher(text) if matcher is not None else re.fullmatch(pattern, text) is not None


def _linear(pattern: str) -> Callable[[str], bool] | None:
    try:  # "$" is the end of the text in this engine, so the wrapper asks for a full match
        check = SchemaValidator(core_schema.str_schema(pattern=f"^(?:{pattern})$", regex_engine="rust-regex"))
    except SchemaError:
        return None

    def matches(text: str) -> bool:
        try:
            check.validate_python(text)
        except CoreValidationError:
            return False
        return True

    return matches


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
    min: float | None = None
    max: float | None = None
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
        """The default, rendered when it holds ``{{ }}`` (callers turn template errors into one line)."""
        if isinstance(self.default, str) and ("{{" in self.default or "{%" in self.default):
            return env.from_string(self.default).render(ctx)
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
        return any(compile_glob(p).match_file(rel) for p in self.exclude)

    def wanted(self, rel: str, check: Callable[[Any, str], bool]) -> bool:
        return all(
            check(expr, pattern) for pattern, expr in self.conditions.items() if compile_glob(pattern).match_file(rel)
        )


def load_spec(files: Files, source: str) -> TemplateSpec:  # noqa: C901 - one check per template.yaml field
    raw = files.get(SPEC_FILE)
    if raw is None:
        raise InputError(f"template {source}: no {SPEC_FILE}")
    where = f"template {source}: {SPEC_FILE}"
    try:
        text = raw[0].decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8") from None
    data = yamlsrc.safe_load(text, where)  # one line with the line number; duplicate keys and alias bombs refused
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
    version = data.get("version")
    if isinstance(version, float):  # 'version: 1.10' is the number 1.1
        raise InputError(f'{where}: version: {version!r} is read as a number; quote it (version: "{version}")')
    if isinstance(version, int) and not isinstance(version, bool):
        data["version"] = str(version)  # 'version: 1' is exactly 1
    for key in ("id", "version"):
        value = data.get(key)
        if isinstance(value, str) and not (0 < len(value) <= 200 and value.isprintable() and value == value.strip()):
            raise InputError(
                f"{where}: {key}: {short(value)} must be one line of printable characters (at most 200, no spaces at the ends)"
            )
    globs = [
        (f"exclude[{i}]", p)
        for i, p in enumerate(data.get("exclude") or [] if isinstance(data.get("exclude"), list) else [])
    ]
    conditions = data.get("conditions")
    globs += [(f"conditions[{p!r}]", p) for p in (conditions if isinstance(conditions, dict) else {})]
    for field, pattern in globs:
        _check_glob(where, field, pattern)
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
        if (q.min is not None or q.max is not None) and q.type not in ("int", "float"):
            raise InputError(f"{where}: questions.{q.name}: min and max are for int and float questions")
        if q.default is not None and not (isinstance(q.default, str) and "{" in q.default):
            coerce(q, q.default, f"{where}: questions.{q.name}.default")
    return spec


def _check_glob(where: str, field: str, pattern: Any) -> None:
    if not isinstance(pattern, str):
        raise InputError(f"{where}: {field}: expected a glob string")
    try:
        compile_glob(pattern)
    except Exception as exc:  # noqa: BLE001 - whatever the glob compiler refuses, say it in one line
        raise InputError(f"{where}: {field}: bad glob {short(pattern)}: {exc}") from None


def coerce(q: Question, value: Any, what: str) -> Any:  # noqa: C901 - one branch per question type
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
    except (ValueError, OverflowError) as exc:
        reason = str(exc) if "expected" in str(exc) else f"expected {q.type}"
        raise InputError(f"{what}: {short(value)}: {reason}") from None
    if q.choices and out not in [coerce(q.model_copy(update={"choices": []}), c, what) for c in q.choices]:
        raise InputError(f"{what}: {short(out)} is not one of {', '.join(str(c) for c in q.choices)}")
    if (q.min is not None or q.max is not None) and (
        out != out or (q.min is not None and out < q.min) or (q.max is not None and out > q.max)  # out != out: NaN
    ):
        bounds = f"{_num(q.min) if q.min is not None else '…'}..{_num(q.max) if q.max is not None else '…'}"
        raise InputError(f"{what}: {short(out)} is not in {bounds}" + (f" ({q.help})" if q.help else ""))
    if q.regex:
        try:
            matched = fullmatch(q.regex, str(out))
        except RenderTimeout as exc:  # catastrophic backtracking, interrupted by the generator's clock
            raise InputError(
                f"{what}: matching {short(out)} against {short(q.regex)} takes longer than {exc.seconds:g} s "
                "(nested repeats like (a+)+ backtrack without end)"
            ) from None
        if not matched:
            raise InputError(
                f"{what}: {short(out)} does not match {short(q.regex, 200)}" + (f" ({q.help})" if q.help else "")
            )
    return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
