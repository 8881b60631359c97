"""An exporter's options are its pydantic ``Options`` model, validated once."""

from __future__ import annotations

import pytest

from qlcapsule import OptionsError
from qlcapsule_plugins.exporters.tar import TarExporter
from qlcapsule_plugins.exporters.zip import ZipExporter


@pytest.mark.parametrize("cls", [TarExporter, ZipExporter])
def test_no_options_give_the_models_defaults(cls) -> None:  # type: ignore[no-untyped-def]
    exporter = cls.from_options({})
    assert isinstance(exporter.options, cls.Options)
    assert exporter.options.model_dump() == cls.Options().model_dump()


def test_options_given_are_validated_by_the_model() -> None:
    exporter = TarExporter.from_options({"level": "19", "prefix": "x/"})
    assert isinstance(exporter.options, TarExporter.Options)
    assert (exporter.options.level, exporter.options.prefix) == (19, "x/")
    with pytest.raises(OptionsError, match=r"prefix: .*relative directory"):
        ZipExporter.from_options({"prefix": "/abs/"})


def test_the_models_import_from_their_exporters() -> None:
    from qlcapsule_plugins.exporters.helm import HelmOptions
    from qlcapsule_plugins.exporters.tar import TarOptions

    assert HelmOptions().port == 8000 and TarOptions().prefix == ""
    assert TarExporter.Options is TarOptions
