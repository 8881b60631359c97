"""The third-party example exporter in examples/ loads through the public plugin API.

Installing it into a fresh venv is the tox env's job (see docs/export.md); here
its module is imported from the source tree and registered in-process with
``qlcapsule.plugins.manager.register_plugin`` (through the ``qlcapsule_plugin`` fixture).
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "qlcapsule-example-exporter"


@pytest.fixture
def example_module(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    import qlcapsule_example_exporter

    yield qlcapsule_example_exporter
    sys.modules.pop("qlcapsule_example_exporter", None)


def test_it_imports_only_the_public_qlcapsule_api() -> None:
    tree = ast.parse((EXAMPLE / "src/qlcapsule_example_exporter/__init__.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert {m for m in modules if m and m.startswith("qlcapsule")} == {"qlcapsule"}
    assert 'qlcapsule = "' not in (EXAMPLE / "pyproject.toml").read_text()  # not the console script
    assert "[project.entry-points.qlcapsule]" in (EXAMPLE / "pyproject.toml").read_text()


def test_registers_and_exports(example_module, qlcapsule_plugin, make_capsule, tmp_path) -> None:
    from qlcapsule.steps.exporting import export_capsule

    registry = qlcapsule_plugin(example_module, "example-manifest")
    assert "manifest" in registry.names("exporter")
    assert registry.plugins["example-manifest"].components == [("exporter", "manifest")]
    capsule = make_capsule({"a.txt": "a\n"})
    result = export_capsule(capsule.root, "manifest.json", tmp_path)
    doc = json.loads(result.path.read_text())  # type: ignore[union-attr]
    assert doc["digest"] == f"sha256:{capsule.digest}" and result.media_type == "application/json"
