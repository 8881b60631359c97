"""capsule.yaml: every bad input is one line naming file, key and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qlcapsule import DefinitionError
from qlcapsule.model import CapsuleDefinition, load_definition


def _load(tmp_path: Path, text: str) -> CapsuleDefinition:
    path = tmp_path / "capsule.yaml"
    path.write_text(text, encoding="utf-8")
    return load_definition(path)


def test_minimal_definition_has_defaults(tmp_path: Path) -> None:
    d = _load(tmp_path, "name: orders\nversion: 1.2.3-rc.1+build.5\n")
    assert d.name == "orders"
    assert d.include == ["**"]
    assert ".git" in d.all_excludes()
    assert d.validate_config.fail_on == "error"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: orders\nversion: 1.0.0\ncolour: red\n", ":3: colour: unknown key"),
        ("name: Orders_Svc\nversion: 1.0.0\n", ":1: name: 'Orders_Svc' is not a DNS label"),
        ("name: orders\nversion: '1.0'\n", ":2: version: '1.0' is not a SemVer"),
        ("name: orders\nversion: 01.0.0\n", ":2: version: '01.0.0' is not a SemVer"),
        ("name: orders\nversion: 1.0.0\ninclude:\n  - src/**\n  - '[oops'\n", ":3: include: bad glob '[oops'"),
        ("name: orders\nversion: 1.0.0\nexclude: ['../up']\n", "exclude: bad glob '../up'"),
        ("name: orders\nversion: 1.0.0\nvalidate:\n  fail_on: sometimes\n", ":4: validate.fail_on:"),
        ("name: orders\nversion: 1.0.0\ntargets:\n  prod:\n    bucket: x\n", "targets.prod.provider: required key is missing"),
        ("name: orders\nversion: 1.0.0\nname: again\n", ":3: name: duplicate key (first at line 1)"),
        ("name: orders\nversion: [1.0.0\n", "invalid YAML"),
        ("- just\n- a list\n", ":1: expected a mapping"),
        ("version: 1.0.0\n", "name: required key is missing"),
    ],
)
def test_bad_definitions_name_key_and_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(DefinitionError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "capsule.yaml") in message
    assert expected in message


def test_non_utf8_definition(tmp_path: Path) -> None:
    (tmp_path / "capsule.yaml").write_bytes(b"name: caf\xe9\nversion: 1.0.0\n")
    with pytest.raises(DefinitionError, match="not UTF-8"):
        load_definition(tmp_path / "capsule.yaml")


def test_schema_command_prints_json_schemas(qlcapsule_cli) -> None:
    cap = qlcapsule_cli("schema", "capsule")
    assert cap.exit_code == 0
    schema = json.loads(cap.stdout)
    assert set(schema["required"]) == {"name", "version"}
    assert schema["additionalProperties"] is False
    assert "validate" in schema["properties"]
    lock = json.loads(qlcapsule_cli("schema", "lock").stdout)
    assert "digest" in lock["properties"]


def test_dns_label_edges(tmp_path: Path) -> None:
    assert _load(tmp_path, f"name: {'a' * 63}\nversion: 0.0.0\n").name == "a" * 63
    for bad in ("a" * 64, "-a", "a-", "a.b", "ä"):
        with pytest.raises(DefinitionError, match="DNS label"):
            _load(tmp_path, f"name: '{bad}'\nversion: 0.0.0\n")
