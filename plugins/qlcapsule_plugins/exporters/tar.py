"""The ``tar`` exporter: reproducible PAX tar, plain or compressed with gzip, xz or zstd.

Formats: ``tar``, ``tar.gz`` (alias ``tgz``), ``tar.xz``, ``tar.zst``. The
archive holds exactly the locked files plus capsule.lock and capsule.sig,
sorted by the UTF-8 bytes of their paths, with one fixed date
(:meth:`qlcapsule.Exporter.timestamp`), owners 0/0 and modes 0644/0755. It
streams: nothing is buffered beyond 1 MiB, so ``-o -`` works. Each file is
read once, through the :class:`qlcapsule.PayloadReader` the core hands every
exporter, which hashes it on the way in; the end-of-archive blocks are written
only after ``payload.verify()``.
"""

from __future__ import annotations

from typing import BinaryIO, ClassVar

from qlcapsule import Capsule, Exporter, OptionsError, PayloadReader, Register, hookimpl

from ._options import TarOptions
from ._tarstream import payload_entries, write_tar

_COMPRESSION = {"tar": "none", "tar.gz": "gzip", "tgz": "gzip", "tar.xz": "xz", "tar.zst": "zstd"}
_MEDIA = {
    "none": "application/x-tar",
    "gzip": "application/gzip",
    "xz": "application/x-xz",
    "zstd": "application/zstd",
}
_LEVELS = {"gzip": (1, 9), "xz": (0, 9), "zstd": (1, 22)}


class TarExporter(Exporter):
    name = "tar"
    description = "reproducible PAX tar archive (.tar, .tar.gz, .tar.xz, .tar.zst); streams"
    formats = ("tar", "tar.gz", "tgz", "tar.xz", "tar.zst")
    streams = True
    media_type = "application/x-tar"
    Options = TarOptions
    options: TarOptions

    media_types: ClassVar[dict[str, str]] = {f: _MEDIA[c] for f, c in _COMPRESSION.items()}

    def media_type_for(self, fmt: str) -> str:
        return self.media_types.get(fmt, self.media_type)

    def check(self, fmt: str) -> None:
        """Refuse a level the chosen compression does not accept (before writing)."""
        comp = _COMPRESSION.get(fmt)
        if comp is None:
            raise OptionsError(f"exporter 'tar': unknown format {fmt!r} (use one of {', '.join(self.formats)})")
        level = self.options.level
        if level is not None:
            source = self.sources.get("level", "")
            where = (
                f" (set in {source}; '--option level=' uses the format's default)"
                if source.startswith("capsule")
                else ""
            )
            if comp == "none":
                if where:  # a configured level is for the compressed flavours; plain tar has none to set
                    return
                raise OptionsError(f"exporter 'tar' options: level: format {fmt} is not compressed")
            lo, hi = _LEVELS[comp]
            if not lo <= level <= hi:
                raise OptionsError(f"exporter 'tar' options: level: {level} is out of range {lo}-{hi} for {fmt}{where}")

    def filename(self, capsule: Capsule, fmt: str) -> str:
        return f"{capsule.name}-{capsule.version}.{'tar.gz' if fmt == 'tgz' else fmt}"

    def export(self, capsule: Capsule, out: BinaryIO, fmt: str, payload: PayloadReader) -> None:
        self.check(fmt)
        entries = payload_entries(payload, self.options.prefix)
        write_tar(out, entries, self.timestamp(capsule), _COMPRESSION[fmt], self.options.level, payload)


@hookimpl
def qlcapsule_register_exporters(register: Register) -> None:
    register(TarExporter)
