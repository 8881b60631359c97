"""capsule.yaml: every bad input is one line naming file, key and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qlcapsule import DefinitionError
from qlcapsule.format.model import CapsuleDefinition, load_definition


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
        (
            "name: orders\nversion: 1.0.0\ntargets:\n  prod:\n    formats: [tar.gz]\n",
            "targets.prod.provider: required key is missing",
        ),
        ("name: orders\nversion: 1.0.0\nname: again\n", ":3: name: duplicate key (first at line 1)"),
        ("name: orders\nversion: [1.0.0\n", "invalid YAML"),
        ("- just\n- a list\n", ":1: expected a mapping"),
        ("version: 1.0.0\n", "name: required key is missing"),
        # "$" matches before a final newline: the name and version regexes must end in \Z
        ('name: "orders\\n"\nversion: 1.0.0\n', ":1: name: 'orders\\n' is not a DNS label"),
        ("name: |\n  orders\nversion: 1.0.0\n", ":1: name: 'orders\\n' is not a DNS label"),
        ('name: orders\nversion: "1.0.0\\n"\n', ":2: version: '1.0.0\\n' is not a SemVer"),
        # scalars PyYAML resolves but Python cannot build: one line with the line, not a ValueError
        ("name: orders\nversion: 1.0.0\ndescription: 2024-02-30\n", ":3: invalid YAML: cannot read '2024-02-30'"),
        ("name: orders\nversion: 1.0.0\nlabels:\n  n: " + "7" * 5000 + "\n", ":4: invalid YAML: cannot read '777"),
        # aliases: one budget (yamlsrc.MAX_NODES) for values and keys alike, and no alias inside its own anchor
        ("name: orders\nversion: 1.0.0\ndescription: &a [*a]\n", "an alias refers to itself"),
        (
            "name: orders\nversion: 1.0.0\n"
            + "".join(f"? &k{i} [{', '.join([f'*k{i - 1}'] * 10) if i else 'x'}]\n: {i}\n" for i in range(9)),
            "more than 100000 YAML nodes added by aliases",
        ),
    ],
)
def test_bad_definitions_name_key_and_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(DefinitionError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "capsule.yaml") in message
    assert expected in message


def test_a_definition_over_1_mib_is_refused_before_parsing(tmp_path: Path) -> None:
    """Parsing work grows with the text; real definitions are a few KiB."""
    text = "name: orders\nversion: 1.0.0\nlabels:\n" + "".join(f"  k{i}: v\n" for i in range(150_000))
    (tmp_path / "capsule.yaml").write_text(text)
    assert len(text) > 1024 * 1024
    with pytest.raises(DefinitionError, match=r"capsule\.yaml: larger than 1 MiB; not read as YAML"):
        load_definition(tmp_path / "capsule.yaml")


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


# -- every error, not the first ------------------------------------------------------


def test_every_error_is_listed_with_file_line_and_key(tmp_path: Path) -> None:
    """A second error used to hide behind "(and 1 more error)"; a near-miss key names the key meant."""
    from qlcapsule.format.model import Problem, SchemaError

    path = tmp_path / "capsule.yaml"
    with pytest.raises(SchemaError) as info:
        _load(tmp_path, "name: orders\nverison: 0.1.0\n")
    assert info.value.problems == [
        Problem(str(path), 1, "version", "required key is missing"),
        Problem(str(path), 2, "verison", "unknown key (did you mean version?)"),
    ]
    assert str(info.value).splitlines() == [
        f"{path}:1: version: required key is missing",
        f"{path}:2: verison: unknown key (did you mean version?)",
    ]
    assert "more error" not in str(info.value)


def test_errors_in_nested_mappings_are_all_listed_in_file_order(tmp_path: Path) -> None:
    text = (
        "name: Orders\n"
        "version: 1.0.0\n"
        "descripton: x\n"
        "targets:\n"
        "  prod:\n"
        "    provder: s3\n"
        "policy:\n"
        "  threshhold: 2\n"
        "ship: {sign: maybe}\n"
        "colour: red\n"
    )
    with pytest.raises(DefinitionError) as info:
        _load(tmp_path, text)
    lines = [line.split("capsule.yaml", 1)[1] for line in str(info.value).splitlines()]
    assert lines == [
        ":1: name: 'Orders' is not a DNS label (lowercase a-z, 0-9 and '-', 1-63 characters)",
        ":3: descripton: unknown key (did you mean description?)",
        ":5: targets.prod.provider: required key is missing",
        ":6: targets.prod.provder: unknown key (did you mean provider?)",
        ":8: policy.threshhold: unknown key (did you mean threshold?)",
        ":9: ship.sign: Input should be a valid boolean, unable to interpret input",
        ":10: colour: unknown key",  # nothing close: no suggestion
    ]


def test_a_key_close_to_a_missing_required_key_is_suggested_first(tmp_path: Path) -> None:
    """'nane' is close to 'name' (missing) more than to any other key."""
    with pytest.raises(DefinitionError, match=r":1: nane: unknown key \(did you mean name\?\)"):
        _load(tmp_path, "nane: orders\nversion: 1.0.0\n")


def test_the_cli_lists_every_error(tmp_path: Path, qlcapsule_cli) -> None:
    (tmp_path / "capsule.yaml").write_text("name: orders\nverison: 0.1.0\n")
    res = qlcapsule_cli("seal", str(tmp_path))
    assert res.exit_code == 2
    assert "capsule.yaml:1: version: required key is missing" in res.stderr
    assert "capsule.yaml:2: verison: unknown key (did you mean version?)" in res.stderr
    assert "Traceback" not in res.stderr


def test_validate_reports_each_error_as_a_finding(tmp_path: Path) -> None:
    from qlcapsule.steps.validation import validate_one

    (tmp_path / "capsule.yaml").write_text("name: orders\nverison: 0.1.0\n")
    report = validate_one(tmp_path)
    assert [(f.rule, f.path, f.line, f.message) for f in report.findings] == [
        ("schema.invalid", "capsule.yaml", 1, "version: required key is missing"),
        ("schema.invalid", "capsule.yaml", 2, "verison: unknown key (did you mean version?)"),
    ]
    assert report.validators["schema"].errors == 2


def test_a_bad_character_range_in_a_glob_is_one_line(tmp_path: Path) -> None:
    """'[z-a]' used to escape as re.error (an internal error); it is a bad glob like any other."""
    with pytest.raises(DefinitionError, match=r"capsule.yaml:3: exclude: .*bad character class"):
        _load(tmp_path, "name: orders\nversion: 1.0.0\nexclude: ['[z-a].log']\n")
