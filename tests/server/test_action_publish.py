"""The GitHub Action's ``publish`` input: ``action/main.py`` ships, then publishes to a real catalog server.

Here rather than in tests/action because the catalog's fixtures (a real ``qlcapsule serve`` application on
127.0.0.1, SQLite and a real PostgreSQL, release keys) live in catalog_fixtures. The runner is simulated as
tests/action/test_pr_workflows.py does: ``action/main.py`` in its own process with ``INPUT_*``,
``GITHUB_OUTPUT`` and ``GITHUB_STEP_SUMMARY``, the workflow's secrets in its environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from catalog_fixtures import Key, LiveServer, Serve

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "action" / "main.py"
TOKEN_ENV = "CATALOG_PUB"  # a name SECRET_NAME does not match: the Action masks it because publish names it


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], outputs: dict[str, str], summary: str) -> None:
        self.code, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.outputs, self.summary = outputs, summary

    def errors(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith("::error")]


def _outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT's ``name<<DELIM`` blocks (main.py writes only those)."""
    out, lines, i = {}, text.split("\n"), 0
    while i < len(lines):
        if "<<" in lines[i]:
            name, delim = lines[i].split("<<", 1)
            end = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1 : end])
            i = end
        i += 1
    return out


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    for name in ("orders", "billing"):
        root = ws / "caps" / name
        root.mkdir(parents=True)
        (root / "capsule.yaml").write_text(
            f"name: {name}\nversion: 1.0.0\ndescription: a capsule\nlicense: Apache-2.0\n", encoding="utf-8"
        )
        (root / "app.py").write_text(f"print({name!r})\n", encoding="utf-8")
    return ws


def run_action(ws: Path, key: Key, env_extra: dict[str, str], **inputs: str) -> Run:
    out, summary = ws.parent / "github_output", ws.parent / "step_summary"
    out.write_text("")
    summary.write_text("")
    (ws.parent / "runner_temp").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(ws.parent / "home"),
        "QLCAPSULE_HOME": str(ws.parent / "home" / "qlcapsule"),
        "QLCAPSULE_NO_PROGRESS": "1",
        "GIT_CEILING_DIRECTORIES": str(ws.parent),
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_OUTPUT": str(out),
        "GITHUB_STEP_SUMMARY": str(summary),
        "RUNNER_TEMP": str(ws.parent / "runner_temp"),
        "QLCAPSULE_KEY": key.private.read_text(),  # the release key, from the workflow's secrets
        "INPUT_PUBLISH_TOKEN_ENV": TOKEN_ENV,
        **env_extra,
        **{"INPUT_" + k.upper().replace("-", "_"): v for k, v in inputs.items()},
    }
    proc = subprocess.run([sys.executable, str(MAIN)], cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    return Run(proc, _outputs(out.read_text()), summary.read_text())


def _versions(server: LiveServer, name: str) -> list[dict[str, object]]:
    status, answer = server.call(f"/api/v1/capsules/{name}/versions", server.token("read"))
    assert status == 200, answer
    return list(answer["items"])


def test_ship_publishes_each_capsule_and_says_what_the_catalog_recorded(
    serve: Serve, release_key: Key, workspace: Path
) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish")
    run = run_action(workspace, release_key, {TOKEN_ENV: token}, command="ship", path="caps/*", publish=server.url)
    assert run.code == 0, run.stdout + run.stderr
    published = json.loads(run.outputs["published"])
    assert [(p["ref"], p["signature_status"], p["created"]) for p in published] == [
        ("billing@1.0.0", "verified", True),
        ("orders@1.0.0", "verified", True),
    ]
    assert json.loads(run.outputs["report"])["published"] == published
    assert [v["version"] for v in _versions(server, "orders")] == ["1.0.0"]
    assert f"### Published to `{server.url}`" in run.summary
    assert "| `orders@1.0.0` | `verified` | yes |" in run.summary
    # the token: masked for the runner, and nowhere else (never on a command line: it stays in the environment)
    assert f"::add-mask::{token}" in run.stdout.splitlines()
    rest = "\n".join(line for line in run.stdout.splitlines() if not line.startswith("::add-mask::"))
    for text in (rest, run.stderr, run.summary, *run.outputs.values()):
        assert token not in text

    again = run_action(
        workspace, release_key, {TOKEN_ENV: token}, command="ship", path="caps/orders", publish=server.url
    )
    assert again.code == 0, again.stdout
    assert [(p["ref"], p["created"]) for p in json.loads(again.outputs["published"])] == [("orders@1.0.0", False)]


def test_a_refusing_catalog_fails_the_run_after_the_ship(
    serve: Serve, release_key: Key, other_key: Key, workspace: Path
) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish")
    # signed with a key the catalog does not trust: each version is refused (422), one error each, exit 1
    run = run_action(workspace, other_key, {TOKEN_ENV: token}, command="ship", path="caps/*", publish=server.url)
    assert run.code == 1, run.stdout + run.stderr
    errors = run.errors()
    assert len(errors) == 2, errors
    assert errors[0].startswith("::error file=caps/billing/capsule.lock,title=qlcapsule ship::billing@1.0.0: ")
    assert f"not published to {server.url}: {server.url}: refused billing@1.0.0: " in errors[0]
    assert "untrusted" in errors[0] and "orders@1.0.0: not published" in errors[1]
    assert json.loads(run.outputs["published"]) == []
    # the ship itself is done: exported, delivered, its outputs written
    artifacts = json.loads(run.outputs["artifacts"])
    assert sorted(Path(a).name for a in artifacts) == ["billing-1.0.0.tar.gz", "orders-1.0.0.tar.gz"]
    assert all(Path(a).is_file() for a in artifacts)
    assert len(run.outputs["digest"].splitlines()) == 2
    report = json.loads(run.outputs["report"])
    assert report["ok"] is False and report["exit_code"] == 1
    assert _versions(server, "orders") == []

    # the same ship again (already shipped: nothing changes) with a token the catalog refuses: exit 2, and the
    # rest is not tried with it
    refused = run_action(workspace, other_key, {TOKEN_ENV: "not-a-real-token"}, path="caps/*", publish=server.url)
    assert refused.code == 2, refused.stdout
    first, rest = refused.errors()
    assert "billing@1.0.0: not published to" in first
    assert rest.endswith(f"not published to {server.url}: orders@1.0.0 (after the error above)")
    assert "not-a-real-token" not in refused.stdout.replace("::add-mask::not-a-real-token", "")


@pytest.mark.parametrize(
    ("inputs", "env", "needle"),
    [
        ({"publish": "ftp://catalog.example"}, {TOKEN_ENV: "x" * 8}, "publish: --url: expected http(s)://HOST"),
        ({"publish": "http://catalog.example"}, {TOKEN_ENV: "x" * 8}, "use https so the token is not sent in clear"),
        ({"publish": "URL"}, {}, f"publish: missing credential: environment variable {TOKEN_ENV} is not set"),
        ({"publish": "URL", "command": "verify"}, {TOKEN_ENV: "x" * 8}, "publish: only the ship command publishes"),
        ({"publish": "URL", "publish-token-env": "A B"}, {}, "publish-token-env: 'A B' is not an environment"),
    ],
)
def test_a_bad_publish_input_stops_the_run_before_anything_is_written(
    serve: Serve, release_key: Key, workspace: Path, inputs: dict[str, str], env: dict[str, str], needle: str
) -> None:
    server = serve(trust_file=str(release_key.trust))
    inputs = {"command": "ship", "path": "caps/orders", **inputs}
    inputs["publish"] = inputs["publish"].replace("URL", server.url)
    before = sorted(p.relative_to(workspace) for p in workspace.rglob("*"))
    run = run_action(workspace, release_key, env, **inputs)
    assert run.code == 2, run.stdout + run.stderr
    (error,) = run.errors()
    assert needle in error, error
    assert sorted(p.relative_to(workspace) for p in workspace.rglob("*")) == before  # nothing sealed, signed, shipped


def test_a_pull_request_run_publishes_nothing_and_drops_the_token(
    serve: Serve, release_key: Key, workspace: Path
) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish")
    env = {TOKEN_ENV: token, "GITHUB_EVENT_NAME": "pull_request"}
    run = run_action(workspace, release_key, env, command="ship", path="caps/orders", publish=server.url)
    assert run.code == 0, run.stdout + run.stderr
    assert f"pull_request event: the report is not published to {server.url}" in run.stdout
    assert json.loads(run.outputs["published"]) == []
    assert _versions(server, "orders") == []
    assert token not in run.stdout and token not in run.stderr  # dropped before anything could print it
