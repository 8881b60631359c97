"""The ``zip`` exporter: a reproducible ZIP that streams and deflates on every core.

Entries are the locked files plus capsule.lock and capsule.sig, sorted by the
UTF-8 bytes of their paths, all dated :meth:`qlcapsule.Exporter.timestamp`,
with Unix modes 0644/0755 in the external attributes. Already-compressed files
(by extension, or when a trial block does not shrink) are stored; the rest are
deflated in parallel. Readable by Info-ZIP ``unzip``, Python's ``zipfile``
and every common tool; see ``_zipstream`` for the byte layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from qlcapsule import Capsule, Exporter, hookimpl, lazy_options

from ._lazyoptions import model
from ._tarstream import payload_entries
from ._zipstream import ZipWriter

if TYPE_CHECKING:
    from ._options import ZipOptions


class ZipExporter(Exporter):
    name = "zip"
    description = "reproducible ZIP archive; stores compressed files, deflates the rest in parallel; streams"
    formats = ("zip",)
    streams = True
    media_type = "application/zip"
    #: exactly the model's defaults (a test holds them equal): no pydantic when no option is given
    defaults: ClassVar[dict[str, Any]] = {"level": 6, "prefix": "", "workers": None}
    Options = lazy_options(model("ZipOptions"), defaults=defaults)
    options: ZipOptions

    def export(self, capsule: Capsule, out: BinaryIO, fmt: str) -> None:
        writer = ZipWriter(out, self.timestamp(capsule), self.options.level, self.options.workers)
        writer.write_all(payload_entries(capsule, self.options.prefix))


@hookimpl
def qlcapsule_register_exporters(register):  # type: ignore[no-untyped-def]
    register(ZipExporter)


def __getattr__(name: str) -> object:  # ``from .zip import ZipOptions`` still works, built on first use
    if name == "ZipOptions":
        return ZipExporter.Options
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
