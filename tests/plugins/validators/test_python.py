"""The python validator: syntax errors with line and column, compiler-only errors, warnings."""

from __future__ import annotations

from vcase import findings, rules


def test_clean_file_has_no_findings(tmp_path):
    assert findings(tmp_path, {"app.py": "def f(x):\n    return x + 1\n"}, "python") == []


def test_syntax_error_names_line_and_column(tmp_path):
    (f,) = findings(tmp_path, {"pkg/app.py": "x = 1\ndef f(:\n    pass\n"}, "python")
    assert (f.rule, f.path, f.line, f.column) == ("python.syntax", "pkg/app.py", 2, 7)
    assert f.severity.value == "error"
    assert "SyntaxError" in f.message


def test_compile_only_errors_are_found(tmp_path):
    (f,) = findings(tmp_path, {"a.py": "x = 1\nreturn x\n"}, "python")
    assert f.rule == "python.syntax" and f.line == 2
    assert "outside function" in f.message


def test_indentation_error(tmp_path):
    (f,) = findings(tmp_path, {"a.py": "if True:\nprint(1)\n"}, "python")
    assert f.rule == "python.syntax" and f.line == 2 and "IndentationError" in f.message


def test_invalid_escape_is_a_warning(tmp_path):
    (f,) = findings(tmp_path, {"a.py": 'x = "\\d"\n'}, "python")
    assert (f.rule, f.severity.value, f.line) == ("python.warning", "warning", 1)


def test_bad_encoding(tmp_path):
    found = findings(tmp_path, {"a.py": b"x = '\xff\xfe'\n"}, "python")
    assert rules(found) in (["python.encoding"], ["python.syntax"])
    assert found[0].line == 1


def test_expressions_the_compiler_gives_up_on_are_syntax_findings(tmp_path):
    """CPython raises RecursionError (or MemoryError) for these instead of SyntaxError."""
    found = findings(tmp_path, {"sum.py": "x = " + " + ".join(["1"] * 20_000) + "\n"}, "python")
    assert [(f.rule, f.message) for f in found] == [("python.syntax", "nested too deeply for the compiler")]
