"""The json validator."""

from __future__ import annotations

from vcase import findings


def test_valid_json(tmp_path):
    assert findings(tmp_path, {"a.json": '{"a": [1, 2, {"b": null}]}\n'}, "json") == []


def test_syntax_error_line_and_column(tmp_path):
    (f,) = findings(tmp_path, {"data/a.json": '{\n  "a": 1,\n  "b": \n}\n'}, "json")
    assert (f.rule, f.path, f.line, f.column) == ("json.syntax", "data/a.json", 4, 1)


def test_duplicate_key_is_a_warning_with_position(tmp_path):
    (f,) = findings(tmp_path, {"a.json": '{"a": 1,\n "a": 2}\n'}, "json")
    assert (f.rule, f.severity.value, f.line, f.column) == ("json.duplicate-key", "warning", 2, 2)


def test_nesting_past_the_recursion_limit_is_a_finding(tmp_path):
    (f,) = findings(tmp_path, {"deep.json": "[" * 100_000 + "]" * 100_000}, "json")
    assert (f.rule, f.message) == ("json.syntax", "invalid JSON: nested too deeply")


def test_a_number_of_thousands_of_digits_is_valid_json(tmp_path):
    """int() refuses past 4,300 digits (a ValueError the runner once turned into 'json.failed'); JSON does not."""
    assert findings(tmp_path, {"big.json": '{"n": ' + "9" * 5000 + ', "m": [' + "1" * 10_000 + "]}\n"}, "json") == []
