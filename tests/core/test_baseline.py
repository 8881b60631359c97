"""`validate --baseline`: findings of an earlier JSON report are left out; only new ones count and fail."""

from __future__ import annotations

import json

from qlcapsule.testing import write_capsule

BASE = "name: svc\nversion: 1.0.0\ndescription: d\nlicense: MIT\n"


def test_an_adopting_repository_fails_only_on_new_findings(tmp_path, qlcapsule_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_capsule(tmp_path / "svc", {"a.py": "def (\n", "b.py": "x = 1\n"}, definition=BASE)
    first = qlcapsule_cli("validate", "svc", "--format", "json", "-o", "baseline.json")
    assert first.exit_code == 1
    again = qlcapsule_cli("validate", "svc", "--baseline", "baseline.json", "--json")
    assert again.exit_code == 0, again.stdout
    (capsule,) = json.loads(again.stdout)["result"]["capsules"]
    assert capsule["findings"] == [] and capsule["baselined"] >= 1 and capsule["score"] == 1.0
    # the same finding on another line is still the baselined one; a new one fails the run
    (tmp_path / "svc" / "a.py").write_text("\n\ndef (\n")
    (tmp_path / "svc" / "b.py").write_text("class (\n")
    res = qlcapsule_cli("validate", "svc", "--baseline", "baseline.json")
    assert res.exit_code == 1
    assert "svc/b.py:1:7: error" in res.stdout and "[python.syntax]" in res.stdout
    assert not [ln for ln in res.stdout.splitlines() if "svc/a.py" in ln and "python.syntax" in ln]
    assert "finding(s) in the baseline, not counted" in res.stdout


def test_a_baseline_that_is_not_a_report_is_one_line_exit_2(tmp_path, qlcapsule_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_capsule(tmp_path / "svc", {"a.py": "x = 1\n"}, definition=BASE)
    (tmp_path / "bad.json").write_text('{"score": 1}')
    (tmp_path / "broken.json").write_text("{")
    for name, message in [
        ("missing.json", "error: missing.json: cannot read the baseline: No such file or directory"),
        (
            "bad.json",
            "error: bad.json: not a report written by 'qlcapsule validate --format json' (no 'capsules' list)",
        ),
        ("broken.json", "error: broken.json:1: invalid JSON: Expecting property name enclosed in double quotes"),
    ]:
        res = qlcapsule_cli("validate", "svc", "--baseline", name)
        assert (res.exit_code, res.stderr.strip()) == (2, message)
