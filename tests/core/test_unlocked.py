"""In place: files inside a capsule but outside its lock that change what it does are named by ``verify``.

The built-in excludes (``.git``, ``__pycache__/``, ``*.py[cod]``, ...) keep such files out of the lock,
so a signed capsule with a planted ``.pyc`` or ``.git/config`` still verifies: ``verify`` warns about
them on stderr and ``verify --strict`` fails (exit 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from qlcapsule import Capsule
from qlcapsule.pipeline import verify_capsule
from qlcapsule.signing.signatures import keygen, sign_capsule

PYC = b"\xa7\r\r\n\x01\x00\x00\x00" + b"\x00" * 8 + b"planted"


def _pyc(root: Path) -> str:
    (root / "src/__pycache__").mkdir(parents=True)
    (root / "src/__pycache__/app.cpython-311.pyc").write_bytes(PYC)
    return "compiled Python src/__pycache__/"


def _stray_pyc(root: Path) -> str:
    (root / "src/app.pyc").write_bytes(PYC)  # next to the source: imported when app.py is missing
    return "compiled Python src/app.pyc"


def _git(root: Path) -> str:
    (root / ".git").mkdir()
    (root / ".git/config").write_text("[core]\n\tfsmonitor = touch /tmp/qlcapsule-evil\n")
    return "VCS metadata .git/"


def _gitfile(root: Path) -> str:
    (root / ".git").write_text("gitdir: /tmp/elsewhere\n")  # a worktree's .git file: git follows it
    return "VCS metadata .git"


def _hg(root: Path) -> str:
    (root / "src/.hg").mkdir()
    (root / "src/.hg/hgrc").write_text("[hooks]\npre-status = touch /tmp/qlcapsule-evil\n")
    return "VCS metadata src/.hg/"


PLANTED: dict[str, Callable[[Path], str]] = {
    "pycache": _pyc,
    "stray pyc": _stray_pyc,
    "git dir": _git,
    "git file": _gitfile,
    "hg": _hg,
}


@pytest.fixture
def signed(make_capsule, tmp_path: Path) -> tuple[Capsule, str]:
    capsule = make_capsule({"README.md": "# demo\n", "src/app.py": "print(1)\n"})
    key = keygen("ed25519", tmp_path / "k.key")
    sign_capsule(capsule.root, key["private"])
    return capsule, key["public"]


@pytest.mark.parametrize("plant", list(PLANTED))
def test_planted_files_warn_and_fail_under_strict(signed, qlcapsule_cli, plant: str) -> None:
    capsule, pub = signed
    shown = PLANTED[plant](capsule.root)
    res = qlcapsule_cli("verify", str(capsule.root), "--key", pub)
    assert res.exit_code == 0, res.stderr  # the lock and the signature still hold
    assert res.stdout.startswith("ok demo@1.0.0") and "signed by ed25519" in res.stdout
    assert res.stderr.startswith(f"warning: not in the lock: {shown} (")
    res = qlcapsule_cli("verify", str(capsule.root), "--key", pub, "--strict")
    assert res.exit_code == 1
    assert res.stderr.startswith(f"error: {capsule.root}: not in the lock: {shown} (")
    assert res.stderr.rstrip().endswith("--strict refuses it") and len(res.stderr.strip().splitlines()) == 1
    res = qlcapsule_cli("verify", str(capsule.root), "--key", pub, "--strict", "--json")
    doc = json.loads(res.stdout)
    assert res.exit_code == 1 and doc["exit_code"] == 1 and doc["error"]["message"].endswith("--strict refuses it")
    assert doc["result"]["stage"] == "integrity"


def test_a_clean_capsule_has_no_warning_and_passes_strict(signed, qlcapsule_cli) -> None:
    capsule, pub = signed
    res = qlcapsule_cli("verify", str(capsule.root), "--key", pub, "--strict", "--json")
    assert res.exit_code == 0 and res.stderr == "", res.stderr
    assert json.loads(res.stdout)["result"]["unlocked"] == {}


def test_executables_outside_the_includes_and_counts(make_capsule) -> None:
    """Only what changes behaviour is reported: an excluded text file is not; a directory is judged by its name."""
    capsule = make_capsule(
        {"src/app.py": "print(1)\n", "notes/todo.txt": "x\n"},
        definition="name: demo\nversion: 1.0.0\ninclude: [capsule.yaml, src/**]\n",
    )
    root = capsule.root
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    (root / "build.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "build.sh", 0o700)
    for i in range(50):  # never entered: one directory, counted once
        (root / ".git/objects").mkdir(parents=True, exist_ok=True)
        (root / f".git/objects/{i}").write_text("x")
    _pyc(root)
    (root / "lib/__pycache__").mkdir(parents=True)
    report = verify_capsule(root)
    assert report["unlocked"] == {
        "vcs": {"count": 1, "first": ".git/"},
        "bytecode": {"count": 2, "first": "lib/__pycache__/"},
        "executable": {"count": 2, "first": "build.sh"},
    }
    with pytest.raises(Exception, match=r"not in the lock: VCS metadata \.git/ .*\(\+2 more kinds\)") as info:
        verify_capsule(root, strict=True)
    assert getattr(info.value, "exit_code", None) == 1


def test_the_command_prints_the_warnings(signed, tmp_path: Path) -> None:
    capsule, pub = signed
    _git(capsule.root)
    _pyc(capsule.root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QLCAPSULE_DEBUG")}
    cmd = [sys.executable, "-m", "qlcapsule", "verify", str(capsule.root), "--key", pub]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("ok demo@")
    assert proc.stderr.count("warning: not in the lock:") == 2
