"""The requirements validator."""

from __future__ import annotations

import pytest
from vcase import findings, rules

GOOD = """# pinned
fastapi>=0.110,<1
uvicorn[standard]==0.30.1 \\
    --hash=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
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


@pytest.mark.parametrize("line", ["foo>=1.*", "foo~=1", "foo==1.*a1", "foo<=1.0.*"])
def test_versions_packaging_refuses_are_errors(tmp_path, line):
    """A hand-written regex once accepted these; packaging (PEP 440) and pip refuse them."""
    (f,) = findings(tmp_path, {"requirements.txt": f"requests\n{line}\n"}, "requirements")
    assert (f.rule, f.line) == ("requirements.syntax", 2) and f.message.startswith(f"invalid requirement '{line}'")


def test_options_after_a_requirement_are_checked_as_pip_does(tmp_path):
    text = (
        f"a==1 --hash=sha256:{'ab' * 32} --hash sha512:{'CD' * 64}\n"
        "b==1 --hash=md5:ab\n"
        "c==1 --hash=sha256\n"
        "d==1 --index-url https://x\n"
        "e==1 --hash\n"
        "f==1 --config-settings k=v\n"
        "g==1 --hash=sha256:abc\n"
        f"h==1 --hash=sha384:{'g' * 96}\n"
    )
    found = findings(tmp_path, {"requirements.txt": text}, "requirements")
    assert [(f.line, f.message) for f in found] == [
        (2, "--hash md5:ab: pip allows sha256, sha384, sha512"),
        (3, "--hash sha256: expected a hash name and a value, like sha256:abcde..."),
        (4, "pip option --index-url is not allowed after a requirement"),
        (5, "pip option --hash needs a value"),
        (7, "--hash sha256:abc: a sha256 digest is 64 hex digits"),
        (8, f"--hash sha384:{'g' * 96}: a sha384 digest is 96 hex digits"),
    ]


def test_duplicates_unknown_options_and_missing_includes(tmp_path):
    text = "Foo_Bar==1\nfoo-bar>=2\n--frobnicate\n-r missing.txt\n"
    found = findings(tmp_path, {"requirements.txt": text}, "requirements")
    assert rules(found) == ["requirements.duplicate", "requirements.syntax", "requirements.include"]
    assert [f.line for f in found] == [2, 3, 4]


def test_binary_or_non_utf8_content_is_one_finding(tmp_path):
    found = findings(tmp_path, {"requirements.txt": b"requests\n\x00\xff" * 5000}, "requirements")
    assert [(f.rule, f.message) for f in found] == [("requirements.syntax", "not a text file (NUL byte)")]
    found = findings(tmp_path / "b", {"requirements.txt": b"requests\nfla\xffsk\n"}, "requirements")
    assert [(f.rule, f.message, f.line) for f in found] == [("requirements.syntax", "not UTF-8 (byte 12)", 2)]


def test_findings_per_file_stop_at_a_cap(tmp_path):
    """Thousands of bad lines give 200 findings and one note, and the validator stops early."""
    found = findings(tmp_path, {"requirements.txt": "".join(f"bad line {i} !!\n" for i in range(5000))}, "requirements")
    notes = [f for f in found if f.severity.value == "note"]
    assert len(found) == 201 and len(notes) == 1 and "stopped after 200" in notes[0].message


def test_includes_outside_the_capsule_or_of_itself_are_flagged(tmp_path):
    text = "-r requirements.txt\n-r ../outside.txt\n-r /etc/hostname\n-c sub/../base.txt\nrequests\n"
    found = findings(tmp_path, {"requirements.txt": text, "base.txt": "flask\n"}, "requirements")
    assert [(f.line, f.message) for f in found] == [
        (1, "-r requirements.txt: includes itself"),
        (2, "-r ../outside.txt: points outside the capsule"),
        (3, "-r /etc/hostname: points outside the capsule"),
    ]


def test_an_option_without_its_value_is_an_error(tmp_path):
    """pip refuses these files ("--index-url option requires 1 argument")."""
    text = "requests==2.31.0\n--index-url\n-r\n--extra-index-url=\n--pre\n--no-index\n-i https://pypi.org/simple\n"
    found = findings(tmp_path, {"requirements.txt": text}, "requirements")
    assert [(f.rule, f.line, f.message) for f in found] == [
        ("requirements.syntax", 2, "pip option --index-url needs a value"),
        ("requirements.syntax", 3, "pip option -r needs a value"),
        ("requirements.syntax", 4, "pip option --extra-index-url needs a value"),
    ]


def test_included_files_are_checked_once_where_they_are(tmp_path):
    """``-r base.in`` (a name the patterns do not select) is read and checked; its findings name it."""
    files = {
        "requirements.txt": "-r base.in\nflask\n",
        "requirements-dev.txt": "-r base.in\n-c requirements.txt\npytest\n",
        "base.in": "requests\nfoo~=1\n-r deeper/more.in\n",
        "deeper/more.in": "-r ../base.in\nbar>=1.*\n",
    }
    found = findings(tmp_path, files, "requirements")
    assert [(f.path, f.line, f.rule) for f in found] == [
        ("base.in", 2, "requirements.syntax"),
        ("deeper/more.in", 2, "requirements.syntax"),
    ]


def test_an_include_that_is_a_link_out_of_the_capsule_is_not_read(tmp_path):
    outside = tmp_path / "outside.in"
    outside.write_text("foo~=1\n")
    root = tmp_path / "c"
    root.mkdir()
    (root / "base.in").symlink_to(outside)  # excluded, so the walk (which refuses links) never sees it
    definition = "name: demo\nversion: 1.0.0\nexclude: [base.in]\n"
    found = findings(root, {"requirements.txt": "-r base.in\nflask\n"}, "requirements", definition=definition)
    assert found == []
    (root / "base.in").unlink()
    (root / "base.in").write_text("foo~=1\n")
    found = findings(root, {"requirements.txt": "-r base.in\nflask\n"}, "requirements", definition=definition)
    assert [(f.path, f.line) for f in found] == [("base.in", 1)]  # the same file, inside: read
