"""The Action's inputs agree with the CLI and the components: fail-on values, and the extras it installs."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import yaml
from action_main import load_main

REPO = Path(__file__).resolve().parents[2]


action = load_main("qlcapsule_action_main_inputs")


def test_fail_on_takes_what_validate_takes_and_action_yml_says_so() -> None:
    from qlcapsule.cli._common import main
    from qlcapsule.format.model import ValidateConfig

    validate = main.get_command(None, "validate")  # type: ignore[arg-type]
    choice = next(p for p in validate.params if p.name == "fail_on").type
    assert tuple(choice.choices) == action.FAIL_ON
    assert typing.get_args(ValidateConfig.model_fields["fail_on"].annotation) == action.FAIL_ON
    described = yaml.safe_load((REPO / "action.yml").read_text())["inputs"]["fail-on"]["description"]
    listed = re.search(r"fails the run: (.*) \(default", described)
    assert listed is not None and re.split(r", | or ", listed.group(1)) == list(action.FAIL_ON)
    docs = (REPO / "docs" / "action.md").read_text()
    assert "| `fail-on` | the capsule's `validate.fail_on` | `error`, `warning` or `never` |" in docs


@pytest.mark.parametrize("value", ["note", "ERROR", "warn"])
def test_a_fail_on_the_cli_does_not_take_is_refused_by_its_input_name(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from qlcapsule.testing import write_capsule

    write_capsule(tmp_path / "cap", {"a.txt": "a\n"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    for command in ("validate", "ship"):
        monkeypatch.setenv("INPUT_COMMAND", command)
        monkeypatch.setenv("INPUT_PATH", "cap")
        monkeypatch.setenv("INPUT_FAIL_ON", value)
        assert action.main([]) == 2
        errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::error")]
        assert len(errors) == 1 and errors[0].endswith(f"fail-on: {value!r} is not one of error, warning, never")
    assert not (tmp_path / "dist").exists()  # refused before ship did anything


def test_the_extras_the_action_installs_are_the_ones_components_declare() -> None:
    from qlcapsule.plugins.manager import registry

    declared = {}
    for cls in registry().all("deliverer"):
        if cls.requires:
            match = re.fullmatch(r"qlcapsule\[([a-z0-9-]+)\]", cls.extra)
            assert match, f"{cls.name}: extra {cls.extra!r} is not a qlcapsule extra"
            declared[cls.name] = match.group(1)
    # the Action reads provider names before qlcapsule is installed: each provider's extra is its own name
    assert declared == {name: name for name in action.EXTRAS}
    pyproject = (REPO / "pyproject.toml").read_text()
    for extra in declared.values():
        assert re.search(rf"^{extra} = \[", pyproject, re.M), f"no [{extra}] extra in pyproject.toml"
