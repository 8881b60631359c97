"""The github-workflow validator: structure always, the SchemaStore schema when installed."""

from __future__ import annotations

import pytest
from vcase import findings, rules

from qlcapsule_plugins.validators._jsonschema import Evaluator
from qlcapsule_plugins.validators._yaml import compose_all, to_data
from qlcapsule_plugins.validators.workflow import workflow_schema

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
NO_SCHEMA = "check-jsonschema (which vendors the GitHub workflow schema) is not installed"


def test_good_workflow(tmp_path):
    assert findings(tmp_path, {WF: GOOD}, "github-workflow") == []


def test_missing_runs_on_and_bad_step(tmp_path):
    wf = "on: push\njobs:\n  build:\n    steps:\n      - name: nothing to do\n"
    found = findings(tmp_path, {WF: wf}, "github-workflow")
    assert rules(found) == ["github-workflow.structure", "github-workflow.structure"]
    assert [(f.path, f.line) for f in found] == [(WF, 3), (WF, 5)]
    assert "runs-on" in found[0].message and "exactly one of 'uses' or 'run'" in found[1].message


def test_missing_on_and_jobs(tmp_path):
    found = findings(tmp_path, {WF: "name: x\n"}, "github-workflow")
    assert found[0].message.startswith("missing 'on'")
    assert "'jobs'" in found[1].message


def test_unknown_needs(tmp_path):
    wf = "on: push\njobs:\n  a:\n    runs-on: x\n    needs: b\n    steps: [{run: echo}]\n"
    (f,) = findings(tmp_path, {WF: wf}, "github-workflow")
    assert f.rule == "github-workflow.needs" and f.line == 5


@pytest.mark.skipif(workflow_schema() is None, reason=NO_SCHEMA)
def test_schema_catches_what_structure_does_not(tmp_path):
    wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    timeout-minutes: soon\n    stepz: []\n    steps: [{run: echo}]\n"
    found = findings(tmp_path, {WF: wf}, "github-workflow")
    assert set(rules(found)) == {"github-workflow.schema"}
    assert {f.line for f in found} == {5, 6}
    assert any("stepz" in f.message for f in found)


@pytest.mark.skipif(workflow_schema() is None, reason=NO_SCHEMA)
@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: echo}]\n    timeout-minutes: soon\n",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{uses: a/b@v1, run: x}]\n",
        "on: [push, nope]\njobs:\n  a:\n    runs-on: x\n    steps: [{run: echo}]\n",
        "on: push\npermissions: {contents: maybe}\njobs:\n  a:\n    runs-on: x\n    steps: [{run: echo}]\n",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps: []\n",
    ],
)
def test_evaluator_agrees_with_jsonschema(text):
    """Our small evaluator gives the same verdict as the jsonschema package on the same schema."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    schema = workflow_schema()
    (node,), err = compose_all(text)
    assert err is None
    doc = to_data(node)
    ours = Evaluator(schema).errors(doc)
    theirs = list(jsonschema.Draft7Validator(schema).iter_errors(doc))
    assert bool(ours) == bool(theirs)


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


@pytest.mark.skipif(workflow_schema() is None, reason=NO_SCHEMA)
def test_strategy_without_matrix_is_one_error_from_the_matching_branch(tmp_path):
    """Not four errors, two telling a normal job to drop runs-on and steps (the reusable-workflow branch)."""
    found = findings(tmp_path, {WF: REQUESTS_STYLE}, "github-workflow")
    assert [(f.rule, f.line, f.message) for f in found] == [
        ("github-workflow.schema", 10, "jobs.build.strategy: 'matrix' is a required property")
    ]


@pytest.mark.skipif(workflow_schema() is None, reason=NO_SCHEMA)
def test_a_reusable_workflow_call_is_judged_as_one(tmp_path):
    wf = "on: push\njobs:\n  call:\n    uses: org/repo/.github/workflows/r.yml@v1\n    withh: {a: 1}\n"
    found = findings(tmp_path, {WF: wf}, "github-workflow")
    assert [f.message for f in found] == ["jobs.call.withh: unexpected key 'withh'"]
