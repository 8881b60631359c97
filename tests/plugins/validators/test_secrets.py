"""The secrets validator: finds planted secrets and never prints them."""

from __future__ import annotations

import base64
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


# -- the kinds added after the measurement against detect-secrets (issue 19) ------------------------------------
_MIX = "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4y5Z6"
_JWT = ".".join(
    base64.urlsafe_b64encode(part).decode().rstrip("=")
    for part in (b'{"alg":"RS256","kid":"k1"}', b'{"sub":"svc","exp":4102444800}', bytes(range(40, 104)))
)
SLACK_HOOK = "https://hooks.slack" + f".com/services/T0{_MIX[:7].upper()}/B0{_MIX[7:14].upper()}/{_MIX[:24]}"
TWILIO = "S" + "K" + "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
NPM = "np" + f"m_{_MIX[:36]}"
AZURE_KEY = _MIX[:44] + _MIX[2:44] + "=="
AZURITE = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/" + "K1SZFPTOtr/KBHBeksoGMGw=="


def test_each_new_kind_is_found_under_its_own_rule(tmp_path):
    files = {
        "hook.md": f"Alerts go to {SLACK_HOOK}\n",
        "twilio.env": f"TWILIO_API_KEY={TWILIO}\n",  # an API_KEY assignment, reported as what the value is
        "ci/.npmrc": f"//npm.pkg.example.org/:_authToken={NPM}\n",
        "conn.txt": f"DefaultEndpointsProtocol=https;AccountName=orders;AccountKey={AZURE_KEY};EndpointSuffix=core\n",
        "auth.http": f"Authorization: Bearer {_JWT}\n",
        "app.yaml": f"oauth:\n  access_token: {_JWT}\n",  # a rejected assignment does not hide the JWT inside it
    }
    found = findings(tmp_path, files, "secrets")
    assert sorted((f.path, f.rule, f.severity.value) for f in found) == [
        ("app.yaml", "secrets.jwt", "warning"),
        ("auth.http", "secrets.jwt", "warning"),
        ("ci/.npmrc", "secrets.npm-token", "error"),
        ("conn.txt", "secrets.azure-storage-key", "error"),
        ("hook.md", "secrets.slack-webhook", "error"),
        ("twilio.env", "secrets.twilio-key", "error"),
    ]


def test_new_kinds_never_appear_in_any_output(tmp_path):
    text = f"{SLACK_HOOK}\nTWILIO={TWILIO}\n//r/:_authToken={NPM}\nAccountKey={AZURE_KEY}\nBearer {_JWT}\n"
    out = "\n".join(render(Report([report(tmp_path, {"notes.txt": text})]), fmt) for fmt in ("text", "json", "sarif"))
    for secret in (SLACK_HOOK.rsplit("/", 1)[1], TWILIO, NPM, AZURE_KEY, _JWT.split(".")[2]):
        assert secret not in out and secret[4:14] not in out
    assert out.count("secrets.") >= 5


def test_shapes_without_a_secret_are_left_alone(tmp_path):
    unsigned_header = base64.urlsafe_b64encode(b'{"typ":"JWT"}').decode().rstrip("=")  # no alg: not a token header
    files = {
        "slack.md": "POST to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX\n"
        "Use a bot token: `xoxb-your-bot-token`\n",
        "azurite.env": f"AccountName=devstoreaccount1;AccountKey={AZURITE};\n",  # the emulator's published key
        ".npmrc": "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n//r/:_authToken=NPM_AUTH_TOKEN_VALUE\n",
        "twilio.md": "An API key SID looks like `SK00000000000000000000000000000000`.\n",
        "pull.yaml": "data:\n  .dockerconfigjson: " + base64.b64encode(b'{"auths":{}}').decode() + "\n",
        "notjwt.txt": f"{unsigned_header}.eyJzdWIiOiJzdmMifQ.c2lnbmF0dXJlLWJ5dGVz\n",
    }
    assert findings(tmp_path, files, "secrets") == []


def test_keyword_assignments_in_the_forms_config_files_use(tmp_path):
    files = {
        "db.env": f"POSTGRES_PASSWORD={_MIX[7:25]}\n",
        "app.properties": f"spring.datasource.password = {_MIX[9:29]}\n",
        "Dockerfile": f"FROM python:3.12\nENV APP_SECRET_KEY={_MIX[11:37]}\n",
        "values.yaml": f"db:\n  rootPassword: {_MIX[4:20]}  # rotate yearly\n",
        "conf.json": f'{{"clientSecret": "{_MIX[1:33]}"}}\n',
        "deploy.sh": f"mysql --password='{_MIX[3:19]}' orders\n",
    }
    found = findings(tmp_path, files, "secrets")
    assert sorted((f.path, f.rule) for f in found) == sorted((p, "secrets.password-assignment") for p in files)
    assert {f.severity.value for f in found} == {"warning"}


def test_keyword_false_positives_are_not_reported(tmp_path):
    """Placeholders, references, names and code: what the keyword rule must leave alone."""
    files = {
        "compose.yaml": "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: example\n"
        "      MYSQL_ROOT_PASSWORD: ${MYSQL_ROOT_PASSWORD:-changeit}\n      POSTGRES_PASSWORD_FILE: /run/secrets/db\n",
        "deploy.yaml": "env:\n- name: DB_PASSWORD\n  valueFrom:\n    secretKeyRef:\n      name: orders-db\n      key: password\n",
        "values.yaml": 'auth:\n  password: ""\n  existingSecret: orders-postgresql-credentials\n'
        "  existingSecretPasswordKey: password\nimagePullSecret: registry-credentials-prod\n",
        "README.md": "```yaml\npassword: <your password>\napi_key: <your-api-key>\n```\n",
        "config.yml.j2": 'password: {{ password }}\nadmin_password: "{{ vault_admin_password }}"\n',
        "sops.yaml": "password: ENC[AES256_GCM,data:Zm9vYmFyYmF6,iv:c2l4dGVlbg==,type:str]\n",
        "vault.yml": "db_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n",
        ".env.example": "DB_PASSWORD=\nAPI_KEY=\nsnowflake.password=\njdbc.snowflake.url=jdbc:snowflake://x\n",
        "settings.py": "DATABASES = {'default': {'PASSWORD': os.environ['DB_PASSWORD']}}\n"
        "password = getpass.getpass()\napi_key = settings.ORDERS_API_KEY_VALUE\nsecret_key = load_secret_key_from_vault\n",
        "main.tf": "password = var.db_admin_password_value\n",
        "login.html": '<input type="password" name="password" autocomplete="current-password">\n',
        "names.sh": 'LLM_SECRET_NAME="NEXUS-GPT4-API-KEY"\nJFROG_SECRET=$(cat /run/secrets/jfrog_secret)\nPuttyPassword=0\n',
        "docs.txt": "access_token_url='https://github.com/login/oauth/access_token'\n",
    }
    assert findings(tmp_path, files, "secrets") == []


def test_every_rule_is_declared_with_its_help_page():
    from qlcapsule_plugins.validators.secrets import HELP, SecretsValidator

    rules = {r.id: r for r in SecretsValidator.rules}
    new = {
        "secrets.jwt",
        "secrets.slack-webhook",
        "secrets.twilio-key",
        "secrets.npm-token",
        "secrets.azure-storage-key",
    }
    assert new <= set(rules)
    assert all(r.help_uri == HELP and r.description.endswith("appears in a file") for r in rules.values())
    assert HELP.endswith("#what-the-secrets-validator-finds")
