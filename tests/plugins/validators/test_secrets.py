"""The secrets validator: finds planted secrets and never prints them."""

from __future__ import annotations

import json

from vcase import findings, report

from qlcapsule.report import render
from qlcapsule.validation import Report

# assembled at run time so this file itself holds no secret-shaped string
AWS_ID = "AKIA" + "Q3ZB7XK2MPL4WN8D"
GH = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
PEM = "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n"


def test_planted_secrets_are_found_with_position(tmp_path):
    files = {
        "settings.py": f'DEBUG = True\nKEY = "{AWS_ID}"\n',
        "deploy/id_rsa": PEM,
        "ci.env": f"TOKEN={GH}\n",
    }
    found = findings(tmp_path, files, "secrets")
    assert {(f.rule, f.path, f.line) for f in found} == {
        ("secrets.aws-access-key", "settings.py", 2),
        ("secrets.private-key", "deploy/id_rsa", 1),
        ("secrets.github-token", "ci.env", 1),
    }
    assert next(f for f in found if f.path == "settings.py").column == 8


def test_the_secret_never_appears_in_any_output(tmp_path):
    full = Report([report(tmp_path, {"settings.py": f'KEY = "{AWS_ID}"\nGH = "{GH}"\n'})])
    for fmt in ("text", "json", "sarif", "github"):
        out = render(full, fmt)
        assert AWS_ID not in out and GH not in out
        assert AWS_ID[4:12] not in out and GH[4:12] not in out
    assert json.loads(render(full, "json"))["counts"]["error"] == 2


def test_allowlist_comment_documentation_keys_and_binaries(tmp_path):
    files = {
        "a.py": f'KEY = "{AWS_ID}"  # pragma: allowlist secret\nDOC = "AKIAIOSFODNN7EXAMPLE"\n',
        "logo.bin": b"\x00\x01" + AWS_ID.encode(),
    }
    assert findings(tmp_path, files, "secrets") == []


def test_password_assignment_is_a_warning(tmp_path):
    found = findings(tmp_path, {"conf.yaml": 'password: "hunter2hunter2hunter2"\nother: "${PASSWORD}"\n'}, "secrets")
    assert [(f.rule, f.severity.value, f.line) for f in found] == [("secrets.password-assignment", "warning", 1)]
