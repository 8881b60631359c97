"""A reproducible, streaming ZIP writer that deflates on every core.

Layout choices (all fixed, so the bytes depend only on the files and zlib):

- entries in the caller's order, no directory entries, no extra fields except
  ZIP64 where a size or offset needs it;
- one DOS date for every entry, "made by" Unix, external attributes
  ``0o100644``/``0o100755``; the UTF-8 flag only for non-ASCII names;
- small files (<= ``SMALL``) are read in order (through the payload reader,
  which hashes them against capsule.lock), then compressed on a thread pool
  (zlib releases the GIL), a bounded window ahead of the writer, and written in
  order with their sizes and CRC in the local header;
- large files are streamed in 1 MiB chunks with a data descriptor (sizes and
  CRC after the data), so memory stays flat;
- a file is stored, not deflated, when its extension says it is already
  compressed or when deflating a trial block saves under 10 %.

The writer never seeks: it counts the offsets it has written.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from concurrent.futures import Future

from qlcapsule import IntegrityError, PayloadReader

from ._tarstream import Entry

SMALL = 4 << 20
TRIAL = 256 << 10
WINDOW_BYTES = 16 << 20
WINDOW_JOBS = 256
ZIP64_LIMIT = 0xFFFFFFFF

STORED_EXTENSIONS = frozenset(
    """
    7z apk avif br bz2 cab deb docx dmg epub flac gif gz heic jar jpeg jpg lz lz4 lzma m4a m4v mkv mov mp3 mp4
    mpeg ogg opus pdf png pptx rar rpm tbz tgz txz webm webp whl woff woff2 xlsx xz zip zst zstd
    """.split()
)


class Writable(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> object: ...


def dos_datetime(epoch: int) -> tuple[int, int]:
    """(date, time) in MS-DOS format for a UTC epoch, clamped to 1980-2107."""
    t = time.gmtime(epoch)
    if t.tm_year < 1980:
        return (0 << 9) | (1 << 5) | 1, 0
    if t.tm_year > 2107:  # the latest DOS date: 2107-12-31 23:59:58
        return (127 << 9) | (12 << 5) | 31, (23 << 11) | (59 << 5) | 29
    date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    dtime = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    return date, dtime


def should_store(name: str, head: bytes) -> bool:
    """True when deflating is not worth it: known compressed type or a trial saves < 10 %."""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name.rsplit("/", 1)[-1] else ""
    if ext in STORED_EXTENSIONS or not head:
        return True
    trial = zlib.compress(head[:TRIAL], 1)
    return len(trial) > 0.9 * len(head[:TRIAL])


@dataclass
class _Member:
    name: bytes
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    offset: int
    mode: int
    version: int


@dataclass
class _Prepared:
    crc: int
    method: int
    usize: int
    data: bytes


def _read_small(name: str, source: object, expected: int | None) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    assert callable(source), name  # a payload file's chunks (see _tarstream.payload_entries)
    data = b"".join(source())
    if expected is not None and len(data) != expected:
        raise IntegrityError(f"{name}: changed while exporting (expected {expected} bytes, read {len(data)})")
    return data


def _prepare(name: str, data: bytes, level: int) -> _Prepared:
    crc = zlib.crc32(data)
    if not should_store(name, data):
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        packed = c.compress(data) + c.flush()
        if len(packed) < len(data):
            return _Prepared(crc, 8, len(data), packed)
    return _Prepared(crc, 0, len(data), data)


class ZipWriter:
    """Write ``entries`` as a ZIP archive to ``out``; see the module docstring."""

    def __init__(self, out: Writable, epoch: int, level: int = 6, workers: int | None = None) -> None:
        self.out = out
        self.level = level
        self.date, self.time = dos_datetime(epoch)
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.offset = 0
        self.members: list[_Member] = []

    def _w(self, data: bytes | memoryview) -> None:
        self.out.write(data)
        self.offset += len(data)

    def write_all(self, entries: Iterable[Entry], payload: PayloadReader | None = None) -> None:
        """Write every entry, then the central directory (after ``payload.verify()``, with a payload)."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="qlcapsule-zip") as pool:
            queue: deque[tuple[Entry, Future[_Prepared] | None, int]] = deque()
            in_flight = 0
            it = iter(entries)
            exhausted = False
            while True:
                # keep the window full: small files are prepared ahead on the pool
                while not exhausted and len(queue) < WINDOW_JOBS and in_flight < WINDOW_BYTES:
                    try:
                        entry = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    name, source, _mode, size = entry
                    known = len(source) if isinstance(source, (bytes, bytearray)) else size
                    assert known is not None, name
                    if known <= SMALL:
                        # read here, in order (the payload reader hashes on its own thread); deflated on the pool
                        fut = pool.submit(_prepare, name, _read_small(name, source, size), self.level)
                        queue.append((entry, fut, known))
                        in_flight += known
                    else:
                        queue.append((entry, None, known))
                if not queue:
                    break
                entry, prepared, known = queue.popleft()
                if prepared is not None:
                    in_flight -= known
                    self._write_prepared(entry, prepared.result())
                else:
                    self._write_streamed(entry, known)
        if payload is not None:
            payload.verify()
        self._write_central()

    # -- members ---------------------------------------------------------------
    def _local(self, name: bytes, flags: int, method: int, crc: int, csize: int, usize: int, zip64: bool) -> int:
        extra = b""
        version = 20
        if zip64:
            extra = struct.pack("<HHQQ", 1, 16, usize, csize)
            csize = usize = 0xFFFFFFFF
            version = 45
        self._w(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                version,
                flags,
                method,
                self.time,
                self.date,
                crc,
                csize,
                usize,
                len(name),
                len(extra),
            )
            + name
            + extra
        )
        return version

    @staticmethod
    def _flags(name: str) -> tuple[bytes, int]:
        raw = name.encode("utf-8")
        return raw, (0 if name.isascii() else 0x800)

    def _write_prepared(self, entry: Entry, p: _Prepared) -> None:
        name, flags = self._flags(entry[0])
        offset = self.offset
        zip64 = p.usize >= ZIP64_LIMIT or len(p.data) >= ZIP64_LIMIT
        version = self._local(name, flags, p.method, p.crc, len(p.data), p.usize, zip64)
        self._w(p.data)
        self.members.append(_Member(name, flags, p.method, p.crc, len(p.data), p.usize, offset, entry[2], version))

    def _write_streamed(self, entry: Entry, expected: int) -> None:
        rel, source, mode, _size = entry
        name, flags = self._flags(rel)
        flags |= 0x08  # sizes and CRC follow the data
        offset = self.offset
        assert callable(source), rel  # a payload file's chunks (see _tarstream.payload_entries)
        chunks = iter(source())
        try:
            head = next(chunks, b"")
            store = should_store(rel, head)
            method = 0 if store else 8
            # deflate can grow incompressible data a little; leave room before choosing ZIP64
            zip64 = expected + (expected >> 6) + 65536 >= ZIP64_LIMIT
            version = self._local(name, flags, method, 0, 0, 0, zip64)
            comp = None if store else zlib.compressobj(self.level, zlib.DEFLATED, -zlib.MAX_WBITS)
            crc, usize, csize = 0, 0, 0
            chunk: bytes = head
            while chunk:
                crc = zlib.crc32(chunk, crc)
                usize += len(chunk)
                if usize > expected:
                    break
                data = comp.compress(chunk) if comp else chunk
                if data:
                    self._w(data)
                    csize += len(data)
                chunk = next(chunks, b"")
            if comp:
                tail = comp.flush()
                self._w(tail)
                csize += len(tail)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a generator left early (an error) closes its file now
        if usize != expected:
            raise IntegrityError(f"{source}: changed while exporting (expected {expected} bytes, read {usize})")
        if zip64:
            self._w(struct.pack("<IIQQ", 0x08074B50, crc, csize, usize))
        else:
            self._w(struct.pack("<IIII", 0x08074B50, crc, csize, usize))
        self.members.append(_Member(name, flags, method, crc, csize, usize, offset, mode, version))

    # -- central directory -------------------------------------------------------
    def _write_central(self) -> None:
        start = self.offset
        for m in self.members:
            fields = []
            csize, usize, offset = m.csize, m.usize, m.offset
            if usize >= ZIP64_LIMIT:
                fields.append(usize)
                usize = 0xFFFFFFFF
            if csize >= ZIP64_LIMIT:
                fields.append(csize)
                csize = 0xFFFFFFFF
            if offset >= ZIP64_LIMIT:
                fields.append(offset)
                offset = 0xFFFFFFFF
            extra = struct.pack("<HH", 1, 8 * len(fields)) + struct.pack(f"<{len(fields)}Q", *fields) if fields else b""
            version = 45 if fields else m.version
            mode = 0o100755 if m.mode & 0o111 else 0o100644
            self._w(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    (3 << 8) | version,
                    version,
                    m.flags,
                    m.method,
                    self.time,
                    self.date,
                    m.crc,
                    csize,
                    usize,
                    len(m.name),
                    len(extra),
                    0,
                    0,
                    0,
                    mode << 16,
                    offset,
                )
                + m.name
                + extra
            )
        size = self.offset - start
        count = len(self.members)
        if count >= 0xFFFF or size >= ZIP64_LIMIT or start >= ZIP64_LIMIT:
            eocd64 = self.offset
            self._w(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, (3 << 8) | 45, 45, 0, 0, count, count, size, start))
            self._w(struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1))
            self._w(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
        else:
            self._w(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, size, start, 0))
