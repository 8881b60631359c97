"""The toml validator."""

from __future__ import annotations

from vcase import findings


def test_valid_toml(tmp_path):
    assert findings(tmp_path, {"pyproject.toml": '[project]\nname = "x"\n'}, "toml") == []


def test_syntax_error_has_line(tmp_path):
    (f,) = findings(tmp_path, {"pyproject.toml": '[project]\nname = "x"\nversion = \n'}, "toml")
    assert f.rule == "toml.syntax" and f.line == 3 and f.column
    assert "line" not in f.message  # the position is in the fields, not repeated in the text
