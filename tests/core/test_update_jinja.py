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
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "tpl"
    (repo / "files").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "template.yaml").write_text(
        "id: greeter\nversion: 1.0.0\nquestions:\n  name:\n    type: str\n    default: world\n"
    )
    (repo / "files" / "hello.txt.j2").write_text("Hello {{ name }}!\nline two\n")
    (repo / "files" / "static.txt").write_text("static\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "v1")
    _git(repo, "tag", "v1")
    (repo / "template.yaml").write_text(
        "id: greeter\nversion: 2.0.0\nquestions:\n  name:\n    type: str\n    default: world\n"
    )
    (repo / "files" / "hello.txt.j2").write_text("Hello {{ name }}!\nline two\nline three from v2\n")
    _git(repo, "commit", "-qam", "v2")
    _git(repo, "tag", "v2")
    return repo


def test_update_applies_template_changes_and_keeps_local_edits(
    template_repo: Path, tmp_path: Path, qlcapsule_cli
) -> None:
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


def test_update_without_to_moves_a_pinned_source_to_the_newest_tag(
    template_repo: Path, tmp_path: Path, qlcapsule_cli
) -> None:
    """The default is the generator's newest version, not the @v1 the capsule was generated from."""
    app = tmp_path / "app"
    assert qlcapsule_cli("new", f"file://{template_repo}@v1", str(app), "--no-input").exit_code == 0
    result = qlcapsule_cli("update", str(app))
    assert result.exit_code == 0, result.output
    assert "from greeter 1.0.0 to 2.0.0" in result.stdout
    assert (app / "hello.txt").read_text() == "Hello world!\nline two\nline three from v2\n"
    assert f"source: file://{template_repo}@v2" in (app / "capsule.yaml").read_text()
    again = qlcapsule_cli("update", str(app))
    assert again.exit_code == 0 and "up to date with greeter 2.0.0" in again.stdout


def test_update_renders_folder_name_as_the_capsule_directory_and_keeps_comments(
    template_repo: Path, tmp_path: Path, qlcapsule_cli
) -> None:
    """An untouched capsule whose template uses _folder_name updates without conflicts; capsule.yaml keeps its
    comments and never gets a null."""
    (template_repo / "files" / "README.md.j2").write_text("# {{ _folder_name }}\n\nSome text.\n")
    (template_repo / "files" / "capsule.yaml.j2").write_text(
        "# keep this comment\nname: {{ _folder_name }}\nversion: 0.1.0  # bump me\n"
    )
    _git(template_repo, "add", "-A")
    _git(template_repo, "commit", "-qm", "v3")
    (template_repo / "template.yaml").write_text(
        "id: greeter\nversion: 3.1.0\nquestions:\n  name:\n    type: str\n    default: world\n"
    )
    _git(template_repo, "commit", "-qam", "v3.1")
    _git(template_repo, "tag", "v3.1.0")
    _git(template_repo, "tag", "v3.0.0", "HEAD~1")
    app = tmp_path / "my-app"
    assert qlcapsule_cli("new", f"file://{template_repo}@v3.0.0", str(app), "--no-input").exit_code == 0
    result = qlcapsule_cli("update", str(app), "--to", "v3.1.0")
    assert result.exit_code == 0, result.output
    assert (app / "README.md").read_text() == "# my-app\n\nSome text.\n"
    definition = (app / "capsule.yaml").read_text()
    assert definition.startswith("# keep this comment\nname: my-app\nversion: 0.1.0  # bump me\n")
    assert "version: 3.1.0" in definition and "@v3.1.0" in definition and "null" not in definition


def test_generator_record_is_edited_in_place_and_a_missing_value_is_removed(tmp_path: Path) -> None:
    from qlcapsule.store.merge import _set_generator_record

    (tmp_path / "capsule.yaml").write_text(
        "# top\nname: svc  # the name\nversion: 0.1.0\ngenerator:\n  # how it was made\n  template: t\n"
        "  version: 1.0.0  # old\n  commit: abc\n  source: /x\n  answers:\n    a: 1\nlabels: {k: v}\n"
    )
    _set_generator_record(tmp_path, {"template": "t", "version": "1.10", "commit": None, "source": "/x"})
    assert (tmp_path / "capsule.yaml").read_text() == (
        "# top\nname: svc  # the name\nversion: 0.1.0\ngenerator:\n  # how it was made\n  template: t\n"
        "  version: '1.10'  # old\n  source: /x\n  answers:\n    a: 1\nlabels: {k: v}\n"
    )
    _set_generator_record(tmp_path, {"template": "t", "version": "2.0.0", "commit": "def", "source": "u@v2"})
    text = (tmp_path / "capsule.yaml").read_text()
    assert "  version: 2.0.0  # old\n  source: u@v2\n  commit: def\n  answers:" in text and text.startswith("# top\n")
