"""The built-in fastapi-service template: what it generates, that it validates clean, that its own tests pass."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from qlcapsule.steps.generation import new_capsule
from qlcapsule.steps.validation import validate_capsules
from qlcapsule_plugins.generators.jinja import FILTERS

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


HOSTILE = "x\" + str(__import__('os').system('touch PWNED')) + \"  'q' \\N{x} \"\"\" \U0001f600"


def test_answers_are_escaped_not_pasted_into_code_or_yaml(tmp_path):
    """A description with quotes, backslashes and code stays a string in main.py and capsule.yaml."""
    import ast

    import yaml

    capsule = new_capsule(
        "fastapi-service",
        tmp_path / "svc",
        answers={"description": HOSTILE, "cors_origins": "https://a.example, http://b.example:8080"},
        interactive=False,
    )
    main = (capsule.root / "main.py").read_text()
    tree = ast.parse(main)  # no SyntaxError
    consts = {
        n.targets[0].id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Constant)
    }
    assert consts["DESCRIPTION"] == HOSTILE and consts["SERVICE"] == "svc"
    assert "__import__" not in main.replace(FILTERS["py"](HOSTILE), "")  # only inside the string literal
    data = yaml.safe_load((capsule.root / "capsule.yaml").read_text())
    assert data["description"] == HOSTILE
    compose = yaml.safe_load((capsule.root / "docker-compose.yml").read_text())
    assert compose["services"]["svc"]["environment"]["CORS_ORIGINS"] == "https://a.example, http://b.example:8080"
    assert validate_capsules([capsule.root]).findings == []


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"license": "MIT\nvalidate:\n  rules:\n    secrets: false"}, "answer license: .* does not match"),
        ({"port": "-5"}, r"answer port: -5 is not in 1\.\.65535"),
        ({"port": "70000"}, r"answer port: 70000 is not in 1\.\.65535"),
        ({"cors_origins": 'x", "evil'}, "answer cors_origins: .* does not match"),
        ({"description": "two\nlines"}, "answer description: .* does not match"),
    ],
)
def test_questions_refuse_answers_that_cannot_be_right(tmp_path, answers, message):
    from qlcapsule import InputError

    with pytest.raises(InputError, match=message):
        new_capsule("fastapi-service", tmp_path / "svc", answers=answers, interactive=False)
    assert list(tmp_path.iterdir()) == []


def test_yaml_looking_answers_stay_strings(tmp_path):
    """'yes' and '@x' are fine licenses as far as YAML goes: quoted, they read back as the same string."""
    import yaml

    capsule = new_capsule("fastapi-service", tmp_path / "svc", answers={"license": "yes"}, interactive=False)
    assert yaml.safe_load((capsule.root / "capsule.yaml").read_text())["license"] == "yes"
    assert capsule.definition.license == "yes"
