"""The ``github-workflow`` and ``github-action`` validators: GitHub Actions workflows and action metadata.

Both check their files against the SchemaStore schemas (``github-workflows``,
``github-actions``) that check-jsonschema vendors, evaluated by ``jsonschema``
(``_jsonschema``); both packages are dependencies, so a default install checks
fully, and a broken install says so (``github-workflow.engine-missing``).
The workflow validator adds what a schema cannot say: a job that ``needs`` a
job that does not exist.

Workflow security (template injection, permissions, unpinned actions...) is the
``zizmor`` validator's; YAML syntax errors are the ``yaml`` validator's
findings, and these skip a file they cannot parse.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Iterable, Sequence

from qlcapsule import Capsule, Engine, Finding, Register, Rule, Severity, Validator, hookimpl

from . import _jsonschema
from ._yaml import compose_all, key_node, position, to_data

WORKFLOW_SYNTAX = "https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-syntax"
ACTION_SYNTAX = "https://docs.github.com/en/actions/reference/workflows-and-actions/metadata-syntax"


@lru_cache(maxsize=1)
def _engine() -> Engine:
    return _jsonschema.engine()


def workflow_schema() -> dict[str, Any] | None:
    """The vendored SchemaStore workflow schema, or None when check-jsonschema is not installed."""
    return _jsonschema.schema("github-workflows")


class _SchemaValidator(Validator):
    """A YAML file checked against one vendored SchemaStore schema, reported under ``<name>.schema``."""

    schema_name: ClassVar[str] = ""
    help_uri: ClassVar[str] = ""
    what: ClassVar[str] = "file"

    def engines(self) -> Sequence[Engine]:
        return (_engine(),)

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
        yield from _jsonschema.findings(rule, self.schema_name, root, doc, path, self.help_uri)
        yield from self.more(root, doc, path)

    def more(self, root: Any, doc: Any, path: str) -> Iterable[Finding]:
        return ()


class WorkflowValidator(_SchemaValidator):
    name = "github-workflow"
    description = "GitHub Actions workflows: the SchemaStore workflow schema (jsonschema), and needs naming real jobs"
    patterns = (".github/workflows/*.yml", ".github/workflows/*.yaml")
    schema_name = "github-workflows"
    help_uri = WORKFLOW_SYNTAX
    what = "workflow file"
    rules = (
        Rule(
            "github-workflow.schema",
            "the workflow does not match the SchemaStore GitHub workflow schema",
            help_uri=WORKFLOW_SYNTAX,
        ),
        Rule(
            "github-workflow.needs",
            "a job needs a job that does not exist",
            help_uri=WORKFLOW_SYNTAX + "#jobsjob_idneeds",
        ),
        Rule("github-workflow.engine-missing", "the schema engine is not installed", Severity.WARNING),
    )

    def more(self, root: Any, doc: Any, path: str) -> Iterable[Finding]:
        jobs = doc.get("jobs") if isinstance(doc, dict) else None
        if not isinstance(jobs, dict):
            return
        for job_id, job in jobs.items():
            needs = job.get("needs", []) if isinstance(job, dict) else []
            for need in [needs] if isinstance(needs, str) else needs if isinstance(needs, list) else []:
                if isinstance(need, str) and need not in jobs:
                    line, column = position(key_node(root, ("jobs", job_id, "needs")))
                    message = f"job {job_id!r} needs unknown job {need!r}"
                    yield Finding("github-workflow.needs", Severity.ERROR, message, path, line, column)


class ActionValidator(_SchemaValidator):
    name = "github-action"
    description = "GitHub Action metadata (action.yml): the SchemaStore action schema (jsonschema)"
    patterns = ("action.yml", "action.yaml")
    schema_name = "github-actions"
    help_uri = ACTION_SYNTAX
    what = "action metadata file"
    rules = (
        Rule(
            "github-action.schema",
            "action.yml does not match the SchemaStore GitHub action schema",
            help_uri=ACTION_SYNTAX,
        ),
        Rule("github-action.engine-missing", "the schema engine is not installed", Severity.WARNING),
    )


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(WorkflowValidator)
    register(ActionValidator)
