"""Validation runs: applicable validators, rule switches, the score formula, fail-on, many capsules in parallel."""

from __future__ import annotations

import json

import pytest

from qlcapsule import Finding, Severity
from qlcapsule.steps.validation import find_capsules, validate_capsules, validate_one, validator_score
from qlcapsule.testing import write_capsule

BASE = "name: demo\nversion: 1.0.0\ndescription: d\nlicense: MIT\n"


def test_score_formula():
    f = lambda s: Finding("x.y", s, "m")  # noqa: E731
    assert validator_score([]) == 1.0
    assert validator_score([f(Severity.ERROR)]) == 0.5
    assert validator_score([f(Severity.WARNING)]) == 0.8
    assert validator_score([f(Severity.NOTE)]) == pytest.approx(1 / 1.05)
    assert validator_score([f(Severity.ERROR), f(Severity.WARNING)]) == pytest.approx(1 / 2.25)


def test_capsule_score_is_the_mean_over_applicable_validators(tmp_path):
    rep = validate_one(write_capsule(tmp_path / "c", {"bad.py": "def (\n", "ok.json": "{}"}, definition=BASE).root)
    applied = rep.validators
    assert "python" in applied and "json" in applied and "dockerfile" not in applied
    assert applied["python"].score == 0.5 and applied["python"].errors == 1 and applied["python"].files == 1
    assert rep.score == pytest.approx(sum(v.score for v in applied.values()) / len(applied))
    assert rep.failed


def test_rules_and_validators_can_be_switched_off(tmp_path):
    definition = (
        BASE
        + "validate:\n  rules:\n    python.syntax: false\n    dockerfile: false\n    dockerfile.unknown-instruction: true\n"
        + "    hadolint: false\n"  # its own view of the same Dockerfile (with the hadolint extra)
    )
    files = {"bad.py": "def (\n", "Dockerfile": "FROM python\nFOO x\n"}
    rep = validate_one(write_capsule(tmp_path / "c", files, definition=definition).root)
    assert [f.rule for f in rep.findings] == ["dockerfile.unknown-instruction"]
    assert rep.suppressed == 2  # python.syntax and dockerfile.untagged-image
    assert rep.validators["python"].score == 1.0


def test_a_rule_or_validator_can_take_another_severity(tmp_path):
    """As the engines let a rule's level be set: zizmor's advice made an error, a dockerfile warning a note."""
    wf = "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/setup-python@v5\n"
    definition = (
        BASE + "validate:\n  rules:\n    zizmor.unpinned-uses: error\n    dockerfile: note\n    hadolint: false\n"
    )
    files = {".github/workflows/ci.yml": wf, "Dockerfile": "FROM python\n"}
    rep = validate_one(write_capsule(tmp_path / "c", files, definition=definition).root)
    got = {(f.rule, f.severity.value) for f in rep.findings if f.validator in ("zizmor", "dockerfile")}
    assert got == {("zizmor.unpinned-uses", "error"), ("dockerfile.untagged-image", "note")}
    assert rep.failed and rep.validators["zizmor"].errors == 1 and rep.validators["dockerfile"].notes == 1


def test_an_unknown_severity_is_a_definition_error(tmp_path):
    root = write_capsule(tmp_path / "c", {"a.py": "x = 1\n"}, definition=BASE, seal=False).root
    (root / "capsule.yaml").write_text(BASE + "validate:\n  rules:\n    python: fatal\n")
    (f,) = validate_one(root).findings
    assert (f.rule, f.line) == ("schema.invalid", 6)  # validate.rules, where the bad setting is
    assert f.message.endswith("python: 'fatal' is neither true/false nor a severity (error, warning, note)"), f.message


def test_fail_on_and_min_score(tmp_path):
    root = write_capsule(tmp_path / "c", {"Dockerfile": "FROM python\n"}, definition=BASE).root
    assert not validate_capsules([root]).failed  # a warning only
    assert validate_capsules([root], fail_on="warning").failed
    assert validate_capsules([root], min_score=0.999).failed
    (root / "capsule.yaml").write_text(BASE + "validate:\n  fail_on: warning\n")
    assert validate_capsules([root]).failed
    assert not validate_capsules([root], fail_on="never").failed


def test_many_capsules_in_parallel_match_serial(tmp_path):
    roots = []
    for i in range(6):
        files = {"a.py": "x = 1\n" if i % 2 else "x = (\n", "c.yaml": "a: 1\n"}
        roots.append(
            write_capsule(tmp_path / f"c{i}", files, name=f"c{i}", definition=BASE.replace("demo", f"c{i}")).root
        )
    parallel = validate_capsules(roots, jobs=2)
    serial = validate_capsules(roots, jobs=1)
    assert [c.to_dict() for c in parallel.capsules] == [c.to_dict() for c in serial.capsules]
    assert [c.name for c in parallel.capsules] == [f"c{i}" for i in range(6)]
    assert sum(c.counts()["error"] for c in parallel.capsules) == 3
    assert parallel.score == min(c.score for c in parallel.capsules)


def test_find_capsules_does_not_descend_into_capsules(tmp_path):
    write_capsule(tmp_path / "a", {"x.txt": "x"}, definition=BASE)
    write_capsule(tmp_path / "group" / "b", {"inner/capsule.yaml": "not: a capsule\n"}, definition=BASE)
    (tmp_path / ".venv" / "c").mkdir(parents=True)
    (tmp_path / ".venv" / "c" / "capsule.yaml").write_text(BASE)
    assert find_capsules(tmp_path) == [tmp_path / "a", tmp_path / "group" / "b"]


def test_cli_exit_codes_and_json(qlcapsule_cli, tmp_path):
    good = write_capsule(tmp_path / "good", {"a.py": "x = 1\n"}, definition=BASE).root
    bad = write_capsule(tmp_path / "bad", {"a.py": "x = (\n"}, definition=BASE).root
    res = qlcapsule_cli("validate", str(good))
    assert res.exit_code == 0 and "score 1.00" in res.stdout
    res = qlcapsule_cli("validate", str(good), str(bad), "--json")
    assert res.exit_code == 1
    data = json.loads(res.stdout)["result"]
    assert [c["passed"] for c in data["capsules"]] == [True, False]
    assert data["capsules"][1]["validators"]["python"]["errors"] == 1
    res = qlcapsule_cli("validate", str(bad), "--fail-on", "never")
    assert res.exit_code == 0
    res = qlcapsule_cli("validate", "-r", str(tmp_path), "--format", "json")
    assert res.exit_code == 1 and len(json.loads(res.stdout)["capsules"]) == 2  # the bare report


def test_cli_bad_input_is_one_line(qlcapsule_cli, tmp_path):
    res = qlcapsule_cli("validate", str(tmp_path / "missing"))
    assert res.exit_code == 2 and "no such directory" in res.stderr and "Traceback" not in res.output
    res = qlcapsule_cli("validate", str(tmp_path), "--min-score", "2")
    assert res.exit_code == 2
    (tmp_path / "capsule.yaml").write_text("name: x\nversion: 1.0.0\nbogus: 1\n")
    res = qlcapsule_cli("validate", str(tmp_path))
    assert res.exit_code == 2  # a malformed capsule.yaml is bad input, as for every command
    assert "capsule.yaml:3: error: bogus: unknown key [schema.invalid]" in res.stdout  # the report still says so
    assert res.stderr == f"error: {tmp_path}/capsule.yaml:3: bogus: unknown key\n"


def test_a_crashing_validator_is_a_finding(qlcapsule_plugin, tmp_path):
    from qlcapsule import Validator, hookimpl

    class Boom(Validator):
        name = "boom"
        patterns = ("*.txt",)

        def check_file(self, capsule, path, data):
            raise RuntimeError("kaboom")

    class Plugin:
        @hookimpl
        def qlcapsule_register_validators(self, register):
            register(Boom)

    qlcapsule_plugin(Plugin(), "boom-plugin")
    rep = validate_one(write_capsule(tmp_path / "c", {"a.txt": "x"}, definition=BASE).root)
    (f,) = [f for f in rep.findings if f.validator == "boom"]
    assert f.rule == "boom.failed" and "kaboom" in f.message and f.path == "a.txt"


# assembled at run time so this file itself holds no secret-shaped string
GH_TOKEN = "ghp_" + "A1b2C3d4" * 5
AWS_ID = "AKIA" + "IOSFODNN7REALKEY"


def test_no_validator_prints_a_secret_the_secrets_validator_hides(tmp_path):
    """Validators that quote a line (requirements, Dockerfile, Helm, YAML, Terraform) print no secret, in any format."""
    from qlcapsule.steps.report import render
    from qlcapsule.steps.validation import Report

    files = {
        "requirements.txt": f"foo[ @ https://x:{GH_TOKEN}@h/p.whl\nbar @ https://deploy:Zq8-w3rTy9x@h/b.whl ;;\n",
        "Dockerfile": f"FROM python:3.12\n{GH_TOKEN}\n",
        "Chart.yaml": f"apiVersion: v2\nname: {GH_TOKEN}\nversion: {AWS_ID}\n",
        "b.yaml": f"{GH_TOKEN}: 1\n{GH_TOKEN}: 2\n",
        "main.tf": f'resource "x" "y" {{\n  a = var.{AWS_ID}\n}}\n',
    }
    rep = validate_one(write_capsule(tmp_path / "c", files, definition=BASE).root)
    quoting = {"requirements.syntax", "dockerfile.unknown-instruction", "helm.chart", "yaml.duplicate-key"}
    assert quoting | {"terraform.undeclared-variable"} <= {f.rule for f in rep.findings}
    for fmt in ("text", "json", "sarif", "github"):
        out = render(Report([rep]), fmt)
        for secret in (GH_TOKEN, AWS_ID, "Zq8-w3rTy9x"):
            assert secret.lower() not in out.lower(), (fmt, secret)
    req = next(f for f in rep.findings if f.rule == "requirements.syntax")
    assert "https://x:***@h/p.whl" in req.message  # the rest of the line still shows what is wrong


def test_a_third_party_validator_cannot_print_a_secret(qlcapsule_plugin, tmp_path):
    from qlcapsule import Validator, hookimpl

    class Chatty(Validator):
        name = "chatty"
        patterns = ("*.txt",)

        def check_file(self, capsule, path, data):
            yield Finding(
                "chatty.line", Severity.WARNING, f"odd line {data.decode()!r}", path, 1, extra={"l": data.decode()}
            )

    class Plugin:
        @hookimpl
        def qlcapsule_register_validators(self, register):
            register(Chatty)

    qlcapsule_plugin(Plugin(), "chatty-plugin")
    rep = validate_one(write_capsule(tmp_path / "c", {"a.txt": f"token {GH_TOKEN}"}, definition=BASE).root)
    (f,) = [f for f in rep.findings if f.validator == "chatty"]
    assert f.message == "odd line 'token ***'" and f.extra == {"l": "token ***"}


def test_a_finding_carries_its_declared_rules_help_page(qlcapsule_plugin, tmp_path):
    """ship --json and the catalog have the findings but not the rules table: each finding of a rule declared
    with a help page carries it in extra, unless the validator gave the finding one of its own."""
    from qlcapsule import Rule, Validator, hookimpl

    class Helpful(Validator):
        name = "helpful"
        patterns = ("*.txt",)
        rules = (
            Rule("helpful.doc", "documented", Severity.WARNING, help_uri="https://example.org/rules/doc"),
            Rule("helpful.bare", "undocumented", Severity.WARNING),
        )

        def check_file(self, capsule, path, data):
            yield Finding("helpful.doc", Severity.WARNING, "declared help", path, 1)
            yield Finding("helpful.doc", Severity.WARNING, "own help", path, 2, extra={"help_uri": "https://x.test/2"})
            yield Finding("helpful.bare", Severity.WARNING, "no help", path, 3)

    class Plugin:
        @hookimpl
        def qlcapsule_register_validators(self, register):
            register(Helpful)

    qlcapsule_plugin(Plugin(), "helpful-plugin")
    rep = validate_one(write_capsule(tmp_path / "c", {"a.txt": "x"}, definition=BASE).root)
    found = {f["message"]: f.get("extra", {}) for f in rep.to_dict()["findings"] if f["validator"] == "helpful"}
    assert found == {
        "declared help": {"help_uri": "https://example.org/rules/doc"},
        "own help": {"help_uri": "https://x.test/2"},
        "no help": {},
    }


def test_quoted_source_is_cut(tmp_path):
    """A requirements error once quoted a whole 900 KB line."""
    rep = validate_one(
        write_capsule(tmp_path / "c", {"requirements.txt": "foo[ " + "x" * 900_000 + "\n"}, definition=BASE).root
    )
    (f,) = [f for f in rep.findings if f.rule == "requirements.syntax"]
    assert len(f.message) < 300 and "x…'" in f.message


def test_a_switched_off_validator_is_listed_as_disabled(qlcapsule_cli, tmp_path):
    root = write_capsule(tmp_path / "c", {"Dockerfile": "FROM ubuntu\n"}, definition=BASE).root
    (root / "capsule.yaml").write_text(BASE + "validate:\n  rules:\n    dockerfile: false\n    terraform: false\n")
    rep = validate_one(root)
    assert rep.disabled == ["dockerfile"]  # terraform would not have applied: no .tf file
    assert rep.suppressed == 0 and "dockerfile" not in rep.validators
    res = qlcapsule_cli("validate", str(root), "--json")
    assert json.loads(res.stdout)["result"]["capsules"][0]["disabled"] == ["dockerfile"]
    res = qlcapsule_cli("validate", str(root))
    assert "switched off in capsule.yaml, not run: dockerfile" in res.stdout
