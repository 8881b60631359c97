"""The integrity validator: files against capsule.lock (warnings; verify is the hard check)."""

from __future__ import annotations

from vcase import findings, report

from qlcapsule.steps.validation import validate_one


def test_sealed_and_untouched_is_clean(tmp_path):
    assert findings(tmp_path, {"a.txt": "a\n"}, "integrity") == []


def test_unsealed_is_a_note(tmp_path):
    (f,) = findings(tmp_path, {"a.txt": "a\n"}, "integrity", seal=False)
    assert (f.rule, f.severity.value) == ("integrity.unsealed", "note")


def test_changes_since_the_seal_are_warnings_naming_the_file(tmp_path):
    report(tmp_path, {"a.txt": "a\n", "b.txt": "b\n"})
    (tmp_path / "a.txt").write_text("changed\n")
    (tmp_path / "b.txt").unlink()
    (tmp_path / "c.txt").write_text("new\n")
    found = [f for f in validate_one(tmp_path).findings if f.validator == "integrity"]
    assert {(f.path, f.message.split(" since")[0]) for f in found} == {
        ("a.txt", "modified"),
        ("b.txt", "removed"),
        ("c.txt", "added"),
    }
    assert {f.severity.value for f in found} == {"warning"}
