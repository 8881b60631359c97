"""Writing many git blobs at once: one pass per file, one packfile per worker.

A capsule's first commit (or any commit where many files changed) would cost
one fsync'd loose object per file through libgit2 — seconds for a 5,000-file
capsule. Instead each worker thread streams its share of the files into its
own packfile: every file is read once, and that one read yields the SHA-256
the lock is checked against, the git blob id and the zlib stream. The pack
and its version-2 index are fsync'd, then renamed into ``objects/pack``
(the ``.idx`` last, so readers never see a pack without its index). A
process killed half-way leaves only a ``tmp_pack_*`` file that git ignores.

Pure stdlib (hashlib and zlib release the GIL, so threads use every core);
the formats are git's ``Documentation/gitformat-pack.txt``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError
from ..format.lock import mkstemp

CHUNK = 1 << 20
OBJ_BLOB = 3
#: files above this are compressed at level 1: mostly binaries that barely shrink
FAST_LEVEL_ABOVE = 1 << 20


@dataclass(frozen=True)
class BlobResult:
    path: str
    sha256: str
    oid: str  # hex git blob id
    size: int


def blob_header(size: int) -> bytes:
    return b"blob %d\x00" % size


def _obj_header(kind: int, size: int) -> bytes:
    first = (kind << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(first | 0x80)
        first = size & 0x7F
        size >>= 7
    out.append(first)
    return bytes(out)


def hash_blob_file(path: Path) -> tuple[str, str, int]:
    """``(sha256, git blob id, size)`` of a file, read once."""
    h256 = hashlib.sha256()
    size = os.stat(path).st_size
    h1 = hashlib.sha1(blob_header(size))
    n = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            n += len(chunk)
            h256.update(chunk)
            h1.update(chunk)
    if n != size:
        raise InputError(f"{path}: changed while committing")
    return h256.hexdigest(), h1.hexdigest(), size


class _Pack:
    """One packfile being written by one thread."""

    def __init__(self, pack_dir: Path) -> None:
        fd, tmp = mkstemp("tmp_pack_", pack_dir)
        self.tmp = Path(tmp)
        self.f: BinaryIO = os.fdopen(fd, "w+b")
        self.f.write(b"PACK" + struct.pack(">II", 2, 0))
        self.offset = 12
        self.entries: list[tuple[bytes, int, int]] = []  # (oid, crc32, offset)
        self.seen: set[bytes] = set()

    def add_file(self, rel: str, full: Path) -> BlobResult:
        size = os.stat(full).st_size
        h256 = hashlib.sha256()
        h1 = hashlib.sha1(blob_header(size))
        level = _level_for(full, size)
        zc = zlib.compressobj(level)
        head = _obj_header(OBJ_BLOB, size)
        start = self.offset
        self.f.write(head)
        crc = zlib.crc32(head)
        written = len(head)
        n = 0
        with open(full, "rb") as src:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                n += len(chunk)
                h256.update(chunk)
                h1.update(chunk)
                z = zc.compress(chunk)
                if z:
                    crc = zlib.crc32(z, crc)
                    self.f.write(z)
                    written += len(z)
        z = zc.flush()
        crc = zlib.crc32(z, crc)
        self.f.write(z)
        written += len(z)
        if n != size:
            raise InputError(f"{rel}: changed while committing")
        oid = h1.digest()
        if oid in self.seen:  # same content twice: keep one copy
            self.f.seek(start)
            self.f.truncate()
        else:
            self.seen.add(oid)
            self.entries.append((oid, crc & 0xFFFFFFFF, start))
            self.offset = start + written
        return BlobResult(rel, h256.hexdigest(), oid.hex(), size)

    def discard(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)

    def finish(self, pack_dir: Path) -> str | None:
        """Seal the pack, write its index, fsync both and move them in place."""
        if not self.entries:
            self.discard()
            return None
        f = self.f
        f.seek(8)
        f.write(struct.pack(">I", len(self.entries)))
        f.flush()
        f.seek(0)
        h = hashlib.sha1()
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
        trailer = h.digest()
        f.seek(0, os.SEEK_END)
        f.write(trailer)
        f.flush()
        os.fsync(f.fileno())
        f.close()
        name = trailer.hex()
        idx_bytes = _index_bytes(self.entries, trailer)
        fd, idx_tmp = mkstemp("tmp_idx_", pack_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(idx_bytes)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(self.tmp, 0o444)
            os.chmod(idx_tmp, 0o444)
            os.replace(self.tmp, pack_dir / f"pack-{name}.pack")
            os.replace(idx_tmp, pack_dir / f"pack-{name}.idx")
        except BaseException:
            Path(idx_tmp).unlink(missing_ok=True)
            self.tmp.unlink(missing_ok=True)
            raise
        return name


def _level_for(full: Path, size: int) -> int:
    """zlib level: 6 for ordinary files, 1 for big ones, 0 (stored) when a sample does not shrink."""
    if size <= FAST_LEVEL_ABOVE:
        return 6
    with open(full, "rb") as f:
        sample = f.read(1 << 16)
    return 1 if len(zlib.compress(sample, 1)) < 0.9 * len(sample) else 0


def _index_bytes(entries: Sequence[tuple[bytes, int, int]], pack_sha: bytes) -> bytes:
    ordered = sorted(entries)
    fanout = [0] * 256
    for oid, _, _ in ordered:
        fanout[oid[0]] += 1
    total = 0
    for i in range(256):
        total += fanout[i]
        fanout[i] = total
    parts = [b"\377tOc", struct.pack(">I", 2), struct.pack(">256I", *fanout)]
    parts.append(b"".join(o for o, _, _ in ordered))
    parts.append(struct.pack(f">{len(ordered)}I", *(c for _, c, _ in ordered)))
    small: list[int] = []
    large: list[int] = []
    for _, _, off in ordered:
        if off < 0x80000000:
            small.append(off)
        else:
            small.append(0x80000000 | len(large))
            large.append(off)
    parts.append(struct.pack(f">{len(small)}I", *small))
    if large:
        parts.append(struct.pack(f">{len(large)}Q", *large))
    parts.append(pack_sha)
    body = b"".join(parts)
    return body + hashlib.sha1(body).digest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        # some filesystems refuse fsync on directories (EINVAL); the files themselves are synced
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_blobs(
    objects_dir: Path, files: Sequence[tuple[str, Path]], *, workers: int | None = None
) -> list[BlobResult]:
    """Store ``files`` (relpath, absolute path) as blobs in new packfiles.

    Returns one result per input, in input order. On any error the partial
    packs are removed and nothing becomes visible.
    """
    if not files:
        return []
    pack_dir = objects_dir / "pack"
    pack_dir.mkdir(parents=True, exist_ok=True)
    n = max(1, min(workers or (os.cpu_count() or 1), len(files) // 64 + 1, 8))
    # Spread by size so each pack gets a similar share of the bytes.
    order = sorted(range(len(files)), key=lambda i: -_size(files[i][1]))
    shares: list[list[int]] = [[] for _ in range(n)]
    for k, i in enumerate(order):
        shares[k % n].append(i)
    packs = [_Pack(pack_dir) for _ in range(n)]
    results: list[BlobResult | None] = [None] * len(files)

    def run(w: int) -> None:
        pack = packs[w]
        for i in shares[w]:
            rel, full = files[i]
            try:
                results[i] = pack.add_file(rel, full)
            except FileNotFoundError:
                raise InputError(f"{rel}: vanished while committing") from None

    try:
        if n == 1:
            run(0)
        else:
            from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 -- start-up: concurrent.futures loads only for a pack written by several threads

            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="qlcapsule-pack") as pool:
                for fut in [pool.submit(run, w) for w in range(n)]:
                    fut.result()
        for pack in packs:
            pack.finish(pack_dir)
    except BaseException:
        for pack in packs:
            if not pack.f.closed:
                pack.discard()
        raise
    _fsync_dir(pack_dir)
    return [r for r in results if r is not None]


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
