"""The catalog tests' fixtures, defined in catalog_fixtures.py.

Test modules import helpers from ``catalog_fixtures``, never from ``conftest``: test directories have no
``__init__.py``, so every ``conftest`` is imported under the same module name and ``from conftest import``
would read whichever directory's conftest came last (tests/ship has one too).
"""

from catalog_fixtures import *  # noqa: F403 -- the fixtures must be names of this module for pytest
