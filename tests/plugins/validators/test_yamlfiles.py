"""The yaml validator: parse errors with line, duplicate keys, custom tags tolerated."""

from __future__ import annotations

from vcase import findings, rules


def test_valid_yaml_and_gitlab_reference_tags(tmp_path):
    ci = ".setup:\n  script: [echo hi]\njob:\n  script:\n    - !reference [.setup, script]\n  cf: !Ref Bucket\n"
    assert findings(tmp_path, {".gitlab-ci.yml": ci, "multi.yaml": "a: 1\n---\nb: 2\n"}, "yaml") == []


def test_syntax_error_has_line(tmp_path):
    (f,) = findings(tmp_path, {"conf/app.yaml": "a: 1\nb: [1, 2\nc: 3\n"}, "yaml")
    assert f.rule == "yaml.syntax" and f.path == "conf/app.yaml"
    assert f.line == 3 and f.column


def test_duplicate_keys_at_any_depth(tmp_path):
    found = findings(tmp_path, {"x.yml": "a: 1\nb:\n  c: 1\n  c: 2\na: 3\n"}, "yaml")
    assert rules(found) == ["yaml.duplicate-key", "yaml.duplicate-key"]
    assert sorted(f.line for f in found) == [4, 5]
    assert any("first at line 1" in f.message for f in found)


def test_helm_templates_are_skipped(tmp_path):
    files = {
        "chart/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 1.0.0\n",
        "chart/templates/deploy.yaml": "metadata:\n  name: {{ .Release.Name }}\n{{- if .Values.x }}\n",
    }
    assert findings(tmp_path, files, "yaml") == []


def test_not_utf8(tmp_path):
    assert rules(findings(tmp_path, {"a.yaml": b"a: \xff\n"}, "yaml")) == ["yaml.encoding"]
