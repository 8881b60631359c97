"""Fixtures for the exporter tests."""

from __future__ import annotations

import os
from typing import Callable

import pytest
from exportcase import FILES

from qlcapsule import Capsule


@pytest.fixture
def demo_capsule(make_capsule: Callable[..., Capsule]) -> Capsule:
    capsule = make_capsule(FILES, name="demo", version="1.2.3", seal=False)
    os.chmod(capsule.root / "bin/run.sh", 0o755)
    capsule.seal()
    return capsule
