"""The ``github-workflow`` validator: GitHub Actions workflow files.

Two layers:

- a structural check that always runs: ``on`` and ``jobs`` present, each job
  with ``runs-on`` and a non-empty ``steps`` list (or ``uses`` for a reusable
  workflow), each step with exactly one of ``uses``/``run``, ``needs`` naming
  jobs that exist;
- the SchemaStore ``github-workflow`` JSON Schema, when a package ships it
  (``check-jsonschema`` vendors it; install ``qlcapsule[dev]`` or
  ``check-jsonschema``). Without it only the structural check runs, and the
  rule ``github-workflow.schema`` reports nothing.

YAML syntax errors are the ``yaml`` validator's findings; this one skips a
file it cannot parse.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Iterable

from qlcapsule import Capsule, Finding, Register, Rule, Severity, Validator, hookimpl

from ._yaml import compose_all, key_node, node_at, position, to_data

_REQUIRED = re.compile(r"^'([^']+)' is a required property$")
_JOB_ID = re.compile(r"^[_a-zA-Z][a-zA-Z0-9_-]*\Z")


@lru_cache(maxsize=1)
def workflow_schema() -> dict[str, Any] | None:
    """The vendored SchemaStore workflow schema, or None when no package ships it."""
    try:
        spec = find_spec("check_jsonschema")  # locates the package without importing it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "builtin_schemas" / "vendor" / "github-workflows.json"
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


class WorkflowValidator(Validator):
    name = "github-workflow"
    description = "GitHub Actions workflows: on/jobs/runs-on/steps structure, and the SchemaStore schema when available"
    patterns = (".github/workflows/*.yml", ".github/workflows/*.yaml")
    rules = (
        Rule(
            "github-workflow.structure",
            "a workflow lacks on/jobs, a job lacks runs-on or steps, or a step is malformed",
        ),
        Rule("github-workflow.needs", "a job needs a job that does not exist"),
        Rule("github-workflow.schema", "the workflow does not match the GitHub workflow JSON Schema"),
    )

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        docs, error = compose_all(data.decode("utf-8", "replace"))
        if error is not None or not docs:
            if error is None:
                yield Finding("github-workflow.structure", Severity.ERROR, "empty workflow file", path, 1, 1)
            return
        root = docs[0]
        doc = to_data(root)
        found = list(_structure(doc, root, path))
        yield from (f for f, _where in found)
        schema = workflow_schema()
        if schema is None or not isinstance(doc, dict):
            return
        from ._jsonschema import Evaluator  # noqa: PLC0415 -- start-up: the schema evaluator loads only when a workflow file is checked

        covered = [w for _f, w in found]
        seen: set[tuple[int, str]] = set()
        for where, message, at_key in Evaluator(schema).errors(doc):
            required = _REQUIRED.match(message)
            about = where + (required.group(1),) if required else where
            if any(about[: len(c)] == c for c in covered):
                continue  # the structural check already said it, in plainer words
            node = key_node(root, where) if at_key else node_at(root, where)
            line, column = position(node)
            label = ".".join(str(p) for p in where) or "(root)"
            if (line, message) in seen:
                continue
            seen.add((line, message))
            yield Finding("github-workflow.schema", Severity.ERROR, f"{label}: {message}", path, line, column)


def _at(root: Any, path: tuple[Any, ...], key: bool = True) -> tuple[int, int]:
    return position(key_node(root, path) if key else node_at(root, path))


def _structure(doc: Any, root: Any, path: str) -> Iterable[tuple[Finding, tuple[Any, ...]]]:  # noqa: C901 - one check per workflow key (issue 19 replaces it with the schema)
    """Structural findings, each with the document path it is about (to silence schema repeats)."""
    rule = "github-workflow.structure"

    def bad(
        where: tuple[Any, ...], message: str, *, key: bool = True, rule: str = rule
    ) -> tuple[Finding, tuple[Any, ...]]:
        return Finding(rule, Severity.ERROR, message, path, *_at(root, where, key)), where

    if not isinstance(doc, dict):
        yield bad((), "a workflow must be a mapping", key=False)
        return
    if "on" not in doc:
        yield Finding(rule, Severity.ERROR, "missing 'on' (the events that trigger the workflow)", path, 1, 1), ("on",)
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        where = _at(root, ("jobs",)) if "jobs" in doc else (1, 1)
        yield (
            Finding(rule, Severity.ERROR, "'jobs' must be a non-empty mapping of job ids to jobs", path, *where),
            ("jobs",),
        )
        return
    for job_id, job in jobs.items():
        jp: tuple[Any, ...] = ("jobs", job_id)
        if not _JOB_ID.match(str(job_id)):
            yield bad(jp, f"job id {job_id!r} must start with a letter or '_' and hold only [A-Za-z0-9_-]")
        if not isinstance(job, dict):
            yield bad(jp, f"job {job_id!r} must be a mapping")
            continue
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs if isinstance(needs, list) else []:
            if need not in jobs:
                yield bad(jp + ("needs",), f"job {job_id!r} needs unknown job {need!r}", rule="github-workflow.needs")
        if "uses" in job:
            continue  # a reusable-workflow call: no runs-on, no steps
        if "runs-on" not in job:
            yield bad(jp, f"job {job_id!r} has no 'runs-on'")
        steps = job.get("steps")
        if not isinstance(steps, list) or not steps:
            yield bad(jp + ("steps",) if "steps" in job else jp, f"job {job_id!r} needs a non-empty 'steps' list")
            continue
        for i, step in enumerate(steps):
            sp = jp + ("steps", i)
            if not isinstance(step, dict):
                yield bad(sp, f"step {i + 1} of job {job_id!r} must be a mapping", key=False)
            elif ("uses" in step) == ("run" in step):
                yield bad(sp, f"step {i + 1} of job {job_id!r} needs exactly one of 'uses' or 'run'", key=False)


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(WorkflowValidator)
