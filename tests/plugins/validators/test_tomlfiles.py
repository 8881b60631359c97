"""The toml validator."""

from __future__ import annotations

from vcase import findings


def test_valid_toml(tmp_path):
    assert findings(tmp_path, {"pyproject.toml": '[project]\nname = "x"\n'}, "toml") == []


def test_syntax_error_has_line(tmp_path):
    (f,) = findings(tmp_path, {"pyproject.toml": '[project]\nname = "x"\nversion = \n'}, "toml")
    assert f.rule == "toml.syntax" and f.line == 3 and f.column
    assert "line" not in f.message  # the position is in the fields, not repeated in the text


def test_nesting_past_the_recursion_limit_is_a_finding(tmp_path):
    (f,) = findings(tmp_path, {"a.toml": "a = " + "[" * 1000 + "]" * 1000 + "\n"}, "toml")
    assert (f.rule, f.message) == ("toml.syntax", "invalid TOML: nested too deeply")


def test_an_error_at_the_end_of_the_document_is_on_the_last_line(tmp_path):
    (f,) = findings(tmp_path, {"a.toml": "a = 1\nb = [\n"}, "toml")
    assert (f.rule, f.line, f.column) == ("toml.syntax", 2, 6) and "end of document" in f.message
    (f,) = findings(tmp_path / "b", {"a.toml": "a = 1\n\n[t"}, "toml")
    assert f.line == 3


def test_an_integer_of_thousands_of_digits_is_one_syntax_finding(tmp_path):
    """TOML integers are 64-bit; tomllib's int() of 5,000 digits raised a bare ValueError ('toml.failed')."""
    (f,) = findings(tmp_path, {"a.toml": "a = " + "9" * 5000 + "\n"}, "toml")
    assert (f.rule, f.message) == ("toml.syntax", "invalid TOML: an integer too long to read")
