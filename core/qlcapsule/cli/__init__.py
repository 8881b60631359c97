"""The ``qlcapsule`` command line: thin click commands over the Python API.

Command modules (one per area) attach their commands to :data:`main`. Every
command maps :class:`qlcapsule.QlcapsuleError` to its exit code and a single
line on stderr; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib

from ._common import main

# Each module adds its commands to ``main`` on import; keep them light (heavy
# libraries are imported inside the commands), so `verify` starts fast.
for _mod in ("core", "verify", "sign", "generate", "store", "export", "deliver", "ship"):
    importlib.import_module(f"{__name__}.{_mod}")

__all__ = ["main"]
