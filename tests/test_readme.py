"""The README starts with exactly the two copy-paste lines, CI runs the second one, and the first works twice."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_first_two_lines_are_the_two_commands() -> None:
    first, second, third = ROOT.joinpath("README.md").read_text().splitlines()[:3]
    assert first.startswith("python3 -m venv ") and "qlcapsule new fastapi-service" in first
    assert first.rstrip().endswith("qlcapsule ship orders")
    assert second.startswith("python3 -m venv ") and "tox" in second
    assert third == ""


def test_ci_runs_the_readme_second_line() -> None:
    ci = ROOT.joinpath(".ci", "run").read_text()
    assert "sed -n 2p README.md" in ci and 'eval "$line"' in ci


@pytest.mark.slow
def test_the_first_line_works_twice_in_a_row(tmp_path: Path) -> None:
    """README line 1, exactly as written, in a copy of the tracked tree; then again in the same place."""
    first = ROOT.joinpath("README.md").read_text().splitlines()[0]
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    clone = tmp_path / "clone"
    for name in filter(None, tracked.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / name)
    env = {**os.environ, "HOME": str(tmp_path / "home"), "QLCAPSULE_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    for run in ("first", "second"):
        proc = subprocess.run(["bash", "-c", first], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{run} run: {proc.stdout}{proc.stderr}"
    assert "already shipped: nothing changed" in proc.stdout
    assert (clone / "dist" / "orders-0.1.0.tar.gz").is_file()
