"""A reproducible, streaming POSIX (PAX) tar writer and compression wrappers.

Shared by the tar, helm, docker and oci exporters. Every header is built here
(not by :mod:`tarfile`) so the bytes do not depend on the Python version:

- ustar headers with owner 0/0 and empty owner names, one fixed mtime, mode
  0644 or 0755, no directory entries;
- a PAX extended header (``././@PaxHeader``) only when a name is not ASCII or
  longer than 100 bytes, or a size or the date does not fit its octal field;
- the archive ends with two zero blocks padded to a 10240-byte record, as
  GNU tar and :mod:`tarfile` do.

Files are copied in 1 MiB chunks straight to the output (never seeking), so
memory stays flat whatever the file sizes. A file whose size differs from the
size the caller announced (it changed after the integrity check) aborts the
export with :class:`qlcapsule.IntegrityError`.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from qlcapsule import Capsule, IntegrityError, OrderedWorker, VerifiedPayload

BLOCK = 512
RECORD = 10240
CHUNK = 1 << 20
_OCTAL_SIZE_MAX = 8**11  # what fits the 12-byte octal size field

Source = bytes | Path
#: (archive name, bytes or file path, mode, expected size or None)
Entry = tuple[str, Source, int, int | None]


class Writable(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> object: ...


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


# ustar fields that never change here: uid/gid 0, linkname, magic "ustar\000", empty
# uname/gname, devmajor/devminor 0, prefix and padding; their byte sum goes into every checksum
_IDS = b"0000000\x00" * 2
_TAIL = bytes(100) + b"ustar\x0000" + bytes(64) + b"0000000\x00" * 2 + bytes(167)
_FIXED_SUM = sum(_IDS) + sum(_TAIL) + 8 * ord(" ")  # the checksum field counts as spaces


def _ustar(name: bytes, size: int, mode: int, mtime: int, typeflag: bytes) -> bytes:
    # Joined from parts (not poked into a bytearray and summed): 5,000 headers cost ~10 ms, not ~100.
    mode_f = b"%07o\x00" % mode
    size_f = b"%011o\x00" % (size if size < _OCTAL_SIZE_MAX else 0)
    mtime_f = b"%011o\x00" % mtime
    chksum = _FIXED_SUM + sum(name) + sum(mode_f) + sum(size_f) + sum(mtime_f) + typeflag[0]
    return b"".join(
        (name, bytes(100 - len(name)), mode_f, _IDS, size_f, mtime_f, b"%06o\x00 " % chksum, typeflag, _TAIL)
    )


def tar_header(name: str, size: int, mode: int, mtime: int) -> bytes:
    """Header block(s) of one regular file, with a PAX header when needed."""
    raw = name.encode("utf-8")
    pax: list[bytes] = []
    if len(raw) > 100 or not name.isascii():
        pax.append(_pax_record("path", name))
        raw = raw[:100]
    if size >= _OCTAL_SIZE_MAX:
        pax.append(_pax_record("size", str(size)))
    if mtime >= _OCTAL_SIZE_MAX:  # after 2242-03-16: the ustar field holds its largest value
        pax.append(_pax_record("mtime", str(mtime)))
        mtime = _OCTAL_SIZE_MAX - 1
    out = b""
    if pax:
        records = b"".join(pax)
        out = _ustar(b"././@PaxHeader", len(records), 0o644, mtime, b"x") + records + _padding(len(records))
    return out + _ustar(raw, size, mode, mtime, b"0")


def _padding(size: int) -> bytes:
    return b"\x00" * (-size % BLOCK)


class TarWriter:
    """Streams tar entries to ``out``; call :meth:`close` to write the end blocks."""

    def __init__(self, out: Writable, mtime: int) -> None:
        self.out = out
        self.mtime = mtime
        self.written = 0
        self._pending = bytearray()

    def _write(self, data: bytes | memoryview) -> None:
        self._pending += data
        if len(self._pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self.out.write(bytes(self._pending))
            self.written += len(self._pending)
            self._pending.clear()

    def add(self, name: str, source: Source, mode: int = 0o644, size: int | None = None) -> None:
        """Add one regular file from ``bytes`` or from a path (whose ``size`` is expected)."""
        mode = 0o755 if mode & 0o111 else 0o644
        if isinstance(source, (bytes, bytearray)):
            self._write(tar_header(name, len(source), mode, self.mtime))
            self._write(source)
            self._write(_padding(len(source)))
            return
        expected = source.stat().st_size if size is None else size
        self._write(tar_header(name, expected, mode, self.mtime))
        copied = self._copy(source, expected)
        if copied != expected:
            raise IntegrityError(f"{source}: changed while exporting (expected {expected} bytes, read {copied})")
        self._write(_padding(expected))

    def _copy(self, path: Path, expected: int) -> int:
        copied = 0
        with open(path, "rb", buffering=0) as f:
            if expected < CHUNK:
                data = f.read(expected + 1)
                self._write(data)
                return len(data)
            self._flush()
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                copied += n
                if copied > expected:
                    return copied
                # a copy, because the buffer is reused and a writer may keep a reference
                self.out.write(bytes(view[:n]))
                self.written += n
        return copied

    def add_all(self, entries: Iterable[Entry]) -> None:
        for name, source, mode, size in entries:
            self.add(name, source, mode, size)

    def close(self) -> None:
        self._write(b"\x00" * (2 * BLOCK))
        total = self.written + len(self._pending)
        self._write(b"\x00" * (-total % RECORD))
        self._flush()


# -- compression ---------------------------------------------------------------


class GzipWriter:
    """gzip (RFC 1952) with no file name and mtime 0, so the bytes are reproducible."""

    def __init__(
        self, out: Writable, level: int = 6, *, extra: bytes | None = None, comment: bytes | None = None
    ) -> None:
        self.out = out
        flags = (4 if extra else 0) | (16 if comment else 0)
        xfl = 2 if level == 9 else 4 if level == 1 else 0
        header = struct.pack("<BBBBIBB", 0x1F, 0x8B, 8, flags, 0, xfl, 255)
        if extra:
            header += struct.pack("<H", len(extra)) + extra
        if comment:
            header += comment + b"\x00"
        out.write(header)
        self._z = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 9)
        self._crc = 0
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        chunk = self._z.compress(data)
        if chunk:
            self.out.write(chunk)
        return len(data)

    def close(self) -> None:
        self.out.write(self._z.flush())
        self.out.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))


class XzWriter:
    def __init__(self, out: Writable, preset: int = 6) -> None:
        self.out = out
        self._c = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=preset)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        chunk = self._c.compress(data)
        if chunk:
            self.out.write(chunk)
        return len(data)

    def close(self) -> None:
        self.out.write(self._c.flush())


class ZstdWriter:
    """zstd frames with a checksum, compressed on a helper thread; single-threaded zstd.

    ``write`` hands the bytes to one helper thread that compresses them (zstd
    releases the GIL) and writes the output on, in order and a bounded number
    of bytes ahead; so reading, hashing and compressing overlap. zstd itself
    runs single-threaded: its multi-threaded mode buffers whole jobs (peak RSS
    past 100 MB on incompressible data) and writes other bytes.
    """

    def __init__(self, out: Writable, level: int = 3) -> None:
        import zstandard

        self.out = out
        self._c = zstandard.ZstdCompressor(level=level, threads=0, write_checksum=True).compressobj()
        self._worker = OrderedWorker("qlcapsule-zstd", ahead=4 * CHUNK)

    def _compress(self, data: bytes) -> None:
        chunk = self._c.compress(data)
        if chunk:  # one write per input chunk (a stream writer would cut it into 128 KiB writes)
            self.out.write(chunk)

    def _end(self, _: None) -> None:
        self.out.write(self._c.flush())

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        # kept until the thread is done with it: never a buffer the caller reuses
        self._worker.submit(self._compress, data if isinstance(data, bytes) else bytes(data), n)
        return n

    def close(self) -> None:
        try:
            self._worker.submit(self._end, None, 0)
            self._worker.drain()
        finally:
            self._worker.close()

    def abandon(self) -> None:
        """Stop the helper thread without finishing the frame (the export failed)."""
        self._worker.close()


class _Plain:
    def __init__(self, out: Writable) -> None:
        self.out = out

    def write(self, data: bytes | bytearray | memoryview) -> object:
        return self.out.write(data)

    def close(self) -> None:
        pass


Compressor = GzipWriter | XzWriter | ZstdWriter | _Plain


def compressor(out: BinaryIO | Writable, compression: str, level: int | None = None) -> Compressor:
    """A writer that compresses into ``out``; ``compression`` is none, gzip, xz or zstd."""
    if compression == "gzip":
        return GzipWriter(out, 6 if level is None else level)
    if compression == "xz":
        return XzWriter(out, 6 if level is None else level)
    if compression == "zstd":
        return ZstdWriter(out, 3 if level is None else level)
    if compression == "none":
        return _Plain(out)
    raise ValueError(f"unknown compression {compression!r}")


def write_tar(
    out: BinaryIO | Writable,
    entries: Iterable[Entry],
    mtime: int,
    compression: str = "none",
    level: int | None = None,
) -> None:
    """Write a whole (optionally compressed) tar of ``entries`` (name, bytes or path, mode)."""
    comp = compressor(out, compression, level)
    tw = TarWriter(comp, mtime)
    tw.add_all(entries)
    tw.close()
    comp.close()


def sort_entries(entries: Iterable[Entry]) -> list[Entry]:
    """Entries sorted by the UTF-8 bytes of their names; duplicate names are a bug."""
    ordered = sorted(entries, key=lambda e: e[0].encode("utf-8"))
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a[0] == b[0]:
            raise ValueError(f"duplicate archive entry {a[0]!r}")
    return ordered


def payload_entries(capsule: Capsule, prefix: str = "") -> list[Entry]:
    """The capsule's payload (locked files, capsule.lock, capsule.sig) as entries, sizes from the lock."""
    sizes = {e.path: e.size for e in capsule.require_lock().files}
    return [(prefix + rel, path, int(mode, 8), sizes.get(rel)) for rel, path, mode in capsule.payload()]


def write_payload_tar(
    out: BinaryIO | Writable,
    payload: VerifiedPayload,
    mtime: int,
    compression: str = "none",
    level: int | None = None,
    prefix: str = "",
) -> None:
    """The tar of a capsule's payload, each file read once and verified as it goes in.

    Same bytes as :func:`write_tar` of :func:`payload_entries`. Small files are
    gathered (header, data, padding) into writes of about 1 MiB; large ones go
    out in the 1 MiB chunks they are read in, so there is no per-block Python
    work and memory stays flat. The end-of-archive blocks are written only once
    every digest matched (:meth:`VerifiedPayload.finish`), so a tampered capsule
    never yields a complete archive, even on a pipe.
    """
    comp = compressor(out, compression, level)
    write = comp.write
    parts: list[bytes] = []
    pending = 0  # bytes in parts
    total = 0  # bytes of tar written before parts
    try:
        for f in payload.files:
            parts.append(tar_header(prefix + f.path, f.size, f.mode, mtime))
            pending += len(parts[-1])
            if f.size >= CHUNK:
                write(b"".join(parts))
                total += pending
                parts, pending = [], 0
                for chunk in payload.read(f):
                    write(chunk)
                total += f.size
            else:
                for data in payload.read(f):
                    parts.append(data)
                pending += f.size
            pad = -f.size % BLOCK
            if pad:
                parts.append(bytes(pad))
                pending += pad
            if pending >= CHUNK:
                write(b"".join(parts))
                total += pending
                parts, pending = [], 0
        payload.finish()
        end = 2 * BLOCK
        end += -(total + pending + end) % RECORD
        parts.append(bytes(end))
        write(b"".join(parts))
        comp.close()
    except BaseException:
        if isinstance(comp, ZstdWriter):
            comp.abandon()  # its thread must not write on once the caller handles the error
        raise
    finally:
        payload.close()
