"""The ``zip`` exporter: a reproducible ZIP that streams and deflates on every core.

Entries are the locked files plus capsule.lock and capsule.sig, sorted by the
UTF-8 bytes of their paths, all dated :meth:`qlcapsule.Exporter.timestamp`,
with Unix modes 0644/0755 in the external attributes. Already-compressed files
(by extension, or when a trial block does not shrink) are stored; the rest are
deflated in parallel. Readable by Info-ZIP ``unzip``, Python's ``zipfile``
and every common tool; see ``_zipstream`` for the byte layout.
"""

from __future__ import annotations

from typing import BinaryIO

from pydantic import Field, field_validator

from qlcapsule import Capsule, Exporter, Options, hookimpl

from ._tarstream import payload_entries
from ._zipstream import ZipWriter
from .tar import check_prefix


class ZipOptions(Options):
    level: int = Field(default=6, ge=1, le=9, description="deflate level for compressible files (1-9)")
    prefix: str = Field(default="", description="directory every entry is put under, e.g. 'orders-1.0.0/'")
    workers: int | None = Field(default=None, ge=1, le=64, description="compression threads (default: CPU count)")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return check_prefix(v)


class ZipExporter(Exporter):
    name = "zip"
    description = "reproducible ZIP archive; stores compressed files, deflates the rest in parallel; streams"
    formats = ("zip",)
    streams = True
    media_type = "application/zip"
    Options = ZipOptions
    options: ZipOptions

    def export(self, capsule: Capsule, out: BinaryIO, fmt: str) -> None:
        writer = ZipWriter(out, self.timestamp(capsule), self.options.level, self.options.workers)
        writer.write_all(payload_entries(capsule, self.options.prefix))


@hookimpl
def qlcapsule_register_exporters(register):  # type: ignore[no-untyped-def]
    register(ZipExporter)
