"""The ``tar`` exporter: reproducible PAX tar, plain or compressed with gzip, xz or zstd.

Formats: ``tar``, ``tar.gz`` (alias ``tgz``), ``tar.xz``, ``tar.zst``. The
archive holds exactly the locked files plus capsule.lock and capsule.sig,
sorted by the UTF-8 bytes of their paths, with one fixed date
(:meth:`qlcapsule.Exporter.timestamp`), owners 0/0 and modes 0644/0755. It
streams: nothing is buffered beyond 1 MiB, so ``-o -`` works.
"""

from __future__ import annotations

from typing import BinaryIO, ClassVar

from pydantic import Field, field_validator

from qlcapsule import Capsule, Exporter, Options, hookimpl

from ._tarstream import payload_entries, write_tar

_COMPRESSION = {"tar": "none", "tar.gz": "gzip", "tgz": "gzip", "tar.xz": "xz", "tar.zst": "zstd"}
_MEDIA = {
    "none": "application/x-tar",
    "gzip": "application/gzip",
    "xz": "application/x-xz",
    "zstd": "application/zstd",
}
_LEVELS = {"gzip": (1, 9), "xz": (0, 9), "zstd": (1, 22)}


def check_prefix(v: str) -> str:
    """A prefix is empty or a relative directory path ending in '/'."""
    if v == "":
        return v
    if not v.endswith("/") or v.startswith("/") or "\\" in v or any(p in ("", ".", "..") for p in v[:-1].split("/")):
        raise ValueError("must be a relative directory ending in '/', like 'orders-1.0.0/'")
    return v


class TarOptions(Options):
    level: int | None = Field(
        default=None, description="compression level (gzip 1-9, default 6; xz 0-9, default 6; zstd 1-22, default 3)"
    )
    prefix: str = Field(default="", description="directory every entry is put under, e.g. 'orders-1.0.0/'")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return check_prefix(v)


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
        from qlcapsule import OptionsError

        comp = _COMPRESSION.get(fmt)
        if comp is None:
            raise OptionsError(f"exporter 'tar': unknown format {fmt!r} (use one of {', '.join(self.formats)})")
        level = self.options.level
        if level is not None:
            if comp == "none":
                raise OptionsError(f"exporter 'tar' options: level: format {fmt} is not compressed")
            lo, hi = _LEVELS[comp]
            if not lo <= level <= hi:
                raise OptionsError(f"exporter 'tar' options: level: {level} is out of range {lo}-{hi} for {fmt}")

    def filename(self, capsule: Capsule, fmt: str) -> str:
        return f"{capsule.name}-{capsule.version}.{'tar.gz' if fmt == 'tgz' else fmt}"

    def export(self, capsule: Capsule, out: BinaryIO, fmt: str) -> None:
        self.check(fmt)
        entries = payload_entries(capsule, self.options.prefix)
        write_tar(out, entries, self.timestamp(capsule), _COMPRESSION[fmt], self.options.level)


@hookimpl
def qlcapsule_register_exporters(register):  # type: ignore[no-untyped-def]
    register(TarExporter)
