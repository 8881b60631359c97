"""action/main.py loaded as a module for the Action's tests (it is a script the Action runs, not a package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "action" / "main.py"


def load_main(name: str) -> ModuleType:
    """A fresh module object from action/main.py, registered under ``name`` (one per test module)."""
    spec = importlib.util.spec_from_file_location(name, MAIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
