"""A plain `pip install qlcapsule` in a clean venv validates fully: the engines come with it.

Slow (it installs the package and its dependencies into a new venv), so it runs in the e2e env.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BAD = """name: ci
on: push
permissions:
  contents: maybe
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: echo hello
"""
INJECTION = """name: pr
on: push
permissions: {}
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ github.event.head_commit.message }}"
"""


@pytest.mark.slow
def test_a_default_install_reports_an_invalid_permissions_value(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    # the optional engines are looked up beside qlcapsule's Python, then on PATH: keep the test env's out
    env["PATH"] = os.pathsep.join(
        d for d in env.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "hadolint").exists()
    )
    subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q", str(REPO)], check=True, timeout=1200, env=env)
    capsule = tmp_path / "svc"
    (capsule / ".github" / "workflows").mkdir(parents=True)
    (capsule / "capsule.yaml").write_text("name: svc\nversion: 1.0.0\n")
    (capsule / ".github" / "workflows" / "ci.yml").write_text(BAD)
    (capsule / ".github" / "workflows" / "pr.yml").write_text(INJECTION)
    qlcapsule = str(bindir / "qlcapsule")
    done = subprocess.run([qlcapsule, "validate", str(capsule)], capture_output=True, text=True, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ci.yml:4:13: error: permissions.contents: 'maybe' is not one of" in done.stdout
    assert "pr.yml:8:" in done.stdout and "[zizmor.template-injection]" in done.stdout  # zizmor comes with it too
    engines = subprocess.run([qlcapsule, "validate", "--engines"], capture_output=True, text=True, env=env)
    assert engines.returncode == 0, engines.stdout
    assert "schemastore: check-jsonschema " in engines.stdout and "zizmor: " in engines.stdout
    assert "hadolint: MISSING (optional): pip install 'qlcapsule[hadolint]'" in engines.stdout
