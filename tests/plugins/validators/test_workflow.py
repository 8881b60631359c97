"""The github-workflow and github-action validators: SchemaStore schemas evaluated by jsonschema."""

from __future__ import annotations

import pytest
from vcase import findings

from qlcapsule_plugins.validators.workflow import WORKFLOW_SYNTAX, WorkflowValidator, workflow_schema

GOOD = """name: ci
on:
  push:
    branches: [main]
  workflow_dispatch:
jobs:
  test:
    runs-on: ${{ matrix.os }}
    strategy:
      matrix:
        os: [ubuntu-latest, macos-latest]
    steps:
      - uses: actions/checkout@v4
      - run: pytest -q
        env:
          X: ${{ secrets.X }}
  call:
    needs: [test]
    uses: org/repo/.github/workflows/reuse.yml@v1
"""
WF = ".github/workflows/ci.yml"


def _wf(tmp_path, text):
    return [(f.rule, f.line, f.message) for f in findings(tmp_path, {WF: text}, "github-workflow")]


def test_the_schema_ships_with_a_default_install():
    """check-jsonschema and jsonschema are dependencies: the schema is there, the engine present."""
    assert workflow_schema() is not None
    (engine,) = WorkflowValidator().engines()
    assert engine.present and "check-jsonschema" in (engine.version or "")


def test_good_workflow(tmp_path):
    assert findings(tmp_path, {WF: GOOD}, "github-workflow") == []


def test_missing_runs_on_and_a_step_with_neither_uses_nor_run(tmp_path):
    found = _wf(tmp_path, "on: push\njobs:\n  build:\n    steps:\n      - name: nothing to do\n")
    assert [(r, n) for r, n, _m in found] == [("github-workflow.schema", 3), ("github-workflow.schema", 5)]
    assert found[0][2] == "jobs.build: 'runs-on' is a required property"
    assert found[1][2].startswith("jobs.build.steps.0: needs one of 'uses', 'run'")


def test_missing_on_and_jobs(tmp_path):
    found = _wf(tmp_path, "name: x\n")
    assert found == [
        ("github-workflow.schema", 1, "(root): 'on' is a required property"),
        ("github-workflow.schema", 1, "(root): 'jobs' is a required property"),
    ]


def test_an_empty_file(tmp_path):
    assert _wf(tmp_path, "# nothing\n") == [("github-workflow.schema", 1, "empty workflow file")]


def test_unknown_needs(tmp_path):
    wf = "on: push\njobs:\n  a:\n    runs-on: x\n    needs: b\n    steps: [{run: echo}]\n"
    (f,) = findings(tmp_path, {WF: wf}, "github-workflow")
    assert f.rule == "github-workflow.needs" and f.line == 5


JOB = "jobs:\n  a:\n    runs-on: x\n    steps: [{run: echo}]\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # the cases the issue found missed: empty on, permission scopes and values, empty job permissions
        ("on:\n" + JOB, 1, "on: None is not of type string, array, object"),
        ("on: push\npermissions: {contents: maybe}\n" + JOB, 2, "permissions.contents: 'maybe' is not one of"),
        ("on: push\npermissions: write-all2\n" + JOB, 2, "permissions: 'write-all2' is not one of"),
        ("on: push\npermissions: {secrets: read}\n" + JOB, 2, "permissions.secrets: unexpected key 'secrets'"),
        ("on: push\n" + JOB + "    permissions:\n", 6, "jobs.a.permissions: None is not of type string, object"),
        ("on: [push, nope]\n" + JOB, 1, "on.1: 'nope' is not one of"),
        ("on: push\n" + JOB + "    timeout-minutes: soon\n", 6, "jobs.a.timeout-minutes: 'soon' does not match"),
        ("on: push\njobs:\n  a:\n    runs-on: x\n    steps: []\n", 5, "jobs.a.steps: [] should be non-empty"),
        ("on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{uses: a/b@v1, run: x}]\n", 5, "matches more than one"),
        ("on: push\njobs:\n  1bad:\n    runs-on: x\n    steps: [{run: x}]\n", 3, "jobs.1bad: unexpected key '1bad'"),
    ],
)
def test_schema_errors_on_the_line_they_are_about(tmp_path, text, line, message):
    found = _wf(tmp_path, text)
    assert [(r, n) for r, n, _m in found] == [("github-workflow.schema", line)], found
    assert message in found[0][2]


REQUESTS_STYLE = """name: Tests
on: [push, pull_request]
permissions:
  contents: read
jobs:
  build:
    runs-on: ${{ matrix.os }}
    timeout-minutes: 10
    strategy:
      fail-fast: false
    steps:
      - uses: actions/checkout@b4ffde65f46336ab88eb53be808477a3936bae11
      - name: Set up Python
        uses: actions/setup-python@v5
        with:
          python-version: "3.12"
          cache: pip
      - name: Run tests
        run: make ci
"""


def test_strategy_without_matrix_is_one_error_from_the_matching_branch(tmp_path):
    """Not four errors, two telling a normal job to drop runs-on and steps (the reusable-workflow branch)."""
    assert _wf(tmp_path, REQUESTS_STYLE) == [
        ("github-workflow.schema", 9, "jobs.build.strategy: 'matrix' is a required property")
    ]


def test_a_reusable_workflow_call_is_judged_as_one(tmp_path):
    wf = "on: push\njobs:\n  call:\n    uses: org/repo/.github/workflows/r.yml@v1\n    withh: {a: 1}\n"
    assert _wf(tmp_path, wf) == [("github-workflow.schema", 5, "jobs.call.withh: unexpected key 'withh'")]


def test_schema_findings_carry_the_keyword_and_help(tmp_path):
    (f,) = findings(tmp_path, {WF: "on: push\npermissions: {contents: maybe}\n" + JOB}, "github-workflow")
    assert f.extra == {"keyword": "enum", "help_uri": WORKFLOW_SYNTAX} and f.column == 25


def test_a_file_the_yaml_validator_rejects_is_left_to_it(tmp_path):
    assert findings(tmp_path, {WF: "on: [push\n"}, "github-workflow") == []


ACTION = """name: greet
description: says hello
inputs:
  who: {description: whom, required: true}
runs:
  using: composite
  steps:
    - run: echo hi ${{ inputs.who }}
      shell: bash
"""


def test_action_metadata(tmp_path):
    assert findings(tmp_path, {"action.yml": ACTION}, "github-action") == []
    bad = ACTION.replace("description: says hello\n", "").replace("composite", "node99")
    found = [(f.rule, f.line, f.message) for f in findings(tmp_path, {"action.yml": bad}, "github-action")]
    assert found == [
        ("github-action.schema", 1, "(root): 'description' is a required property"),
        ("github-action.schema", 5, "runs.using: 'composite' was expected"),  # it has steps: a composite action
    ]


def test_dependabot(tmp_path):
    good = "version: 2\nupdates:\n  - package-ecosystem: pip\n    directory: /\n    schedule: {interval: weekly}\n"
    assert findings(tmp_path, {".github/dependabot.yml": good}, "dependabot") == []
    bad = good.replace("weekly", "hourly").replace("pip", "pip2")
    found = [(f.rule, f.line) for f in findings(tmp_path / "b", {".github/dependabot.yml": bad}, "dependabot")]
    assert found == [("dependabot.schema", 3), ("dependabot.schema", 5)]
