"""The secrets validator measured against detect-secrets on the same labelled files (docs/validation.md).

Each case is one file that holds a live-looking secret (``SECRETS``) or a
decoy a scanner should leave alone (``DECOYS``). A scanner *finds* a secret
file when it reports anything in it, *misses* it otherwise; any report on a
decoy is a false positive. detect-secrets runs through its Python API with
its default settings (every plugin, its default filters). The secret-shaped
values are assembled here at run time, so this file holds none; they are not
anyone's credentials. Our figures are held as floors (found) and ceilings
(false positives); detect-secrets' are printed beside them.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings
from vcase import findings

_A = "Q3ZB7XK2MPL4WN8D"
_MIX = "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4y5Z6"
_PEM_BODY = base64.b64encode(bytes(range(256)) * 3).decode()
_PEM = "\n".join(
    [
        "-----BEGIN RSA PRIVATE KEY-----",
        *[_PEM_BODY[i : i + 64] for i in range(0, 640, 64)],
        "-----END RSA PRIVATE KEY-----",
    ]
)
_JWT = ".".join(
    base64.urlsafe_b64encode(part.encode()).decode().rstrip("=")
    for part in ('{"alg":"HS256","typ":"JWT"}', '{"sub":"1234567890","name":"Ada","admin":true}', "s1gn4tur3-bytes!")
)

#: (file name, content): each holds one secret
SECRETS: list[tuple[str, str]] = [
    ("aws_id.py", f'AWS_ACCESS_KEY_ID = "AKIA{_A}"\n'),
    ("aws_secret.ini", f"[default]\naws_secret_access_key = {_MIX[:40]}\n"),
    ("gh_classic.env", f"GITHUB_TOKEN=ghp_{_MIX[:36]}\n"),
    ("gh_fine.sh", f"export GH_TOKEN=github_pat_{_MIX[:22]}_{_MIX[:52]}{_MIX[:7]}\n"),
    ("gitlab.yml", f"token: glpat-{_MIX[:20]}\n"),
    ("slack.json", json.dumps({"token": f"xoxb-2048-{_MIX[:24]}"}) + "\n"),
    ("slack_hook.txt", f"https://hooks.slack.com/services/T0{_A[:7]}/B0{_A[7:14]}/{_MIX[:24]}\n"),
    ("google.js", f"const key = 'AIza{_MIX[:35]}';\n"),
    ("stripe.rb", f"Stripe.api_key = 'sk_live_{_MIX[:24]}'\n"),
    ("id_rsa", _PEM + "\n"),
    ("key.yaml", "tls:\n  key: |\n" + "".join(f"    {ln}\n" for ln in _PEM.splitlines())),
    ("key.json", json.dumps({"private_key": _PEM + "\n"}) + "\n"),
    ("db_url.py", 'DATABASE_URL = "postgres://orders:' + _MIX[5:15] + '@db.internal:5432/orders"\n'),
    ("settings.py", 'DB_PASSWORD = "hT9#kq2LmZx!"\n'),
    ("config.json", json.dumps({"db": {"user": "app", "password": "Zx8!vQ2#mW4p"}}) + "\n"),
    ("jwt.txt", f"Authorization: Bearer {_JWT}\n"),
    ("npmrc", f"//registry.npmjs.org/:_authToken=npm_{_MIX[:36]}\n"),
    ("twilio.py", f'TWILIO_KEY = "SK{"0123456789abcdef" * 2}"\n'),
    ("azure.txt", f"DefaultEndpointsProtocol=https;AccountName=app;AccountKey={_MIX[:40]}{_MIX[:44]}==\n"),
    ("api_key.yaml", f"service:\n  api_key: {_MIX[3:27]}\n"),
]

#: (file name, content): each holds something secret-shaped that is not a secret
DECOYS: list[tuple[str, str]] = [
    ("docs_key.md", "Use a key like `AKIAIOSFODNN7EXAMPLE` in the examples.\n"),
    ("changeme.py", 'PASSWORD = "changeme"\n'),
    ("compose.yaml", "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: ${DB_PASSWORD}\n"),
    ("env_read.py", 'import os\nAPI_KEY = os.environ["API_KEY"]\n'),
    ("pem_parser.py", 'BEGIN = "-----BEGIN RSA PRIVATE KEY-----"\nif line.startswith(BEGIN):\n    pass\n'),
    ("placeholder_url.md", "Connect with `postgres://user:password@localhost/db`.\n"),
    ("lock.txt", "flask==3.0.0 --hash=sha256:" + "3f2b9c1e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c" + "\n"),
    ("ids.yaml", "request_id: 6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b\n"),
    (
        "package-lock.json",
        json.dumps({"integrity": "sha512-" + base64.b64encode(bytes(range(64))).decode()}) + "\n",
    ),
    ("ci.yml", "steps:\n  - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683\n"),
    ("template.yml", "env:\n  TOKEN: ${{ secrets.DEPLOY_TOKEN }}\n"),
    ("django.py", "SECRET_KEY = get_random_secret_key()\n"),
    ("prefix_doc.py", '"""Tokens start with ghp_ (classic) or github_pat_ (fine-grained)."""\n'),
    ("empty.env", 'PASSWORD=""\n'),
    ("Dockerfile", "FROM python:3.12-slim@sha256:" + "a" * 8 + "4b3c2d1e0f9a8b7c6d5e4f3a2b1c" + "0" * 28 + "\n"),
    ("form.py", 'password_field = "password"\n'),
    ("angle.yaml", "auth:\n  api_key: <your-api-key>\n"),
    ("assets.css", ".icon { background: url(data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==); }\n"),
    ("test_login.py", 'def test_login(client):\n    client.post("/login", data={"password": "hunter2"})\n'),
    ("jinja.yml", "password: '{{ vault_db_password }}'\n"),
]  # fmt: skip

#: our figures on these cases (docs/validation.md): floors for what is found, ceilings for false positives
OURS_FOUND, OURS_FALSE = 13, 0


def _ours(tmp_path: Path, cases: list[tuple[str, str]]) -> set[str]:
    return {f.path for f in findings(tmp_path, dict(cases), "secrets")}


def _detect_secrets(tmp_path: Path, cases: list[tuple[str, str]]) -> set[str]:
    folder = tmp_path / "ds"
    folder.mkdir(parents=True)
    for name, text in cases:
        (folder / name).write_text(text)
    flagged = set()
    with default_settings():
        for name, _ in cases:
            collection = SecretsCollection()
            collection.scan_file(str(folder / name))
            if any(True for _ in collection):
                flagged.add(name)
    return flagged


def test_found_missed_and_false_positives_against_detect_secrets(tmp_path):
    names = [n for n, _ in SECRETS + DECOYS]
    assert len(set(names)) == len(names)
    ours_s, ours_d = _ours(tmp_path / "s", SECRETS), _ours(tmp_path / "d", DECOYS)
    ds_s, ds_d = _detect_secrets(tmp_path / "a", SECRETS), _detect_secrets(tmp_path / "b", DECOYS)
    total = len(SECRETS)
    print(f"\nqlcapsule: found {len(ours_s)}/{total}, false positives {len(ours_d)}/{len(DECOYS)}")
    print(f"  missed: {sorted(n for n, _ in SECRETS if n not in ours_s)}; false: {sorted(ours_d)}")
    print(f"detect-secrets: found {len(ds_s)}/{total}, false positives {len(ds_d)}/{len(DECOYS)}")
    print(f"  missed: {sorted(n for n, _ in SECRETS if n not in ds_s)}; false: {sorted(ds_d)}")
    assert len(ours_s) >= OURS_FOUND
    assert len(ours_d) <= OURS_FALSE
