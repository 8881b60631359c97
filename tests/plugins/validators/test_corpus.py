"""The validators on other projects' own test cases (tests/corpus, sources and licences in its README).

The figures are the ones docs/validation.md reports. Each is a floor or a ceiling, so a
change can only improve them: raise a floor or lower a ceiling when it does.
"""

from __future__ import annotations

import collections
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qlcapsule import Finding
from qlcapsule.steps.validation import validate_one
from qlcapsule.testing import write_capsule
from qlcapsule_plugins.validators import _engines, _jsonschema
from qlcapsule_plugins.validators._yaml import compose_all, to_data

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
SUFFIXES = (".yaml", ".yml", ".Dockerfile")

# actionlint's error cases (95): files with an error-level finding, and those with one on a line actionlint names
WORKFLOW_ERR_FOUND = 46
WORKFLOW_ERR_ON_ACTIONLINT_LINE = 38
# actionlint's valid cases (84) the SchemaStore schema (or PyYAML) rejects: listed in tests/corpus/README.md
WORKFLOW_OK_REJECTED = 14
# BuildKit's error cases (22): all found; BuildKit's parser test files (33) that would not build
DOCKERFILE_ERR_FOUND = 22
DOCKERFILE_OK_REJECTED = 8


def _capsule(tmp: Path, kind: str, sub: str, off: tuple[str, ...]) -> tuple[list[str], dict[str, list[Finding]]]:
    files = {}
    for p in sorted((CORPUS / kind / sub).iterdir()):
        if p.suffix in SUFFIXES:
            files[f".github/workflows/{p.name}" if kind == "workflows" else p.name] = p.read_bytes()
    root = tmp / f"{kind}-{sub}"
    shutil.rmtree(root, ignore_errors=True)
    rules = "".join(f"    {r}: false\n" for r in off)
    write_capsule(root, files, definition=f"name: corpus\nversion: 1.0.0\nvalidate:\n  rules:\n{rules}", seal=False)
    by: dict[str, list[Finding]] = collections.defaultdict(list)
    for f in validate_one(root).findings:
        if f.path in files:
            by[f.path].append(f)
    return list(files), by


def _errors(found: list[Finding]) -> list[Finding]:
    return [f for f in found if f.severity.value == "error"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Each set validated as one capsule; zizmor and hadolint are compared with themselves below."""
    tmp = tmp_path_factory.mktemp("corpus")
    off = ("secrets", "zizmor", "hadolint")
    return {(k, s): _capsule(tmp, k, s, off) for k in ("workflows", "dockerfiles") for s in ("err", "ok", "realworld")}


def test_workflow_error_cases(corpus):
    paths, by = corpus["workflows", "err"]
    found = [p for p in paths if _errors(by[p])]
    on_line = []
    for p in found:
        out = (CORPUS / "workflows" / "err" / Path(p).name).with_suffix(".out")
        lines = {int(m.group(1)) for m in re.finditer(r"^\S+?:(\d+):\d+:", out.read_text("utf-8"), re.M)}
        if any(f.line in lines for f in _errors(by[p])):
            on_line.append(p)
    assert len(paths) == 95
    assert len(found) >= WORKFLOW_ERR_FOUND, len(found)
    assert len(on_line) >= WORKFLOW_ERR_ON_ACTIONLINT_LINE, len(on_line)
    # the cases issue 19 found missed
    for name in ("empty_on", "invalid_permissions"):
        assert f".github/workflows/{name}.yaml" in found


def test_valid_workflows(corpus):
    paths, by = corpus["workflows", "ok"]
    assert len(paths) == 84
    rejected = [p for p in paths if _errors(by[p])]
    assert len(rejected) <= WORKFLOW_OK_REJECTED, rejected
    paths, by = corpus["workflows", "realworld"]
    assert len(paths) == 18
    assert {p: [f.text() for f in _errors(by[p])] for p in paths if _errors(by[p])} == {}


def test_the_schema_engine_is_reported_wherever_it_finds_something(corpus):
    """qlcapsule finds every case the engine it wraps finds: jsonschema's verdict, file by file."""
    for sub in ("err", "ok", "realworld"):
        paths, by = corpus["workflows", sub]
        for p in paths:
            docs, error = compose_all((CORPUS / "workflows" / sub / Path(p).name).read_text("utf-8"))
            if error is not None or not docs:
                continue
            engine = _jsonschema.errors("github-workflows", to_data(docs[0]))
            ours = [f for f in by[p] if f.rule == "github-workflow.schema"]
            assert bool(engine) == bool(ours), (p, engine, ours)


def test_dockerfiles(corpus):
    paths, by = corpus["dockerfiles", "err"]
    assert len(paths) == 22
    found = [p for p in paths if _errors(by[p])]
    assert len(found) >= DOCKERFILE_ERR_FOUND, sorted(set(paths) - set(found))
    paths, by = corpus["dockerfiles", "ok"]
    assert len(paths) == 33
    rejected = [p for p in paths if _errors(by[p])]
    assert len(rejected) <= DOCKERFILE_OK_REJECTED, rejected
    # what they are rejected for is what BuildKit's build refuses, not its parser: no stage, bare HEALTHCHECK, flags
    assert {f.rule for p in rejected for f in _errors(by[p])} <= {
        "dockerfile.from-first",
        "dockerfile.missing-args",
        "dockerfile.unknown-flag",
    }
    paths, by = corpus["dockerfiles", "realworld"]
    assert len(paths) == 13
    assert {p: [f.text() for f in _errors(by[p])] for p in paths if _errors(by[p])} == {}


def _engine_run(name: str, args: list[str], path: Path) -> list | None:
    """The engine's own findings for ``path``, or None when it audits nothing."""
    exe = _engines.binary(name)
    assert exe is not None
    done = subprocess.run([exe, *args, "-"], input=path.read_bytes(), capture_output=True, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


ZIZMOR = ["--offline", "--no-config", "--no-exit-codes", "--format", "json-v1"]


@pytest.mark.slow
def test_every_zizmor_finding_on_its_line(tmp_path):
    """zizmor on each workflow of the corpus, run by itself and through qlcapsule: the same (audit, line)."""
    for sub in ("err", "ok", "realworld"):
        paths, by = _capsule(tmp_path, "workflows", sub, ("secrets", "hadolint"))
        for p in paths:
            source = CORPUS / "workflows" / sub / Path(p).name
            docs, error = compose_all(source.read_text("utf-8"))
            if error is not None or not docs:
                continue  # the yaml validator's, or an empty file: zizmor is not run
            ours = [(f.rule, f.line, f.severity.value) for f in by[p] if f.validator == "zizmor"]
            found = _engine_run("zizmor", ZIZMOR, source)
            if found is None:  # zizmor audits nothing (not a workflow it can read): one note says so
                assert ours == [("zizmor.failed", None, "note")], p
                continue
            theirs = []
            for item in found:
                primary = next(loc for loc in item["locations"] if loc["symbolic"]["kind"] == "Primary")
                theirs.append((f"zizmor.{item['ident']}", primary["concrete"]["location"]["start_point"]["row"] + 1))
            assert sorted((r, n) for r, n, _s in ours) == sorted(theirs), p


@pytest.mark.slow
@pytest.mark.skipif(_engines.binary("hadolint") is None, reason="hadolint is not installed (the hadolint extra)")
def test_every_hadolint_finding_on_its_line(tmp_path):
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    args = ["--no-fail", "--config", str(config), "--format", "json"]
    for sub in ("err", "ok", "realworld"):
        paths, by = _capsule(tmp_path, "dockerfiles", sub, ("secrets",))
        for p in paths:
            found = _engine_run("hadolint", args, CORPUS / "dockerfiles" / sub / p)
            assert found is not None, p
            theirs = [(f"hadolint.{i['code']}", i["line"]) for i in found]
            ours = [(f.rule, f.line) for f in by[p] if f.validator == "hadolint"]
            assert sorted(ours) == sorted(theirs), p
