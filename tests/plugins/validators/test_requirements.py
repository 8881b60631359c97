"""The requirements validator."""

from __future__ import annotations

from vcase import findings, rules

GOOD = """# pinned
fastapi>=0.110,<1
uvicorn[standard]==0.30.1 \\
    --hash=sha256:abc
pydantic ; python_version >= "3.10"
-r requirements-dev.txt
--index-url https://pypi.org/simple
git+https://github.com/org/pkg.git@v1#egg=pkg
./local/pkg
"""


def test_good_requirements(tmp_path):
    files = {"requirements.txt": GOOD, "requirements-dev.txt": "pytest\n"}
    assert findings(tmp_path, files, "requirements") == []


def test_invalid_line_has_line_number(tmp_path):
    (f,) = findings(tmp_path, {"requirements.txt": "fastapi\nthis is not valid!\n"}, "requirements")
    assert (f.rule, f.line, f.column) == ("requirements.syntax", 2, 1)


def test_bad_version_goes_through_packaging(tmp_path):
    (f,) = findings(tmp_path, {"requirements.txt": "fastapi>=1.x.y\n"}, "requirements")
    assert f.rule == "requirements.syntax"


def test_duplicates_unknown_options_and_missing_includes(tmp_path):
    text = "Foo_Bar==1\nfoo-bar>=2\n--frobnicate\n-r missing.txt\n"
    found = findings(tmp_path, {"requirements.txt": text}, "requirements")
    assert rules(found) == ["requirements.duplicate", "requirements.syntax", "requirements.include"]
    assert [f.line for f in found] == [2, 3, 4]
