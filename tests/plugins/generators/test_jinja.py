"""The jinja generator: sources (built-in, directory, git URL@rev), questions, conditions, safety, determinism."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pygit2
import pytest

from qlcapsule import InputError, UnsafePathError
from qlcapsule_plugins.generators import _source
from qlcapsule_plugins.generators.jinja import JinjaGenerator

SPEC = """id: demo-tpl
version: {version}
questions:
  name: {{type: str, default: "{{{{ _folder_name | kebab }}}}", regex: "^[a-z][a-z-]*$", help: "a name"}}
  port: {{type: int, default: 8000}}
  flavour: {{type: str, default: vanilla, choices: [vanilla, mint]}}
  docker: {{type: bool, default: true}}
  registry: {{type: str, default: ghcr.io, when: docker}}
conditions:
  "Dockerfile.j2": docker
"""


def write_template(root: Path, version: str = "1.0.0", extra: dict[str, bytes | str] | None = None) -> Path:
    files: dict[str, bytes | str] = {
        "template.yaml": SPEC.format(version=version),
        "files/README.md.j2": "# {{ name }} on {{ port }} ({{ flavour }})\n",
        "files/{{ name | snake }}/__init__.py.j2": "NAME = {{ name | tojson }}\n",
        "files/Dockerfile.j2": "FROM python:3.12-slim\nEXPOSE {{ port }}\n",
        "files/{% if flavour == 'mint' %}mint.txt{% endif %}": "mint\n",
        "files/logo.png": bytes(range(256)) + b"{{ not rendered }}",
        "files/run.sh": "#!/bin/sh\necho {{ left alone }}\n",
    }
    files.update(extra or {})
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    os.chmod(root / "files/run.sh", 0o755)
    return root


def digest_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode & 0o777)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_renders_paths_and_contents_copies_others_untouched(tmp_path):
    tpl = write_template(tmp_path / "tpl")
    out = tmp_path / "My Service"
    rec = JinjaGenerator().generate(str(tpl), out, {"name": "shop-api"})
    assert rec.template == "demo-tpl" and rec.version == "1.0.0" and rec.commit is None
    assert rec.source == tpl.resolve().as_posix()
    assert rec.answers == {
        "name": "shop-api",
        "port": 8000,
        "flavour": "vanilla",
        "docker": True,
        "registry": "ghcr.io",
    }
    assert rec.files == ["Dockerfile", "README.md", "logo.png", "run.sh", "shop_api/__init__.py"]
    assert (out / "README.md").read_text() == "# shop-api on 8000 (vanilla)\n"
    assert (out / "shop_api/__init__.py").read_text() == 'NAME = "shop-api"\n'
    assert (out / "logo.png").read_bytes() == (tpl / "files/logo.png").read_bytes()
    assert "{{ left alone }}" in (out / "run.sh").read_text()
    assert (out / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (out / "README.md").stat().st_mode & 0o777 == 0o644


def test_conditional_files_by_condition_and_by_empty_path(tmp_path):
    tpl = write_template(tmp_path / "tpl")
    rec = JinjaGenerator().generate(str(tpl), tmp_path / "o", {"name": "x", "docker": "no", "flavour": "mint"})
    assert "Dockerfile" not in rec.files and "mint.txt" in rec.files
    assert "registry" not in rec.answers  # asked only when docker


def test_same_template_and_answers_give_identical_bytes(tmp_path):
    tpl = write_template(tmp_path / "tpl")
    a = JinjaGenerator().generate(str(tpl), tmp_path / "a" / "svc", {"port": "9000"})
    b = JinjaGenerator().generate(str(tpl), tmp_path / "b" / "svc", {"port": 9000})
    assert a.answers == b.answers
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"port": "eighty"}, "answer port: 'eighty': expected int"),
        ({"flavour": "chocolate"}, "is not one of vanilla, mint"),
        ({"name": "Bad Name"}, "does not match"),
        ({"docker": "maybe"}, "expected true or false"),
    ],
)
def test_bad_answers_are_one_line_errors(tmp_path, answers, message):
    tpl = write_template(tmp_path / "tpl")
    with pytest.raises(InputError, match=message):
        JinjaGenerator().generate(str(tpl), tmp_path / "o", answers)
    assert not (tmp_path / "o").exists()


def test_without_a_terminal_interactive_mode_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    tpl = write_template(tmp_path / "tpl")
    with pytest.raises(InputError, match="stdin is not a terminal.*--no-input"):
        JinjaGenerator().generate(str(tpl), tmp_path / "o", {}, interactive=True)


def test_prompts_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    replies = iter(["Bad Name", "good-name", "8080", "mint", "n"])
    monkeypatch.setattr("click.prompt", lambda *a, **k: next(replies))
    monkeypatch.setattr("click.confirm", lambda *a, **k: next(replies) == "y")
    tpl = write_template(tmp_path / "tpl")
    rec = JinjaGenerator().generate(str(tpl), tmp_path / "o", {}, interactive=True)
    assert rec.answers == {"name": "good-name", "port": 8080, "flavour": "mint", "docker": False}


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("files/{{ '..' }}/evil.txt", UnsafePathError),
        ("files/{{ '..\\x2f..\\x2fevil' }}.txt", UnsafePathError),
        ("files/{{ '.' ~ '.' }}/x.txt", UnsafePathError),
    ],
)
def test_rendered_paths_cannot_escape(tmp_path, path, error):
    tpl = write_template(tmp_path / "tpl", extra={path: "x"})
    with pytest.raises(error):
        JinjaGenerator().generate(str(tpl), tmp_path / "o" / "svc", {"name": "x"})
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*"))


def test_sandbox_blocks_unsafe_attributes_and_undefined_names(tmp_path):
    tpl = write_template(tmp_path / "tpl", extra={"files/x.txt.j2": "{{ ''.__class__.__mro__[1].__subclasses__() }}"})
    with pytest.raises(InputError, match="x.txt.j2"):
        JinjaGenerator().generate(str(tpl), tmp_path / "o", {"name": "x"})
    tpl2 = write_template(tmp_path / "tpl2", extra={"files/y.txt.j2": "{{ no_such_answer }}"})
    with pytest.raises(InputError, match="y.txt.j2.*no_such_answer"):
        JinjaGenerator().generate(str(tpl2), tmp_path / "o", {"name": "x"})
    assert not (tmp_path / "o").exists()


def test_symlinks_in_templates_are_refused(tmp_path):
    tpl = write_template(tmp_path / "tpl")
    os.symlink("/etc/passwd", tpl / "files/passwd")
    with pytest.raises(UnsafePathError, match="symlink"):
        JinjaGenerator().generate(str(tpl), tmp_path / "o", {"name": "x"})


def test_bad_template_yaml(tmp_path):
    tpl = write_template(tmp_path / "tpl")
    (tpl / "template.yaml").write_text("id: x\nversion: 1\nquestions:\n  a: {type: list}\n")
    with pytest.raises(InputError, match=r"template.yaml: questions\.a\.type"):
        JinjaGenerator().generate(str(tpl), tmp_path / "o", {})


def _commit_all(repo: pygit2.Repository, message: str) -> pygit2.Oid:
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    sig = pygit2.Signature("t", "t@example.org", 1700000000, 0)
    parents = [] if repo.head_is_unborn else [repo.head.target]
    return repo.create_commit("HEAD", sig, sig, message, tree, parents)


def test_git_url_with_rev_and_version_selection(tmp_path):
    tpl = write_template(tmp_path / "repo")
    repo = pygit2.init_repository(str(tpl))
    first = _commit_all(repo, "v1")
    repo.references.create("refs/tags/v1.0.0", first)
    (tpl / "template.yaml").write_text(SPEC.format(version="2.0.0"))
    (tpl / "files/NEW.md").write_text("new in 2\n")
    second = _commit_all(repo, "v2")
    url = tpl.resolve().as_uri()
    gen = JinjaGenerator()
    assert gen.handles(url + "@v1.0.0")
    old = gen.generate(url + "@v1.0.0", tmp_path / "old", {"name": "x"})
    assert (old.version, old.commit, "NEW.md" in old.files) == ("1.0.0", str(first), False)
    assert old.source == url + "@v1.0.0"
    new = gen.generate(url, tmp_path / "new", {"name": "x"})
    assert (new.version, new.commit, "NEW.md" in new.files) == ("2.0.0", str(second), True)
    again = gen.generate(url, tmp_path / "again", {"name": "x"}, version=str(first))
    assert again.commit == str(first)
    # the local directory keeps its history too: version selects a tag of the enclosing repository
    local = gen.generate(str(tpl), tmp_path / "local", {"name": "x"}, version="1.0.0")
    assert (local.version, local.commit) == ("1.0.0", str(first))
    with pytest.raises(InputError, match="revision 'v9' not found"):
        gen.generate(url + "@v9", tmp_path / "bad", {"name": "x"})


def test_unreachable_git_source_is_a_remote_error(tmp_path):
    from qlcapsule import RemoteError

    with pytest.raises(RemoteError, match="cannot clone template"):
        JinjaGenerator().generate((tmp_path / "nope.git").as_uri(), tmp_path / "o", {})


@pytest.mark.parametrize(
    ("source", "url", "rev"),
    [
        ("https://github.com/org/tpl.git@v1.2", "https://github.com/org/tpl.git", "v1.2"),
        ("https://user@github.com/org/tpl.git", "https://user@github.com/org/tpl.git", None),
        ("git@github.com:org/tpl.git@main", "git@github.com:org/tpl.git", "main"),
        ("git+ssh://git@host/tpl@feature/x", "ssh://git@host/tpl", "feature/x"),
    ],
)
def test_split_rev(source, url, rev):
    assert _source.split_rev(source) == (url, rev)


def test_builtin_template_version_pinning(tmp_path):
    gen = JinjaGenerator()
    assert gen.handles("fastapi-service") and not gen.handles("no-such-template")
    with pytest.raises(InputError, match="keep only their current version"):
        gen.generate("fastapi-service", tmp_path / "o", {}, version="0.0.1")
