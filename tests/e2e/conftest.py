"""End-to-end tests against real servers on 127.0.0.1, started by fixtures.

Fixtures come from two modules so each area keeps its own: ``fixtures_cloud``
(moto, Azurite, fake-gcs-server, the fault proxy) and ``fixtures_forge``
(registry, git, GitHub/GitLab fakes). A module that is not there yet does not
break collection.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    from fixtures_cloud import *  # noqa: F401,F403
except ImportError as exc:  # pragma: no cover - only when the module itself is missing
    if getattr(exc, "name", None) != "fixtures_cloud":
        raise
try:
    from fixtures_forge import *  # noqa: F401,F403
except ImportError as exc:  # pragma: no cover
    if getattr(exc, "name", None) != "fixtures_forge":
        raise


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _operator_targets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's targets live in an operator targets file (see operator_targets.add_operator_target):
    capsule.yaml only selects them, as in any pipeline that checks out a pull request."""
    path = tmp_path / "operator-targets.yaml"
    path.write_text("targets: {}\n", encoding="utf-8")
    monkeypatch.setenv("QLCAPSULE_TARGETS_FILE", str(path))
    monkeypatch.delenv("QLCAPSULE_CAPSULE_TARGETS", raising=False)
