"""The built-in fastapi-service template: what it generates, that it validates clean, that its own tests pass."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from qlcapsule.generation import new_capsule
from qlcapsule.validation import validate_capsules

EXPECTED = {
    ".dockerignore",
    ".github/workflows/ci.yml",
    ".gitignore",
    "Dockerfile",
    "README.md",
    "capsule.yaml",
    "conftest.py",
    "docker-compose.yml",
    "main.py",
    "pytest.ini",
    "requirements.txt",
    "tests/__init__.py",
    "tests/test_health.py",
    "tests/test_orders.py",
}


def test_generates_the_service_for_the_named_resource(tmp_path):
    capsule = new_capsule("fastapi-service", tmp_path / "orders", answers={"resource": "order"}, interactive=False)
    assert set(capsule.files()) == EXPECTED
    main = (capsule.root / "main.py").read_text()
    for needle in (
        "class OrderIn(BaseModel)",
        '@app.get("/health")',
        '"/orders/{item_id}"',
        "CORSMiddleware",
        "logging",
    ):
        assert needle in main
    gen = capsule.definition.generator
    assert gen is not None and gen.template == "fastapi-service" and gen.answers["resource_plural"] == "orders"
    compile(main, "main.py", "exec")


def test_generated_capsule_validates_clean(tmp_path):
    new_capsule("fastapi-service", tmp_path / "orders", answers={}, interactive=False)
    report = validate_capsules([tmp_path / "orders"])
    assert report.findings == []
    assert report.score >= 0.95 and not report.failed


def test_without_docker(tmp_path):
    capsule = new_capsule("fastapi-service", tmp_path / "svc", answers={"docker": "false"}, interactive=False)
    assert "Dockerfile" not in capsule.files() and "docker-compose.yml" not in capsule.files()
    assert "docker build" not in (capsule.root / ".github/workflows/ci.yml").read_text()
    assert validate_capsules([capsule.root]).findings == []


@pytest.mark.slow
def test_generated_service_passes_its_own_tests(tmp_path):
    """Installs fastapi, uvicorn, pydantic, httpx and pytest from PyPI into a fresh venv."""
    capsule = new_capsule("fastapi-service", tmp_path / "orders", answers={"resource": "order"}, interactive=False)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", "requirements.txt"],
        cwd=capsule.root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=capsule.root,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
    # running the suite left the capsule intact (caches and bytecode are excluded)
    capsule.verify_integrity()
    assert Path(sys.executable) != python
