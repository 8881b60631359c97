"""Engines: `validate --engines` lists them; a missing one is a finding, never a silently weaker check."""

from __future__ import annotations

import json
import types

from qlcapsule import Engine, Rule, Validator, hookimpl
from qlcapsule.steps.validation import validate_one
from qlcapsule.testing import write_capsule

MISSING = Engine("frobnicator", None, "pip install frobnicator", "frobnication checks")
OPTIONAL = Engine("extra-lint", None, "pip install 'qlcapsule[extra-lint]'", "extra lints", optional=True)


class FrobValidator(Validator):
    """A third-party validator whose engine is not installed."""

    name = "frob"
    patterns = ("*.frob",)
    rules = (Rule("frob.bad", "bad frob"),)

    def engines(self):
        return (MISSING, OPTIONAL)


def _plugin() -> types.ModuleType:
    mod = types.ModuleType("frob_plugin")

    @hookimpl
    def qlcapsule_register_validators(register):
        register(FrobValidator)

    mod.qlcapsule_register_validators = qlcapsule_register_validators  # type: ignore[attr-defined]
    return mod


def test_a_missing_engine_is_a_warning_where_its_validator_applies(tmp_path):
    write_capsule(tmp_path / "a", {"x.frob": "x"})
    write_capsule(tmp_path / "b", {"x.txt": "x"})
    report = validate_one(tmp_path / "a", validators=[FrobValidator()])
    assert [(f.rule, f.severity.value) for f in report.findings] == [("frob.engine-missing", "warning")]
    assert "frobnicator is not installed" in report.findings[0].message
    assert "pip install frobnicator" in report.findings[0].message
    assert report.validators["frob"].warnings == 1  # it weighs into the score like any warning
    # an optional engine (an extra) is listed by --engines, not reported per capsule; a capsule
    # without a matching file is not told about engines it does not need
    assert validate_one(tmp_path / "b", validators=[FrobValidator()]).findings == []


def test_validate_engines_lists_every_engine(qlcapsule_cli):
    res = qlcapsule_cli("validate", "--engines")
    assert res.exit_code == 0, res.stdout
    assert (
        "schemastore: check-jsonschema " in res.stdout
        and "[compose, dependabot, github-action, github-workflow]" in res.stdout
    )
    rows = {r["engine"]: r for r in json.loads(qlcapsule_cli("validate", "--engines", "--json").stdout)["result"]}
    assert rows["schemastore"]["present"] and not rows["schemastore"]["optional"]


def test_validate_engines_fails_when_a_default_engine_is_missing(qlcapsule_cli, qlcapsule_plugin):
    qlcapsule_plugin(_plugin(), "frob-plugin")
    res = qlcapsule_cli("validate", "--engines")
    assert res.exit_code == 1
    assert "frobnicator: MISSING: pip install frobnicator [frob]" in res.stdout
    assert "extra-lint: MISSING (optional): pip install 'qlcapsule[extra-lint]' [frob]" in res.stdout
