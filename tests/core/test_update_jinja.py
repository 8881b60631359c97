"""qlcapsule update end to end with the real jinja generator and a git template repository.

The template repository's tags (v1, v2) do not spell the template version (1.0.0):
the base must be rendered at the recorded commit. This once failed with
"revision '1.0.0' not found".
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "tpl"
    (repo / "files").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "template.yaml").write_text("id: greeter\nversion: 1.0.0\nquestions:\n  name:\n    type: str\n    default: world\n")
    (repo / "files" / "hello.txt.j2").write_text("Hello {{ name }}!\nline two\n")
    (repo / "files" / "static.txt").write_text("static\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "v1")
    _git(repo, "tag", "v1")
    (repo / "template.yaml").write_text("id: greeter\nversion: 2.0.0\nquestions:\n  name:\n    type: str\n    default: world\n")
    (repo / "files" / "hello.txt.j2").write_text("Hello {{ name }}!\nline two\nline three from v2\n")
    _git(repo, "commit", "-qam", "v2")
    _git(repo, "tag", "v2")
    return repo


def test_update_applies_template_changes_and_keeps_local_edits(template_repo: Path, tmp_path: Path, qlcapsule_cli) -> None:
    app = tmp_path / "app"
    made = qlcapsule_cli("new", f"file://{template_repo}@v1", str(app), "--no-input", "--set", "name=Ada")
    assert made.exit_code == 0, made.output
    assert (app / "hello.txt").read_text() == "Hello Ada!\nline two\n"
    with open(app / "static.txt", "a") as f:
        f.write("local edit\n")
    result = qlcapsule_cli("update", str(app), "--to", "v2", "--json")
    assert result.exit_code == 0, result.output
    assert (app / "hello.txt").read_text() == "Hello Ada!\nline two\nline three from v2\n"
    assert (app / "static.txt").read_text() == "static\nlocal edit\n"
    definition = (app / "capsule.yaml").read_text()
    assert "version: 2.0.0" in definition and "@v2" in definition
    assert qlcapsule_cli("verify", str(app)).exit_code == 0


def test_update_conflict_leaves_markers_and_exits_1(template_repo: Path, tmp_path: Path, qlcapsule_cli) -> None:
    app = tmp_path / "app"
    assert qlcapsule_cli("new", f"file://{template_repo}@v1", str(app), "--no-input").exit_code == 0
    (app / "hello.txt").write_text("Hello world!\nline two\nmy own third line\n")
    result = qlcapsule_cli("update", str(app), "--to", "v2")
    assert result.exit_code == 1
    assert "hello.txt" in result.output
    text = (app / "hello.txt").read_text()
    assert "<<<<<<<" in text and "my own third line" in text and "line three from v2" in text
