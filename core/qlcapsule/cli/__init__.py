"""The ``qlcapsule`` command line: thin click commands over the Python API.

Command modules (one per area) attach their commands to :data:`main`. They are
imported on demand: ``qlcapsule verify`` loads only ``cli/verify.py``, so the
integrity path starts fast; ``--help`` and unknown names load them all.
Every command maps :class:`qlcapsule.QlcapsuleError` to its exit code and a
single line on stderr; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

from ._common import main

__all__ = ["main"]
