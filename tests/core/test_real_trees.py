"""init, seal and verify on real source trees nobody on the team wrote: the stdlib's own packages."""

from __future__ import annotations

import json
import shutil
import sysconfig
from pathlib import Path

import pytest


@pytest.mark.parametrize("package", ["email", "json", "xml", "unittest", "asyncio"])
def test_stdlib_package_roundtrip(package: str, tmp_path: Path, qlcapsule_cli) -> None:
    source = Path(sysconfig.get_paths()["stdlib"]) / package
    tree = tmp_path / package
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns("__pycache__"))
    assert qlcapsule_cli("init", str(tree)).exit_code == 0
    sealed = qlcapsule_cli("seal", str(tree), "--json")
    assert sealed.exit_code == 0, sealed.output
    expected = sum(1 for p in tree.rglob("*") if p.is_file() and p.name != "capsule.lock")
    assert json.loads(sealed.stdout)["result"]["files"] == expected
    assert qlcapsule_cli("verify", str(tree)).exit_code == 0
    victim = sorted(tree.rglob("*.py"))[-1]
    victim.write_text(victim.read_text() + "\n# edited\n")
    result = qlcapsule_cli("verify", str(tree))
    assert result.exit_code == 1
    assert f"modified: {victim.relative_to(tree).as_posix()}" in result.stderr
