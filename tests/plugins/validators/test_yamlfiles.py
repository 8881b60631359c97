"""The yaml validator: parse errors with line, duplicate keys, custom tags tolerated."""

from __future__ import annotations

from vcase import findings, rules

from qlcapsule.testing import alias_bomb


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


def test_an_alias_bomb_or_a_self_referring_alias_is_one_finding_not_a_hang(tmp_path):
    """Nine lines that expand to 10^9 nodes once took 30 s and 1.4 GB; they are measured, not expanded."""
    files = {
        "bomb.yaml": alias_bomb(8),
        "loop.yaml": "a: &a [*a]\n",
        "fine.yaml": alias_bomb(3),  # 1,111 lists: aliases are fine in moderation
        ".github/workflows/ci.yml": "on: push\n" + alias_bomb(8) + "jobs:\n  b:\n    runs-on: x\n    steps: *a8\n",
    }
    found = {f.path: f for f in findings(tmp_path, files, "yaml")}
    assert set(found) == {"bomb.yaml", "loop.yaml", ".github/workflows/ci.yml"}
    # the same budget and words as capsule.yaml's loader (yamlsrc.alias_excess)
    assert "more than 100000 YAML nodes added by aliases" in found["bomb.yaml"].message and found["bomb.yaml"].line == 1
    assert "an alias refers to itself" in found["loop.yaml"].message


def test_a_large_document_without_aliases_is_no_bomb(tmp_path):
    """150,000 plain list items: many nodes, none added by an alias."""
    big = "items:\n" + "".join(f"- {i}\n" for i in range(150_000))
    assert findings(tmp_path, {"data.yaml": big}, "yaml") == []


def test_an_alias_bomb_in_mapping_keys_is_one_finding(tmp_path):
    """Anchors and aliases only in ``? key`` positions: the budget counts keys as well as values."""
    text = "".join(f"? &k{i} [{', '.join([f'*k{i - 1}'] * 10) if i else 'x'}]\n: {i}\n" for i in range(9))
    (f,) = findings(tmp_path, {"keys.yaml": text}, "yaml")
    assert f.rule == "yaml.syntax" and "more than 100000 YAML nodes added by aliases" in f.message
