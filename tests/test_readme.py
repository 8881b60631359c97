"""The README starts with exactly the two copy-paste lines, and CI runs the second one."""

from __future__ import annotations

from pathlib import Path

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
