"""Plain git hooks (hooks/pre-commit, hooks/pre-push) installed by ``qlcapsule hooks install``, run by real git."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qlcapsule.testing import write_capsule

REPO = Path(__file__).resolve().parents[2]
META = "description: sample\nlicense: Apache-2.0\n"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CEILING_DIRECTORIES=str(tmp_path),
    )
    return e


def git(cwd: Path, env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def qlcapsule(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "qlcapsule"
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def repo(tmp_path: Path, env: dict[str, str]) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, env, "init", "-q", "-b", "main")
    return r


def test_install_is_idempotent_and_refuses_to_clobber(repo: Path, env: dict[str, str]) -> None:
    first = qlcapsule(repo, env, "hooks", "install", "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)["result"]["hooks"]
    assert [(h["hook"], h["state"]) for h in data] == [("pre-commit", "installed"), ("pre-push", "installed")]
    for name in ("pre-commit", "pre-push"):
        installed = repo / ".git" / "hooks" / name
        assert installed.read_bytes() == (REPO / "hooks" / name).read_bytes()
        assert os.access(installed, os.X_OK)
    again = qlcapsule(repo, env, "hooks", "install", "--json")
    assert {h["state"] for h in json.loads(again.stdout)["result"]["hooks"]} == {"unchanged"}

    (repo / ".git" / "hooks" / "pre-push").write_text("#!/bin/sh\necho mine\n")
    refused = qlcapsule(repo, env, "hooks", "install")
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith("a different hook is already installed (use --force to replace it)")
    forced = qlcapsule(repo, env, "hooks", "install", "--force")
    assert forced.returncode == 0 and "replaced" in forced.stdout
    assert (repo / ".git" / "hooks" / "pre-push.bak").read_text() == "#!/bin/sh\necho mine\n"


def test_install_outside_a_repository_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    proc = qlcapsule(tmp_path, env, "hooks", "install")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "not inside a git repository" in proc.stderr


def test_pre_commit_hook_seals_then_validates(repo: Path, env: dict[str, str]) -> None:
    assert qlcapsule(repo, env, "hooks", "install").returncode == 0
    cap = repo / "svc"
    write_capsule(cap, {"app.py": "print('ok')\n"}, definition=f"name: svc\nversion: 1.0.0\n{META}", seal=False)
    git(repo, env, "add", ".")
    stopped = git(repo, env, "commit", "-qm", "add svc", check=False)
    assert stopped.returncode != 0  # the hook wrote capsule.lock: stage it and commit again
    assert "sealed svc: capsule.lock updated" in stopped.stdout + stopped.stderr
    assert (cap / "capsule.lock").is_file()
    git(repo, env, "add", "svc/capsule.lock")
    git(repo, env, "commit", "-qm", "add svc")
    assert "svc/capsule.lock" in git(repo, env, "ls-files").stdout

    (cap / "app.py").write_text("def broken(:\n")
    git(repo, env, "add", ".")
    git(repo, env, "commit", "-qm", "reseal", check=False)  # reseals first
    git(repo, env, "add", ".")
    bad = git(repo, env, "commit", "-qm", "broken", check=False)
    assert bad.returncode != 0 and "python.syntax" in bad.stdout + bad.stderr


def test_pre_push_verifies_pushed_capsules(repo: Path, env: dict[str, str], tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, env, "init", "-q", "--bare", str(remote))
    git(repo, env, "remote", "add", "origin", str(remote))
    assert qlcapsule(repo, env, "hooks", "install").returncode == 0
    cap = repo / "svc"
    write_capsule(cap, {"app.py": "print('ok')\n"}, definition=f"name: svc\nversion: 1.0.0\n{META}")
    git(repo, env, "add", ".")
    git(repo, env, "commit", "-qm", "svc")
    git(repo, env, "push", "-q", "origin", "main")  # a new branch: every capsule verified, all clean

    (cap / "app.py").write_text("print('tampered')\n")
    git(repo, env, "add", ".")
    git(repo, env, "commit", "-q", "--no-verify", "-m", "sneaky")
    pushed = git(repo, env, "push", "origin", "main", check=False)
    assert pushed.returncode != 0
    assert "FAILED svc" in pushed.stdout + pushed.stderr and "modified: app.py" in pushed.stdout + pushed.stderr
