"""The secrets validator: finds planted secrets and never prints them."""

from __future__ import annotations

import json

from vcase import findings, report

from qlcapsule.steps.report import render
from qlcapsule.steps.validation import Report

# assembled at run time so this file itself holds no secret-shaped string
AWS_ID = "AKIA" + "Q3ZB7XK2MPL4WN8D"
GH = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def _private_key(kind: str = "rsa", fmt: str = "TraditionalOpenSSL", password: bytes | None = None) -> str:
    """A fresh private key in PEM (generated, so this file holds none)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    key = {
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
        "ec": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
    }[kind]()
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, getattr(serialization.PrivateFormat, fmt), encryption).decode()


PEM = _private_key()


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


def test_real_private_keys_are_found_in_every_shape(tmp_path):
    """PEM files of each kind, a key inside JSON with escaped newlines, an indented YAML block, a cut file."""
    ec, ssh = _private_key("ec", "PKCS8"), _private_key("ed25519", "OpenSSH")
    encrypted = _private_key("rsa", "PKCS8", password=b"pw")
    service_account = json.dumps({"type": "service_account", "private_key": _private_key("rsa", "PKCS8")}, indent=1)
    indented = "tls:\n  key: |\n" + "".join(f"    {line}\n" for line in ec.splitlines())
    cut = PEM[: PEM.index("-----END")]  # the END marker lost, a whole body before it
    files = {
        "rsa.pem": PEM,
        "ec.pem": ec,
        "id_ed25519": ssh,
        "enc.pem": encrypted,
        "sa.json": service_account,
        "values.yaml": indented,
        "cut.pem": cut,
    }
    found = findings(tmp_path, files, "secrets")
    assert sorted((f.path, f.rule) for f in found) == sorted((p, "secrets.private-key") for p in files)


def test_a_pem_marker_alone_is_not_a_private_key(tmp_path):
    """Parsers, docs and examples name the markers; only a key body makes a key (13 of 33 hits were these)."""
    marker = "-----BEGIN RSA " + "PRIVATE KEY-----"
    end = "-----END RSA " + "PRIVATE KEY-----"
    files = {
        "pem.py": (
            f'"""Load keys. Accepts files that start with \'{marker}\'."""\n'
            f'_PKCS1_MARKER = ("{marker}", "{end}")\n'
            f'EXAMPLE = {{"private_key": "{marker}\\n<key bytes>\\n{end}\\n"}}\n'
            f"# {marker}\n# MIIEowIBAAKCAQEA...\n# {end}\n"
        ),
        "README.md": f"```\n{marker}\nMIIEpAIBAAKCAQEA...\n{end}\n```\n",
        "short.pem": f"{marker}\nMIIEow\n{end}\n",  # a body too short to be a key
        "filler.pem": f"{marker}\n" + "X" * 64 + "\n" + "X" * 64 + f"\n{end}\n",
        "cut.pem": f"{marker}\nMIIEpAIBAAKCAQEAq7BFUpkGp3+LQmlQ\n",  # no END and barely a body
    }
    assert findings(tmp_path, files, "secrets") == []


def test_password_placeholders_are_not_reported(tmp_path):
    text = (
        'access_token="access_token"\n'
        'api_key = "MY_SERVICE_API_KEY"\n'
        'password: "your-password-here"\n'
        'auth_token = "aaaaaaaaaaaaaaaa"\n'
        'secret_key = "github_secret_key_prod"\n'
        'password = "Tr0ub4dor&3horse"\n'
    )
    found = findings(tmp_path, {"settings.py": text}, "secrets")
    assert [(f.rule, f.line) for f in found] == [("secrets.password-assignment", 6)]


def test_a_password_in_a_url_is_a_warning_placeholders_are_not(tmp_path):
    text = (
        "DB = 'postgres://postgres:postgres@db:5432/app'\n"
        "PIP = 'https://user:${PIP_TOKEN}@pypi.example.org/simple'\n"
        "API = 'https://host:8443/v1'\n"
        "DOC = 'https://user:password@host/'\n"
        "MIRROR = 'https://deploy:s3cr3t-Pa55@mirror.example.org/simple'\n"
    )
    found = findings(tmp_path, {"settings.py": text}, "secrets")
    assert [(f.rule, f.severity.value, f.line) for f in found] == [("secrets.url-credentials", "warning", 5)]
    out = render(Report([report(tmp_path / "r", {"settings.py": text})]), "json")
    assert "s3cr3t-Pa55" not in out
