"""Shared test configuration.

The ``qlcapsule.testing`` pytest plugin (make_capsule, qlcapsule_cli,
qlcapsule_registry, qlcapsule_plugin) is loaded through its pytest11 entry point.
"""

from __future__ import annotations

import os

import pytest

# Progress bars and colours would make CLI output depend on the terminal.
os.environ.setdefault("QLCAPSULE_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep development keys and config out of the real home directory."""
    home = tmp_path_factory.mktemp("qlcapsule-home")
    monkeypatch.setenv("QLCAPSULE_HOME", str(home))
    monkeypatch.setenv("QLCAPSULE_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))  # no operator targets file from the real home
    monkeypatch.delenv("QLCAPSULE_TARGETS_FILE", raising=False)
    monkeypatch.delenv("QLCAPSULE_CAPSULE_TARGETS", raising=False)
    monkeypatch.delenv("QLCAPSULE_TRUST_FILE", raising=False)  # the operator's trust root: tests set their own
