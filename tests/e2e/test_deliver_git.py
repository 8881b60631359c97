"""The git deliverer against real git: ``git http-backend`` behind basic auth (see fixtures_forge.git_http).

Read-backs look at the server's bare repository with the git CLI, independent of pygit2.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fixtures_forge import CANARY_GIT_PASSWORD
from operator_targets import add_operator_target, assert_capsule_target_refused

from qlcapsule import Capsule

pytestmark = pytest.mark.e2e


def _capsule(
    make_capsule: Any,
    remote: str,
    root: Path | None = None,
    version: str = "1.0.0",
    target: str = "repo",
    **options: Any,
) -> Capsule:
    opts = {"url": remote, "token_env": "GIT_TOKEN", "username": "ci", "retries": 1, **options}
    add_operator_target(target, {"provider": "git", "options": opts})
    definition = f"name: orders\nversion: {version}\n"
    cap = make_capsule(
        {"app.py": "print('hi')\n", "bin/run.sh": "#!/bin/sh\n"},
        definition=definition,
        seal=False,
        **({"root": root} if root else {}),
    )
    (cap.root / "bin/run.sh").chmod(0o755)
    cap.seal()
    return cap


def _artifact(tmp_path: Path, data: bytes = b"chart bytes", name: str = "orders-1.0.0.tgz") -> Path:
    p = tmp_path / "out" / name
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(data)
    return p


def _run(qlcapsule_cli: Any, *args: str, token: str | None = CANARY_GIT_PASSWORD) -> Any:
    result = qlcapsule_cli("-vv", *args, env={"GIT_TOKEN": token or ""})
    assert CANARY_GIT_PASSWORD not in result.output, "the git password leaked"
    return result


def _ls_tree(git_http: Any, repo: str, ref: str) -> dict[str, str]:
    out = git_http.git(repo, "ls-tree", "-r", ref)
    return {line.split("\t")[1]: line.split()[0] for line in out.splitlines()}


def test_push_lands_and_is_idempotent(make_capsule: Any, git_http: Any, qlcapsule_cli: Any, tmp_path: Path) -> None:
    """The branch holds the capsule and dist/<artifact>; the tag points at it; a second push changes nothing."""
    cap = _capsule(make_capsule, git_http.url("capsules.git"), tag="{name}-{version}")
    art = _artifact(tmp_path)
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "repo", "-a", str(art), "--json")
    assert res.exit_code == 0, res.output
    (receipt,) = json.loads(res.stdout)["result"]["receipts"]
    assert receipt["location"] == f"{git_http.url('capsules.git')}#capsules:dist/orders-1.0.0.tgz"
    commit = receipt["extra"]["commit"]
    assert git_http.git("capsules.git", "rev-parse", "refs/heads/capsules").strip() == commit
    assert git_http.git("capsules.git", "rev-parse", "refs/tags/orders-1.0.0").strip() == commit
    modes = _ls_tree(git_http, "capsules.git", "capsules")
    assert set(modes) == {rel for rel, _, _ in cap.payload()} | {"dist/orders-1.0.0.tgz"}
    assert modes["bin/run.sh"] == "100755"
    for rel, path, _ in cap.payload():
        shown = subprocess.run(
            ["git", "-C", str(git_http.root / "capsules.git"), "show", f"capsules:{rel}"],
            capture_output=True,
            check=True,
        ).stdout
        assert shown == path.read_bytes()
    again = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "repo", "-a", str(art), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["result"]["receipts"][0]["extra"]["committed"] is False
    assert git_http.git("capsules.git", "rev-list", "--count", "capsules").strip() == "1"


def test_next_version_keeps_earlier_exports(
    make_capsule: Any, git_http: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A second version adds a commit on top; dist/ keeps the first version's file; a changed old file conflicts."""
    url = git_http.url("capsules.git")
    cap1 = _capsule(make_capsule, url, root=tmp_path / "v1")
    assert _run(qlcapsule_cli, "deliver", str(cap1.root), "-t", "repo", "-a", str(_artifact(tmp_path))).exit_code == 0
    cap2 = _capsule(make_capsule, url, root=tmp_path / "v2", version="1.1.0")
    art2 = _artifact(tmp_path, b"v2", "orders-1.1.0.tgz")
    assert _run(qlcapsule_cli, "deliver", str(cap2.root), "-t", "repo", "-a", str(art2)).exit_code == 0
    tree = _ls_tree(git_http, "capsules.git", "capsules")
    assert {"dist/orders-1.0.0.tgz", "dist/orders-1.1.0.tgz"} <= set(tree)
    assert git_http.git("capsules.git", "rev-list", "--count", "capsules").strip() == "2"
    res = _run(qlcapsule_cli, "deliver", str(cap2.root), "-t", "repo", "-a", str(_artifact(tmp_path, b"changed")))
    assert res.exit_code == 1 and "already has dist/orders-1.0.0.tgz with other content" in res.stderr, res.output


def test_rejected_push_fails(make_capsule: Any, git_http: Any, qlcapsule_cli: Any, tmp_path: Path) -> None:
    """A pre-receive hook rejection is a failure (libgit2 does not raise for it), and nothing lands."""
    cap = _capsule(make_capsule, git_http.url("locked.git"))
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "repo", "-a", str(_artifact(tmp_path)))
    assert res.exit_code == 3, res.output
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("error: git: ") and "rejected refs/heads/capsules" in line, line
    assert git_http.git("locked.git", "for-each-ref").strip() == ""


def test_credentials(make_capsule: Any, git_http: Any, qlcapsule_cli: Any, tmp_path: Path) -> None:
    """Missing token: one line naming the variable; wrong token: rejected; no token_env: the server's demand is named."""
    url = git_http.url("capsules.git")
    cap = _capsule(make_capsule, url)
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "repo", "--dry-run", token=None)
    assert res.exit_code == 2 and res.stderr.strip().splitlines()[-1] == (
        "error: missing credential: environment variable GIT_TOKEN is not set (token for the git target)"
    )
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "repo", "--dry-run", token="wrong-token-value")
    assert (
        res.exit_code == 2 and "rejected the token in GIT_TOKEN" in res.stderr and "wrong-token-value" not in res.output
    )
    anon = _capsule(make_capsule, url, root=tmp_path / "anon", target="anon", token_env=None)
    res = _run(qlcapsule_cli, "deliver", str(anon.root), "-t", "anon", "--dry-run")
    assert res.exit_code == 2 and "asks for a login; set token_env" in res.stderr, res.output
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "repo", "--dry-run", "-a", str(_artifact(tmp_path)))
    assert res.exit_code == 0 and "would deliver" in res.stdout, res.output
    assert git_http.git("capsules.git", "for-each-ref").strip() == ""


def test_options_checked_before_the_network(
    make_capsule: Any, git_http: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A password in the URL, an unknown scheme or a bad branch: exit 2, one line, no connection."""
    cases = [
        ({"url": "https://ci:secret-in-url@127.0.0.1:1/x.git"}, "must not contain a password"),
        ({"url": "ftp://127.0.0.1/x.git"}, "url"),
        ({"branch": "bad..branch"}, "branch"),
        ({"artifacts_path": "../out"}, "artifacts_path"),
    ]
    for i, (opts, needle) in enumerate(cases):
        cap = _capsule(make_capsule, git_http.url("capsules.git"), root=tmp_path / f"c{i}", **opts)
        res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "repo", "-a", str(_artifact(tmp_path)))
        line = res.stderr.strip().splitlines()[-1]
        assert res.exit_code == 2 and "targets.repo.options" in line and needle in line, line
        assert "secret-in-url" not in res.output


def test_a_capsule_defined_git_target_is_refused(make_capsule: Any, qlcapsule_cli: Any, monkeypatch: Any) -> None:
    """A pull request's capsule.yaml sends the release key as the git password: refused, nothing sent."""
    from faultproxy import Recorder

    monkeypatch.setenv("QLCAPSULE_KEY", CANARY_GIT_PASSWORD)
    far = Recorder(401)
    try:
        opts = {"url": f"{far.url}/x.git", "token_env": "QLCAPSULE_KEY", "username": "ci"}
        cap = make_capsule(
            {"app.py": "print('hi')\n"},
            definition=f"name: orders\nversion: 1.0.0\ntargets:\n  repo:\n    provider: git\n    options: {json.dumps(opts)}\n",
        )
        assert_capsule_target_refused(qlcapsule_cli, cap.root, "repo", far, (CANARY_GIT_PASSWORD,))
    finally:
        far.stop()
