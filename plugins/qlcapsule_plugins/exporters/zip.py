"""The ``zip`` exporter: a reproducible ZIP that streams and deflates on every core.

Entries are the locked files plus capsule.lock and capsule.sig, sorted by the
UTF-8 bytes of their paths, all dated :meth:`qlcapsule.Exporter.timestamp`,
with Unix modes 0644/0755 in the external attributes. Already-compressed files
(by extension, or when a trial block does not shrink) are stored; the rest are
deflated in parallel. Each file is read once, through the
:class:`qlcapsule.PayloadReader` the core hands every exporter (it hashes the
bytes against capsule.lock); the central directory is written only after
``payload.verify()``. Readable by Info-ZIP ``unzip``, Python's ``zipfile`` and
every common tool; see ``_zipstream`` for the byte layout.
"""

from __future__ import annotations

from typing import BinaryIO

from qlcapsule import Capsule, Exporter, PayloadReader, Register, hookimpl

from ._options import ZipOptions
from ._tarstream import payload_entries
from ._zipstream import ZipWriter


class ZipExporter(Exporter):
    name = "zip"
    description = "reproducible ZIP archive; stores compressed files, deflates the rest in parallel; streams"
    formats = ("zip",)
    streams = True
    media_type = "application/zip"
    Options = ZipOptions
    options: ZipOptions

    def export(self, capsule: Capsule, out: BinaryIO, fmt: str, payload: PayloadReader) -> None:
        writer = ZipWriter(out, self.timestamp(capsule), self.options.level, self.options.workers)
        writer.write_all(payload_entries(payload, self.options.prefix), payload)


@hookimpl
def qlcapsule_register_exporters(register: Register) -> None:
    register(ZipExporter)
