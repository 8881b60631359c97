"""The schema validator: an unloadable capsule.yaml, unknown rule switches, soft notes."""

from __future__ import annotations

from vcase import findings

from qlcapsule.steps.validation import validate_one


def test_invalid_definition_is_a_finding_with_line(tmp_path):
    (tmp_path / "capsule.yaml").write_text("name: demo\nversion: one\n")
    rep = validate_one(tmp_path)
    (f,) = rep.findings
    assert (f.rule, f.path, f.line) == ("schema.invalid", "capsule.yaml", 2)
    assert "SemVer" in f.message
    assert rep.score == 0.0 and rep.failed


def test_notes_for_missing_description_and_license(tmp_path):
    found = findings(tmp_path, {}, "schema", definition="name: demo\nversion: 1.0.0\n")
    assert sorted(f.rule for f in found) == ["schema.description", "schema.license"]
    assert all(f.severity.value == "note" for f in found)


def test_unknown_rule_switch_is_a_warning(tmp_path):
    definition = "name: demo\nversion: 1.0.0\ndescription: d\nlicense: MIT\nvalidate:\n  rules:\n    pyhton: false\n"
    (f,) = findings(tmp_path, {}, "schema", definition=definition)
    assert f.rule == "schema.unknown-rule" and "pyhton" in f.message


def test_exports_name_installed_exporters_with_options_they_accept(tmp_path):
    """A typo in exports (zpi) was ignored everywhere; a bad value surfaced only when that format was exported."""
    definition = (
        "name: demo\nversion: 1.0.0\ndescription: d\nlicense: MIT\n"
        "exports:\n  zpi:\n    level: 9\n  helm:\n    port: 99999\n  zip:\n    level: 9\n"
    )
    found = {f.rule: f for f in findings(tmp_path, {}, "schema", definition=definition)}
    assert set(found) == {"schema.unknown-exporter", "schema.export-options"}
    assert found["schema.unknown-exporter"].message.startswith("exports.zpi: no installed exporter is named 'zpi'")
    assert found["schema.export-options"].severity.value == "error"
    assert "exports.helm: port: Input should be less than or equal to 65535" in found["schema.export-options"].message
