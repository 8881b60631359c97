"""Exporter options are pydantic models built on first use; defaults need no pydantic."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from qlcapsule_plugins.exporters.tar import TarExporter
from qlcapsule_plugins.exporters.zip import ZipExporter


@pytest.mark.parametrize("cls", [TarExporter, ZipExporter])
def test_fast_defaults_are_the_models_defaults(cls) -> None:  # type: ignore[no-untyped-def]
    fast = cls.from_options({})
    assert fast.options.model_dump() == cls.Options().model_dump() == cls.defaults
    for key, value in cls.defaults.items():
        assert getattr(fast.options, key) == value


def test_options_given_are_validated_by_the_model() -> None:
    exporter = TarExporter.from_options({"level": "19", "prefix": "x/"})
    assert isinstance(exporter.options, TarExporter.Options)
    assert (exporter.options.level, exporter.options.prefix) == (19, "x/")


def test_old_import_paths_still_work() -> None:
    from qlcapsule_plugins.exporters.helm import HelmOptions
    from qlcapsule_plugins.exporters.tar import TarOptions

    assert HelmOptions().port == 8000 and TarOptions().prefix == ""


def test_looking_up_an_exporter_does_not_import_pydantic() -> None:
    code = (
        "import sys\n"
        "from qlcapsule.plugins import registry\n"
        "cls = registry().exporter_for('tar')\n"
        "cls.from_options({}).check('tar')\n"
        "names = registry().names('exporter')\n"
        "assert 'helm' in names and 'zip' in names, names\n"
        "print('pydantic' in sys.modules)\n"
    )
    # built-ins only: a third-party exporter installed beside them (the example's tox env) may import pydantic
    env = {**os.environ, "QLCAPSULE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False", out.stderr
