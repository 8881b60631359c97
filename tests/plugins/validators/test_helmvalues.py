"""The helm-values validator: a chart's values.yaml against its own values.schema.json, bounded in time."""

from __future__ import annotations

import json

from vcase import findings

from qlcapsule_plugins.validators import helmvalues

CHART = "apiVersion: v2\nname: web\nversion: 1.0.0\n"
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["image"],
    "properties": {
        "replicaCount": {"type": "integer", "minimum": 1},
        "image": {
            "type": "object",
            "properties": {"tag": {"type": "string", "pattern": "^[0-9]+\\.[0-9]+$"}},
            "additionalProperties": False,
        },
    },
}


def _chart(values: str, schema: object = SCHEMA) -> dict[str, str]:
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return {"chart/Chart.yaml": CHART, "chart/values.yaml": values, "chart/values.schema.json": text}


def test_values_that_match_have_no_findings(tmp_path):
    values = "replicaCount: 2\nimage:\n  tag: '1.27'\n"
    assert findings(tmp_path, _chart(values), "helm-values") == []


def test_each_error_on_its_line_in_values_yaml(tmp_path):
    values = "replicaCount: 0\nimage:\n  tag: latest\n  pullPolicy: Always\n"
    found = findings(tmp_path, _chart(values), "helm-values")
    assert [(f.rule, f.path, f.line, f.column) for f in found] == [
        ("helm-values.schema", "chart/values.yaml", 1, 15),
        ("helm-values.schema", "chart/values.yaml", 3, 8),
        ("helm-values.schema", "chart/values.yaml", 4, 3),
    ]
    assert "less than the minimum of 1" in found[0].message and "unexpected key 'pullPolicy'" in found[2].message


def test_a_catastrophic_pattern_is_stopped(tmp_path, monkeypatch):
    """``^(a+)+$`` on 40 a's and a '!' backtracks for hours in ``re``: the child is killed at the limit."""
    monkeypatch.setattr(helmvalues, "TIMEOUT", 2.0)
    redos = {"properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}}
    found = findings(tmp_path, _chart(f"name: {'a' * 40}!\n", redos), "helm-values")
    assert [(f.rule, f.path) for f in found] == [("helm-values.timeout", "chart/values.yaml")]
    assert "more than 2 s" in found[0].message


def test_a_broken_schema_or_a_remote_ref_is_one_finding(tmp_path):
    (bad,) = findings(tmp_path / "a", _chart("a: 1\n", "{not json"), "helm-values")
    assert (bad.rule, bad.path) == ("helm-values.invalid-schema", "chart/values.schema.json")
    (wrong,) = findings(tmp_path / "b", _chart("a: 1\n", {"type": 12}), "helm-values")
    assert wrong.rule == "helm-values.invalid-schema" and "not a valid JSON Schema" in wrong.message
    remote = {"properties": {"a": {"$ref": "https://example.invalid/s.json"}}}
    (ref,) = findings(tmp_path / "c", _chart("a: 1\n", remote), "helm-values")
    assert ref.rule == "helm-values.invalid-schema" and "not fetched" in ref.message


def test_values_without_a_chart_or_a_schema_are_not_checked(tmp_path):
    files = {"values.yaml": "a: 1\n", "chart/Chart.yaml": CHART, "chart/values.yaml": "a: 1\n"}
    assert findings(tmp_path, files, "helm-values") == []
