"""Tests of the example exporter, using the qlcapsule.testing pytest plugin shipped with qlcapsule."""

from __future__ import annotations

import json

import qlcapsule_example_exporter as plugin
from qlcapsule_example_exporter import ManifestExporter

from qlcapsule.testing import check_exporter


def test_contract(make_capsule) -> None:
    capsule = make_capsule({"a.txt": "a\n", "b/c.py": "print(1)\n"})
    data = check_exporter(ManifestExporter, capsule, "manifest.json")
    doc = json.loads(data)
    assert [f["path"] for f in doc["files"]] == ["a.txt", "b/c.py", "capsule.yaml"]
    assert doc["digest"] == f"sha256:{capsule.digest}"


def test_csv(make_capsule) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    data = check_exporter(ManifestExporter, capsule, "manifest.csv")
    assert data.decode().splitlines()[0] == "path,size,mode,sha256"


def test_registered_and_exports_through_the_cli(make_capsule, qlcapsule_plugin, qlcapsule_cli, tmp_path) -> None:
    registry = qlcapsule_plugin(plugin, "example-manifest")
    assert registry.exporter_for("manifest.csv") is ManifestExporter
    capsule = make_capsule({"a.txt": "a\n"})
    res = qlcapsule_cli("export", str(capsule.root), "-f", "manifest.json", "-o", str(tmp_path), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "demo-1.0.0.manifest.json").read_text())["capsule"] == "demo@1.0.0"
