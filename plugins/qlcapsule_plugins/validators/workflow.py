"""The ``github-workflow``, ``github-action`` and ``dependabot`` validators: GitHub's YAML files.

Each checks its files against the SchemaStore schema (``github-workflows``,
``github-actions``, ``dependabot``) that check-jsonschema vendors, evaluated by ``jsonschema``
(``_jsonschema``); both packages are dependencies, so a default install checks
fully, and a broken install says so (``github-workflow.engine-missing``).
The workflow validator adds what a schema cannot say: a job that ``needs`` a
job that does not exist.

Workflow security (template injection, permissions, unpinned actions...) is the
``zizmor`` validator's; YAML syntax errors are the ``yaml`` validator's
findings, and these skip a file they cannot parse.
"""

from __future__ import annotations

from typing import Any, Iterable

from qlcapsule import Finding, Register, Rule, Severity, hookimpl

from . import _jsonschema
from ._jsonschema import SchemaValidator
from ._yaml import key_node, position

WORKFLOW_SYNTAX = "https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-syntax"
ACTION_SYNTAX = "https://docs.github.com/en/actions/reference/workflows-and-actions/metadata-syntax"


def workflow_schema() -> dict[str, Any] | None:
    """The vendored SchemaStore workflow schema, or None when check-jsonschema is not installed."""
    return _jsonschema.schema("github-workflows")


class WorkflowValidator(SchemaValidator):
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


class ActionValidator(SchemaValidator):
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


DEPENDABOT = "https://docs.github.com/en/code-security/dependabot/working-with-dependabot/dependabot-options-reference"


class DependabotValidator(SchemaValidator):
    name = "dependabot"
    description = "Dependabot configuration (.github/dependabot.yml): the SchemaStore dependabot schema (jsonschema)"
    patterns = (".github/dependabot.yml", ".github/dependabot.yaml")
    schema_name = "dependabot"
    help_uri = DEPENDABOT
    what = "dependabot file"
    rules = (
        Rule(
            "dependabot.schema", "dependabot.yml does not match the SchemaStore dependabot schema", help_uri=DEPENDABOT
        ),
        Rule("dependabot.engine-missing", "the schema engine is not installed", Severity.WARNING),
    )


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(WorkflowValidator)
    register(ActionValidator)
    register(DependabotValidator)
