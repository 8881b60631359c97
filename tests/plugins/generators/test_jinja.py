"""The jinja generator: sources (built-in, directory, git URL@rev), questions, conditions, safety, determinism."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path

import pygit2
import pytest

from qlcapsule import InputError, UnsafePathError
from qlcapsule.testing import alias_bomb
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: x\nversion: 1\nid: y\n", r"template.yaml:3: id: duplicate key \(first at line 1\)"),
        ("id: x\nversion: [1\n", r"template.yaml:3: invalid YAML"),
        (alias_bomb(), "template.yaml: more than 100000 YAML nodes added by aliases"),  # was ~1e9 nodes, then OOM
    ],
)
def test_template_yaml_is_read_with_the_guarded_loader(tmp_path, text, expected):
    tpl = write_template(tmp_path / "tpl")
    (tpl / "template.yaml").write_text(text)
    with pytest.raises(InputError, match=expected):
        JinjaGenerator().generate(str(tpl), tmp_path / "o", {})
    assert not (tmp_path / "o").exists()


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


# -- hostile templates: .git, errors from any Python operation, limits ----------------------------------------


def bare_template(root: Path, files: dict[str, str], spec: str = "") -> Path:
    (root / "files").mkdir(parents=True)
    (root / "template.yaml").write_text("id: t\nversion: 1.0.0\n" + spec)
    for rel, text in files.items():
        p = root / "files" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@pytest.mark.parametrize(
    "path",
    ["{{ '.git' }}/config", ".GIT/config", "sub/{{ '.Git' }}/HEAD", "{{ '.git' }}.j2", "{{ '.git.' }}/config"],
)
def test_a_template_cannot_write_a_git_directory_or_file(tmp_path, path):
    """A planted .git/config with core.fsmonitor would run the template's command on the first 'git status'."""
    tpl = bare_template(tmp_path / "tpl", {path: "[core]\n\tfsmonitor = touch PWNED\n", "app.py": "print(1)\n"})
    with pytest.raises(UnsafePathError, match=r"template path .*: a template may not write \.git"):
        JinjaGenerator().generate(str(tpl), tmp_path / "o", {})
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("files", "spec", "message"),
    [
        ({"a.txt.j2": "ok\n{{ 1/0 }}\n"}, "", r"template t: a\.txt\.j2:2: ZeroDivisionError: division by zero"),
        (
            {"a": "x"},
            'questions:\n  a: {type: int, default: "{{ 1//0 }}"}\n',
            r"template.yaml: questions\.a\.default: Zero",
        ),
        (
            {"a": "x"},
            'questions:\n  a: {type: int, default: 1, when: "1/0"}\n',
            r"template.yaml: questions\.a\.when: Zero",
        ),
        ({"a": "x"}, 'conditions:\n  "*": "1/0"\n', r"template.yaml: conditions\['\*'\] \(for a\): Zero"),
        ({"{{ 'a' * 'b' }}": "x"}, "", r"path \{\{ 'a' \* 'b' \}\}: TypeError"),
        ({"a.j2": "{% macro f(n) %}{{ f(n+1) }}{% endmacro %}{{ f(0) }}\n"}, "", r"a\.j2:1: recursion too deep"),
        ({"a.j2": '{% include "a.j2" %}\n'}, "", r"a\.j2:1: recursion too deep"),
        ({"a.j2": "{{ 9**4999 }}\n"}, "", r"a\.j2:1: an integer too large to write out"),
        ({"a.j2": "{{ 'x' * 1500000000 }}\n"}, "", r"a\.j2:1: repeating a str 1500000000 times is too large"),
        ({"a.j2": "{{ 9**999999999 }}\n"}, "", r"a\.j2:1: 9 \*\* 999999999 is too large"),
        (
            {"a.j2": "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}"},
            "",
            "a product of over",
        ),
        ({"a.j2": "{{ x }\n"}, "", r"a\.j2:1: unexpected '}'"),
        ({"a": "x"}, 'exclude: ["[z-a]"]\n', r"template.yaml: exclude\[0\]: bad glob '\[z-a\]'"),
        ({"a": "x"}, 'conditions:\n  "[z-a]": "true"\n', r"template.yaml: conditions\['\[z-a\]'\]: bad glob"),
    ],
)
def test_template_errors_are_one_line_input_errors(tmp_path, files, spec, message):
    """Not 'internal error' (exit 70): the template file (and line) and what went wrong, exit 2."""
    tpl = bare_template(tmp_path / "tpl", files, spec)
    with pytest.raises(InputError, match=message) as err:
        JinjaGenerator().generate(str(tpl), tmp_path / "o", {})
    assert "\n" not in err.value.message and len(err.value.message) < 400
    assert not (tmp_path / "o").exists()


def test_cli_reports_a_template_error_with_exit_2(qlcapsule_cli, tmp_path):
    tpl = bare_template(tmp_path / "tpl", {"a.txt.j2": "{{ 1/0 }}\n"})
    res = qlcapsule_cli("new", str(tpl), str(tmp_path / "o"), "--no-input")
    assert res.exit_code == 2, res.output
    assert res.stderr == "error: template t: a.txt.j2:1: ZeroDivisionError: division by zero\n"


@pytest.mark.parametrize(
    ("files", "spec", "answers", "message"),
    [
        (
            {"a.j2": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"},
            "",
            {},
            r"template t: a\.j2:1: takes longer than 0\.5 s, the limit for rendering a template",
        ),
        # \Z (like lookarounds and backreferences) is beyond the linear engine: Python's re, under the clock
        (
            {"a": "x"},
            'questions:\n  n: {type: str, regex: "^(a+)+\\\\Z", default: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"}\n',
            {},
            r"questions\.n\.default: matching 'a+!' against '\^\(a\+\)\+\\\\Z' takes longer than 0\.5 s",
        ),
        (
            {"a": "x"},
            'questions:\n  n: {type: str, regex: "^(a+)+(?!x)$"}\n',
            {"n": "a" * 40 + "!"},
            r"answer n: matching 'a+!' against .* takes longer than 0\.5 s",
        ),
    ],
)
def test_runaway_templates_and_regexes_stop_at_the_time_limit(tmp_path, monkeypatch, files, spec, answers, message):
    monkeypatch.setattr("qlcapsule_plugins.generators.jinja.RENDER_SECONDS", 0.5)
    tpl = bare_template(tmp_path / "tpl", files, spec)
    with pytest.raises(InputError, match=message):
        JinjaGenerator().generate(str(tpl), tmp_path / "o", answers)
    assert not (tmp_path / "o").exists()


def _in_a_thread(fn, seconds: float = 20) -> object:
    """``fn()``'s result (or exception) from another thread, where no SIGALRM timer can be set."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # handed to the test, which asserts on it
            out.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    return out[0]


@pytest.mark.parametrize("pattern", ["^(a+)+$", "(a|a)*", r"^(\w+\s?)+$"])
def test_a_backtracking_regex_is_matched_in_linear_time_in_any_thread(tmp_path, pattern):
    """pydantic-core's Rust engine decides: no backtracking, so no clock is needed (off the main thread none can ring)."""
    tpl = bare_template(tmp_path / "tpl", {"a": "x"}, f"questions:\n  n: {{type: str, regex: '{pattern}'}}\n")
    err = _in_a_thread(lambda: JinjaGenerator().generate(str(tpl), tmp_path / "o", {"n": "a" * 5000 + "!"}), 10)
    assert isinstance(err, InputError) and "does not match" in err.message, err


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("^[a-z]+$", "demo", True),
        ("^[a-z]+$", "demo\n", False),  # '$' before a final newline must not count as the end
        ("[a-z]+", "demo\n", False),
        ("(?=d)demo", "demo", True),  # a lookahead: Python's re
        ("(a)\\1", "aa", True),  # a backreference: Python's re
        ("(?i)ab|c", "AB", True),
        ("a|ab", "ab", True),
    ],
)
def test_question_regexes_match_the_whole_answer(pattern, text, expected):
    from qlcapsule_plugins.generators._spec import fullmatch

    assert fullmatch(pattern, text) is expected


@pytest.mark.skipif(sys.gettrace() is not None, reason="a tracer (coverage, debugger) is set; the budget keeps it")
def test_nested_loops_that_call_nothing_stop_in_another_thread(tmp_path, monkeypatch):
    """10^9 loop steps, no call or operator for the sandbox to check: the trace function checks the clock."""
    monkeypatch.setattr("qlcapsule_plugins.generators.jinja.RENDER_SECONDS", 0.5)
    items = "[" + ",".join(["1"] * 1000) + "]"
    body = f"{{% set l = {items} %}}{{% for a in l %}}{{% for b in l %}}{{% for c in l %}}{{% endfor %}}{{% endfor %}}{{% endfor %}}"
    tpl = bare_template(tmp_path / "tpl", {"a.j2": body})
    err = _in_a_thread(lambda: JinjaGenerator().generate(str(tpl), tmp_path / "o", {}))
    assert isinstance(err, InputError) and "takes longer than 0.5 s" in err.message, err
    assert sys.gettrace() is None and not (tmp_path / "o").exists()
    ok = bare_template(tmp_path / "ok", {"a.j2": "{% for i in range(3) %}{{ i }}{% endfor %}"})
    assert _in_a_thread(lambda: JinjaGenerator().generate(str(ok), tmp_path / "o2", {})) is not None
    assert (tmp_path / "o2" / "a").read_text() == "012"


def test_the_time_limit_leaves_no_timer_behind(tmp_path):
    import signal

    tpl = bare_template(tmp_path / "tpl", {"a.j2": "{{ 1 }}"})
    JinjaGenerator().generate(str(tpl), tmp_path / "o", {})
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL


def test_rendered_output_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr("qlcapsule_plugins.generators.jinja.MAX_FILE_CHARS", 1000)
    tpl = bare_template(tmp_path / "tpl", {"a.j2": "{% for i in range(2000) %}x{% endfor %}"})
    with pytest.raises(
        InputError, match=r"template t: a\.j2: renders to more than 1000 characters, the limit for one file"
    ):
        JinjaGenerator().generate(str(tpl), tmp_path / "o", {})


@pytest.mark.parametrize(
    "value",
    [
        "MIT",
        "yes",
        "null",
        "@x",
        "a: b",
        "- x",
        "x # y",
        "MIT\nvalidate:\n  rules: {}",
        "'q' \"d\"",
        "1.10",
        "",
        "\u2028\x85",
    ],
)
def test_yaml_and_py_filters_read_back_as_the_value(value):
    import yaml

    from qlcapsule_plugins.generators.jinja import FILTERS

    line = FILTERS["yaml"](value)
    assert "\n" not in line and yaml.safe_load(f"key: {line}\nother: 1\n") == {"key": value, "other": 1}
    code = FILTERS["py"](value)
    assert "\n" not in code and eval(code) == value  # noqa: S307 - the point is that it is a literal


def test_template_yaml_fields_are_checked(tmp_path):
    cases = [
        ("id: t\nversion: 1.10\n", r"version: 1\.1 is read as a number; quote it"),
        ('id: "a\\nb"\nversion: 1.0.0\n', r"id: 'a\\nb' must be one line of printable characters"),
        ("id: t\nversion: 1.0.0\nquestions:\n  p: {type: str, min: 1}\n", "min and max are for int and float"),
    ]
    for i, (text, message) in enumerate(cases):
        tpl = bare_template(tmp_path / f"tpl{i}", {"a": "x"})
        (tpl / "template.yaml").write_text(text)
        with pytest.raises(InputError, match=message):
            JinjaGenerator().generate(str(tpl), tmp_path / "o", {})
    tpl = bare_template(tmp_path / "ok", {"a": "x"})
    (tpl / "template.yaml").write_text('id: t\nversion: "1.10"\n')
    assert JinjaGenerator().generate(str(tpl), tmp_path / "o", {}).version == "1.10"


def test_min_max_and_long_answers_in_messages(tmp_path):
    tpl = bare_template(
        tmp_path / "tpl",
        {"a": "x"},
        "questions:\n  port: {type: int, default: 80, min: 1, max: 65535}\n  s: {regex: '[a-z]+', default: a}\n",
    )
    with pytest.raises(InputError, match=r"answer port: 0 is not in 1\.\.65535"):
        JinjaGenerator().generate(str(tpl), tmp_path / "o", {"port": "0"})
    with pytest.raises(InputError) as err:
        JinjaGenerator().generate(str(tpl), tmp_path / "o", {"s": "X" * 10_000})
    assert len(err.value.message) < 200 and "XXX..." in err.value.message


def test_a_file_and_a_directory_of_the_same_name_are_one_line(tmp_path):
    tpl = bare_template(tmp_path / "tpl", {"x/y": "a", "{{ 'x' }}": "b"})
    with pytest.raises(
        InputError, match=r"template t: \{\{ 'x' \}\} renders to the file x, but x/y needs x to be a directory"
    ):
        JinjaGenerator().generate(str(tpl), tmp_path / "o", {})
