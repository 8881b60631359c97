"""`qlcapsule new`: answers from --set / --answers-file / defaults, recording, sealing, clean failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from qlcapsule import Capsule, InputError
from qlcapsule.steps.generation import load_answers_file, new_capsule
from qlcapsule.testing import alias_bomb


def test_new_with_no_input_records_the_generator_and_seals(qlcapsule_cli, tmp_path):
    dest = tmp_path / "orders"
    res = qlcapsule_cli("new", "fastapi-service", str(dest), "--no-input", "--set", "resource=order", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)["result"]
    assert data["capsule"] == "orders" and data["generator"]["template"] == "fastapi-service"
    capsule = Capsule.load(dest)
    capsule.verify_integrity()
    gen = yaml.safe_load((dest / "capsule.yaml").read_text())["generator"]
    import qlcapsule_plugins.generators as generators

    template = yaml.safe_load(
        (Path(generators.__file__).parent / "templates" / "fastapi-service" / "template.yaml").read_text()
    )
    assert gen["version"] == template["version"] and gen["source"] == "fastapi-service"
    assert gen["answers"]["resource"] == "order" and gen["answers"]["port"] == 8000
    assert list(gen["answers"])[:3] == ["name", "resource", "resource_plural"]


def test_generation_is_byte_identical(tmp_path):
    a = new_capsule("fastapi-service", tmp_path / "a" / "svc", answers={"port": "9000"}, interactive=False)
    b = new_capsule("fastapi-service", tmp_path / "b" / "svc", answers={"port": "9000"}, interactive=False)
    assert a.digest == b.digest
    assert (a.root / "capsule.lock").read_bytes() == (b.root / "capsule.lock").read_bytes()


def test_answers_file_and_set_precedence(tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text("resource: invoice\nport: 7000\n")
    c = new_capsule(
        "fastapi-service", tmp_path / "billing", answers={"port": "7100"}, answers_file=answers, interactive=False
    )
    got = c.definition.generator.answers
    assert (got["resource"], got["port"]) == ("invoice", 7100)
    # a capsule.yaml works as an answers file: its recorded answers are reused
    again = new_capsule(
        "fastapi-service", tmp_path / "billing2", answers={}, answers_file=c.root / "capsule.yaml", interactive=False
    )
    assert again.definition.generator.answers == got


def test_without_a_terminal_and_without_no_input_it_fails_clearly(qlcapsule_cli, tmp_path):
    res = qlcapsule_cli("new", "fastapi-service", str(tmp_path / "x"))
    assert res.exit_code == 2
    assert "stdin is not a terminal" in res.stderr and "--no-input" in res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "port=abc"], "answer port: 'abc': expected int"),
        (["--set", "nosuch=1"], "--set nosuch: template fastapi-service asks no such question"),
        (["--set", "novalue"], "expected KEY=VALUE"),
        (["--set", "x" * 5000], "'" + "x" * 77 + "...': expected KEY=VALUE"),
        (["--set", "python_version=2.7"], "is not one of"),
    ],
)
def test_bad_answers(qlcapsule_cli, tmp_path, args, message):
    res = qlcapsule_cli("new", "fastapi-service", str(tmp_path / "x"), "--no-input", *args)
    assert res.exit_code == 2 and message in res.stderr, res.output
    assert res.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_refuses_a_non_empty_directory_and_unknown_templates(qlcapsule_cli, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine\n")
    res = qlcapsule_cli("new", "fastapi-service", str(tmp_path / "full"), "--no-input")
    assert res.exit_code == 2 and "not an empty directory" in res.stderr
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    res = qlcapsule_cli("new", "no-such-template", str(tmp_path / "y"), "--no-input")
    assert res.exit_code == 2 and "no generator handles it" in res.stderr


def test_an_empty_directory_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    c = new_capsule("fastapi-service", tmp_path / "empty", answers={}, interactive=False)
    assert c.name == "empty"


def test_template_without_capsule_yaml_gets_a_minimal_one(tmp_path):
    tpl = tmp_path / "tpl"
    (tpl / "files").mkdir(parents=True)
    (tpl / "template.yaml").write_text("id: tiny\nversion: 0.1.0\nquestions:\n  greeting: {default: hello}\n")
    (tpl / "files" / "hello.txt.j2").write_text("{{ greeting }}\n")
    c = new_capsule(str(tpl), tmp_path / "My_Thing", answers={}, interactive=False)
    assert (c.name, c.version) == ("my-thing", "0.1.0")
    assert c.definition.generator.template == "tiny"
    assert (c.root / "hello.txt").read_text() == "hello\n"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.yaml", "- 1\n", "expected a mapping"),
        ("a.json", "{bad", r"a.json:1: not valid JSON"),
        ("a.json", "[" * 100_000, "nested too deeply"),
        ("a.yaml", "[" * 100_000, "nested too deeply"),
        ("a.yaml", "a: [1\n", r"a.yaml:2: invalid YAML"),
        ("a.yaml", "port: 1\nport: 2\n", r"a.yaml:2: port: duplicate key"),
        ("a.yaml", alias_bomb(), "more than 100000 YAML nodes added by aliases"),
    ],
)
def test_bad_answers_files(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match="--answers-file .*" + expected):
        load_answers_file(path)


def test_generates_in_place_into_the_current_empty_directory(qlcapsule_cli, tmp_path, monkeypatch):
    """'new T .' works, and an existing empty directory is filled, not replaced (a shell in it stays valid)."""
    here = tmp_path / "orders"
    here.mkdir()
    inode = here.stat().st_ino
    monkeypatch.chdir(here)
    res = qlcapsule_cli("new", "fastapi-service", ".", "--no-input")
    assert res.exit_code == 0, res.output
    assert here.stat().st_ino == inode and (here / "main.py").is_file()
    assert Capsule.load(here).name == "orders"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders"]  # no temporary sibling left
    Capsule.load(here).verify_integrity()


def test_parents_created_for_a_failed_generation_are_removed(qlcapsule_cli, tmp_path):
    res = qlcapsule_cli("new", "fastapi-service", str(tmp_path / "a" / "b" / "c"), "--no-input", "--set", "port=x")
    assert res.exit_code == 2 and "answer port" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_invalid_rendered_capsule_yaml_names_no_temporary_directory(tmp_path):
    tpl = tmp_path / "tpl"
    (tpl / "files").mkdir(parents=True)
    (tpl / "template.yaml").write_text("id: tiny\nversion: 0.1.0\nquestions:\n  license: {default: MIT}\n")
    (tpl / "files" / "capsule.yaml.j2").write_text("name: svc\nversion: 0.1.0\nlicense: {{ license }}\n")
    with pytest.raises(InputError) as err:
        new_capsule(str(tpl), tmp_path / "out" / "svc", answers={"license": "yes"}, interactive=False)
    message = err.value.message
    assert "the capsule.yaml it renders is invalid: capsule.yaml:3: license" in message, message
    assert ".tmp" not in message and str(tmp_path) not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tpl"]
