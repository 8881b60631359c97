"""The labelled files the secrets validator is measured on (test_secrets_measured.py, docs/validation.md).

``SECRETS`` and ``DECOYS`` are the first 40 cases, ours, written for the
first measurement (issue 19). ``MORE_SECRETS`` and ``MORE_DECOYS`` were added
with the JWT, Slack webhook, Twilio, npm, Azure and keyword rules: each case
is ``(file name, content, source)``, where the source is ``ours`` or the
public scanner test suite or documentation the shape was taken from (one
token or line, never a whole file, except the 25-line compose.yaml):

- gitleaks: github.com/gitleaks/gitleaks ``cmd/generate/config/rules/*.go``
  (their ``tps``/``fps`` lists), commit b58d3f102cf3a2c84cb7f923d05c25c9b1aed84b, MIT;
- detect-secrets: github.com/Yelp/detect-secrets ``tests/plugins/*_test.py``,
  commit 5e141933554a0b74e7341841f318be21e895339c, Apache-2.0;
- docker-library: github.com/docker-library/docs ``postgres/compose.yaml``, MIT;
- kubernetes docs: github.com/kubernetes/website ``content/en/examples/pods/inject/``, CC BY 4.0.

Secret-shaped values are assembled at run time (a prefix apart from the rest),
so this file holds none as written; the public ones are other projects' test
data or documentation samples, not anyone's live credentials.
"""

from __future__ import annotations

import base64
import json


def _cat(*parts: str) -> str:
    """Parts joined at run time: a secret's shape split in two is not one in this file."""
    return "".join(parts)


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
    ("settings.py", _cat('DB_PASSWORD = "hT9#', 'kq2LmZx!"\n')),
    ("config.json", json.dumps({"db": {"user": "app", "password": _cat("Zx8!", "vQ2#mW4p")}}) + "\n"),
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

_GITLEAKS, _DS = "gitleaks", "detect-secrets"
_JWT_IO = _cat(  # jwt.io's sample token, in detect-secrets' jwt_test.py
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.",
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ",
)
_AZURITE = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/" + "K1SZFPTOtr/KBHBeksoGMGw=="
_DS_AZURE_KEY = "lJzRc1YdHaAA2KCNJJ1tkYwF/+mKK6Ygw0NGe170Xu592euJv2wYUtBlV8z+" + "qnlcNQSnIYVTkLWntUO1F8j8rQ=="


def _file(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


#: (file name, content, source): each holds one secret, of a kind the first 20 have one or none of
MORE_SECRETS: list[tuple[str, str, str]] = [
    (
        "slack_user.json",
        _file('{"user_token": "xox' + 'p-41684372915-1320496754-45609968301-e708ba56e1517a99f6b5fb07349476ef"}'),
        f"{_GITLEAKS} slack.go SlackUserToken",
    ),
    (
        "slack_legacy_bot.yml",
        _file('bot_token: "xox' + 'b-263594206564-FGqddMF8t08v8N7Oq4i57vs1"'),
        f"{_GITLEAKS} slack.go SlackLegacyBotToken",
    ),
    (
        "slack_app.env",
        _file(
            _cat(
                "SLACK_APP_TOKEN=xa",
                "pp-1-A052FGTS2DL-5171572773297-610b6a11f4b7eb819e87b767d80e6575a3634791acb9a9ead051da879eb5b55e",
            )
        ),
        f"{_GITLEAKS} slack.go SlackAppLevelToken",
    ),
    (
        "slack_services.md",
        _file("Post to http://hooks.slack" + ".com/services/T024TTTTT/BBB72BBL/AZAAA9u0pA4ad666eMgbi555"),
        f"{_GITLEAKS} slack.go SlackWebHookUrl",
    ),
    (
        "slack_workflow.yaml",
        _file(
            _cat(
                "url: https://hooks.slack",
                ".com/workflows/T016M3G1GHZ/A04J3BAF7AA/442660231806210747/F6Vm03reCkhPmwBtaqbN6OW9",
            )
        ),
        f"{_GITLEAKS} slack.go SlackWebHookUrl",
    ),
    (
        "jwt_io.http",
        _file("GET /api HTTP/1.1", f"Authorization: Bearer {_JWT_IO}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
        f"{_DS} jwt_test.py (valid jwt)",
    ),
    ("jwt_unsigned.txt", _file(f"token={_JWT_IO}"), f"{_DS} jwt_test.py (no signature - but still valid)"),
    (
        "npmrc_legacy",
        _file("//registry.npmjs.org/:_auth" + "Token=743b294a-cd03-11ec-9d64-0242ac120002"),
        f"{_DS} npm_test.py",
    ),
    (
        "twilio.env",
        _file("TWILIO_API_KEY=S" + "K3e1f0c9d8b7a6f5e4d3c2b1a0f9e8d7c"),
        "ours, in gitleaks twilio.go's shape",
    ),
    (
        "appsettings.json",
        json.dumps(
            {"ConnectionStrings": {"Storage": f"AccountName=orders;AccountKey={_DS_AZURE_KEY};EndpointSuffix=x"}}
        ),
        f"the key: {_DS} azure_storage_key_test.py; the file around it: ours",
    ),
    (
        "servicebus.env",
        _file(
            "SERVICEBUS=Endpoint=sb://orders.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
            f"SharedAccessKey={_MIX[2:45]}="
        ),
        "ours, the connection string shape Azure's portal shows",
    ),
    ("db.env", _file("POSTGRES_USER=orders", f"POSTGRES_PASSWORD={_MIX[7:25]}"), "ours"),
    (
        "application.properties",
        _file("spring.datasource.url=jdbc:postgresql://db/orders", f"spring.datasource.password={_MIX[9:29]}"),
        "ours",
    ),
    ("Dockerfile.app", _file("FROM python:3.12-slim", f"ENV APP_SECRET_KEY={_MIX[11:37]}"), "ours"),
    (
        "k8s_secret.yaml",
        _file("apiVersion: v1", "kind: Secret", "metadata:", "  name: db", "stringData:", f"  password: {_MIX[4:20]}"),
        "ours",
    ),
    ("group_vars.yml", _file(f"ansible_become_password: {_MIX[13:31]}  # set by ops"), "ours"),
    (
        "client.json",
        _file(
            _cat(
                '{"client_id": "orders", "client_secret" : "',
                '6da89121079f83b2eb6acccf8219ea982c3d79bccc3e9c6a85856480661f8fde"}',
            )
        ),
        f"{_GITLEAKS} generic.go GenericCredential",
    ),
    ("passwd.ini", _file("[db]", f"passwd = {_MIX[17:47]}"), f"{_GITLEAKS} generic.go (passwd = <30 characters>)"),
    ("keyword_ds.py", _file('the_password= "{{h}o)p${e]nob(ody[finds>-_$#thisone}}"'), f"{_DS} keyword_test.py"),
]

#: (file name, content, source): each holds something a keyword or new-kind rule could take for a secret
MORE_DECOYS: list[tuple[str, str, str]] = [
    (
        "postgres_compose.yaml",
        _file(
            "# Use postgres/example user/password credentials",
            "services:",
            "  db:",
            "    image: postgres",
            "    restart: always",
            "    shm_size: 128mb",
            "    environment:",
            "      POSTGRES_PASSWORD: example",
            "  adminer:",
            "    image: adminer",
            "    restart: always",
            "    ports:",
            "      - 8080:8080",
        ),
        "docker-library postgres/compose.yaml (its comments and blank lines left out)",
    ),
    (
        "deployment.yaml",
        _file(
            "apiVersion: apps/v1",
            "kind: Deployment",
            "metadata:",
            "  name: orders",
            "spec:",
            "  template:",
            "    spec:",
            "      containers:",
            "      - name: orders",
            "        image: orders:1.4",
            "        env:",
            "        - name: DB_PASSWORD",
            "          valueFrom:",
            "            secretKeyRef:",
            "              name: orders-db",
            "              key: password",
        ),
        "ours, after the kubernetes docs' pod-single-secret-env-variable.yaml",
    ),
    (
        "values.yaml",
        _file(
            "auth:",
            '  postgresPassword: ""',
            '  password: ""',
            "  existingSecret: orders-postgresql-credentials",
            "  existingSecretPasswordKey: password",
            "  secretKeys:",
            "    adminPasswordKey: postgres-password",
            "imagePullSecret: registry-credentials-prod",
        ),
        "ours, in the shape of Bitnami's chart values",
    ),
    (
        "INSTALL.md",
        _file(
            "Edit `config.yaml`:",
            "```yaml",
            "database:",
            "  password: <your password>",
            "  api_key: <your-api-key>",
            "```",
        ),
        "ours",
    ),
    (
        "config.yml.j2",
        _file(
            "database:",
            "  password: {{ password }}",
            '  admin_password: "{{ vault_admin_password }}"',
            "  secret_key: {{ lookup('env', 'SECRET_KEY') }}",
        ),
        "ours",
    ),
    (
        "secrets.enc.yaml",
        _file(
            "db:", "    password: ENC[AES256_GCM,data:Zm9vYmFyYmF6cXV4,iv:c2l4dGVlbmJ5dGVzaXY=,tag:dGFnZ2Vk,type:str]"
        ),
        "ours, in the shape of a SOPS-encrypted file",
    ),
    (
        "vault.yml",
        _file(
            "db_password: !vault |",
            "  $ANSIBLE_VAULT;1.1;AES256",
            "  6231336539666234306139346433616338376437376461363365",
        ),
        "ours, in the shape of Ansible's encrypted variables",
    ),
    (
        "application-prod.properties",
        _file("spring.datasource.password=${DB_PASSWORD}", "spring.mail.password="),
        "ours",
    ),
    (
        "settings_prod.py",
        _file(
            "DATABASES = {'default': {'PASSWORD': os.environ['DB_PASSWORD'], 'HOST': 'db'}}",
            "password = getpass.getpass()",
            "api_key = settings.ORDERS_API_KEY",
        ),
        "ours",
    ),
    (
        ".env.example",
        _file("GITHUB_API_KEY=", "DYNATRACE_API_KEY=", "snowflake.password=", "jdbc.snowflake.url="),
        f"{_GITLEAKS} generic.go fps",
    ),
    (
        "Jenkinsfile",
        _file(
            "withCredentials([usernamePassword(credentialsId: '29f63271-dc2f-4734-8221-5b31b5169bac', "
            "usernameVariable: 'USERNAME', passwordVariable: 'PASSWORD')]) {",
            "  sh 'make deploy'",
            "}",
        ),
        f"{_GITLEAKS} generic.go fps",
    ),
    (
        "generic_fps.sh",
        _file(
            "PuttyPassword=0",
            'LLM_SECRET_NAME="NEXUS-GPT4-API-KEY"',
            "JFROG_SECRET=$(cat /run/secrets/jfrog_secret)",
            "access_token_url='https://github.com/login/oauth/access_token'",
        ),
        f"{_GITLEAKS} generic.go fps",
    ),
    (
        "slack_docs.md",
        _file(
            "Send to `https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX`",
            "with a token like `xoxb-your-bot-token` or `xoxb-xoxb-my-bot-token`.",
        ),
        f"ours (Slack's documented webhook) and {_GITLEAKS} slack.go fps",
    ),
    (".npmrc", _file("//registry.npmjs.org/:_authToken=${NPM_TOKEN}"), f"{_DS} npm_test.py"),
    (
        "azurite.env",
        _file(f"AZURE_STORAGE_CONNECTION_STRING=AccountName=devstoreaccount1;AccountKey={_AZURITE};"),
        "ours, with Azurite's published development key",
    ),
    (
        "login.html",
        _file('<input type="password" name="password" placeholder="Password" autocomplete="current-password">'),
        "ours",
    ),
    (
        "pull_secret.yaml",
        _file("kind: Secret", "data:", "  .dockerconfigjson: " + base64.b64encode(b'{"auths":{}}').decode()),
        "ours: base64 JSON, but no JWT",
    ),
]
