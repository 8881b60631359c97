"""The helm validator (Chart.yaml checks). Named test_helmchart to differ from the helm exporter's tests."""

from __future__ import annotations

from vcase import findings


def test_good_chart(tmp_path):
    chart = "apiVersion: v2\nname: web\nversion: 1.2.3\ntype: application\ndependencies:\n  - name: redis\n    version: 18.0.0\n"
    assert findings(tmp_path, {"chart/Chart.yaml": chart}, "helm") == []


def test_bad_chart_fields(tmp_path):
    chart = "apiVersion: v3\nname: Web_App\nversion: one\ntype: service\ndependencies:\n  - name: redis\n"
    found = findings(tmp_path, {"Chart.yaml": chart}, "helm")
    assert [(f.rule, f.line) for f in found] == [
        ("helm.chart", 1),
        ("helm.chart", 2),
        ("helm.chart", 3),
        ("helm.chart", 4),
        ("helm.dependency", 6),
    ]


def test_missing_required_fields(tmp_path):
    found = findings(tmp_path, {"Chart.yaml": "description: x\n"}, "helm")
    assert sorted(f.message for f in found) == [
        "missing required field 'apiVersion'",
        "missing required field 'name'",
        "missing required field 'version'",
    ]
