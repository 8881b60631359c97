"""The pre-commit hooks, run by the real ``pre-commit try-repo`` on a sample repository.

The published manifest says ``language: python``, so users' pre-commit builds
an isolated environment with qlcapsule in it. Building that environment means
pip-installing qlcapsule and its dependencies (pygit2, cryptography, pydantic...)
from an index, which needs the network and takes a minute, so this test serves
pre-commit a copy of the manifest that differs only in ``language: system``,
and puts this checkout's ``qlcapsule`` first on PATH. Everything else — ids,
entries, file passing, serial execution, exit codes, "files were modified" —
is pre-commit's own behaviour on the real manifest. A separate test checks the
copy differs in nothing but the language.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qlcapsule.testing import write_capsule

REPO = Path(__file__).resolve().parents[2]
META = "description: sample\nlicense: Apache-2.0\n"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _system_manifest() -> list[dict]:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    return [{**h, "language": "system"} for h in hooks]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}",
        PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CEILING_DIRECTORIES=str(tmp_path),
        PRE_COMMIT_COLOR="never",
    )
    e.pop("QLCAPSULE_STORE", None)
    return e


@pytest.fixture
def hooks_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "hooks-repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / ".pre-commit-hooks.yaml").write_text(yaml.safe_dump(_system_manifest(), sort_keys=False))
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "hooks")
    return repo


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """clean/ sealed, tampered/ sealed then edited, broken/ sealed but with a syntax error, other/ untouched."""
    repo = tmp_path / "sample"
    repo.mkdir()
    _git(repo, "init", "-q")
    write_capsule(repo / "clean", {"app.py": "print('ok')\n"}, definition=f"name: clean\nversion: 1.0.0\n{META}")
    write_capsule(repo / "tampered", {"app.py": "print('ok')\n"}, definition=f"name: tampered\nversion: 1.0.0\n{META}")
    (repo / "tampered" / "app.py").write_text("print('evil')\n")
    write_capsule(repo / "broken", {"app.py": "def f(:\n"}, definition=f"name: broken\nversion: 1.0.0\n{META}")
    write_capsule(repo / "other", {"app.py": "print('ok')\n"}, definition=f"name: other\nversion: 1.0.0\n{META}")
    (repo / "README.md").write_text("not in any capsule\n")
    _git(repo, "add", ".")
    return repo


def try_repo(sample: Path, hooks_repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("pre-commit", path=env["PATH"])
    assert exe, "pre-commit is in the dev extra"
    return subprocess.run(
        [exe, "try-repo", str(hooks_repo), *args], cwd=sample, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_test_manifest_differs_only_in_language() -> None:
    from pre_commit.clientlib import load_manifest

    real = load_manifest(str(REPO / ".pre-commit-hooks.yaml"))
    assert [h["id"] for h in real] == ["qlcapsule-seal", "qlcapsule-validate", "qlcapsule-verify"]
    assert all(h["language"] == "python" and h["minimum_pre_commit_version"] != "0" for h in real)
    assert all(h["require_serial"] for h in real)
    raw = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert [{k: v for k, v in h.items() if k != "language"} for h in raw] == [
        {k: v for k, v in h.items() if k != "language"} for h in _system_manifest()
    ]


def test_clean_capsules_pass_every_hook(sample: Path, hooks_repo: Path, env: dict[str, str]) -> None:
    proc = try_repo(sample, hooks_repo, env, "--files", "clean/app.py", "clean/capsule.yaml", "README.md")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("qlcapsule seal", "qlcapsule validate", "qlcapsule verify"):
        assert any(line.startswith(name) and line.endswith("Passed") for line in proc.stdout.splitlines()), proc.stdout


def test_verify_fails_on_a_tampered_capsule_and_ignores_untouched_ones(
    sample: Path, hooks_repo: Path, env: dict[str, str]
) -> None:
    bad = try_repo(sample, hooks_repo, env, "qlcapsule-verify", "--files", "tampered/app.py")
    assert bad.returncode == 1
    assert "qlcapsule verify" in bad.stdout and "Failed" in bad.stdout
    assert "modified: app.py" in bad.stdout
    # a commit that touches only clean/ does not look at tampered/
    ok = try_repo(sample, hooks_repo, env, "qlcapsule-verify", "--files", "clean/app.py")
    assert ok.returncode == 0, ok.stdout
    every = try_repo(sample, hooks_repo, env, "qlcapsule-verify", "--all-files")
    assert every.returncode == 1 and "tampered" in every.stdout and "FAILED" in every.stdout


def test_validate_fails_on_findings(sample: Path, hooks_repo: Path, env: dict[str, str]) -> None:
    proc = try_repo(sample, hooks_repo, env, "qlcapsule-validate", "--files", "broken/app.py")
    assert proc.returncode == 1
    assert "python.syntax" in proc.stdout and "broken/app.py" in proc.stdout
    assert try_repo(sample, hooks_repo, env, "qlcapsule-validate", "--files", "clean/app.py").returncode == 0


def test_seal_fixes_then_passes(sample: Path, hooks_repo: Path, env: dict[str, str]) -> None:
    before = (sample / "tampered" / "capsule.lock").read_bytes()
    first = try_repo(sample, hooks_repo, env, "qlcapsule-seal", "--files", "tampered/app.py")
    assert first.returncode == 1
    assert "sealed tampered: capsule.lock updated" in first.stdout
    assert (sample / "tampered" / "capsule.lock").read_bytes() != before
    _git(sample, "add", "tampered/capsule.lock")
    second = try_repo(sample, hooks_repo, env, "qlcapsule-seal", "--files", "tampered/app.py")
    assert second.returncode == 0, second.stdout
    assert try_repo(sample, hooks_repo, env, "qlcapsule-verify", "--files", "tampered/app.py").returncode == 0
