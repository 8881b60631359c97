"""The operator's targets file in e2e tests: where credentialed targets are defined.

conftest's autouse fixture points ``QLCAPSULE_TARGETS_FILE`` at a per-test file;
:func:`add_operator_target` adds a target to it. capsule.yaml then only names the
target (``--target NAME``), which is what a pipeline checking out a pull request does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def add_operator_target(name: str, spec: dict[str, Any]) -> Path:
    """Define target ``name`` (``{"provider": ..., "options": ...}``) in the operator's targets file."""
    path = Path(os.environ["QLCAPSULE_TARGETS_FILE"])
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    targets = dict(doc.get("targets") or {})
    targets[name] = spec
    path.write_text(yaml.safe_dump({"targets": targets}, sort_keys=False), encoding="utf-8")
    return path


def assert_capsule_target_refused(
    qlcapsule_cli: Any, root: Path, target: str, recorder: Any, canaries: tuple[str, ...]
) -> None:
    """A target only capsule.yaml defines is refused by deliver, deliver --dry-run and ship before
    any request: ``recorder`` (the loopback server the target points at) hears nothing, and no
    canary credential is carried anywhere or printed."""
    for args in (
        ("deliver", str(root), "-t", target),
        ("deliver", str(root), "-t", target, "--dry-run"),
        ("ship", str(root), "-t", target, "--no-commit"),
    ):
        res = qlcapsule_cli("-vv", *args)
        assert res.exit_code == 2, res.output
        (line,) = [x for x in res.stderr.splitlines() if x.startswith("error: ")]
        assert line.startswith(f"error: {root / 'capsule.yaml'}:") and f"targets.{target}: provider " in line, line
        assert "uses credentials; define this target in the operator's targets file" in line
        for canary in canaries:
            assert canary not in res.output
    assert recorder.heard == [] and recorder.carried(*canaries) == []
