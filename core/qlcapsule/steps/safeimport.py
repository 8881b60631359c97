"""Safe import of exported capsules: zip, tar (plain, gzip, xz, zstd) and OCI layouts.

``import_archive(archive, dest)`` unpacks into a new temp directory beside
``dest`` and nowhere else, then moves exactly the files capsule.lock lists (plus
capsule.yaml, capsule.lock and capsule.sig) into a second directory there,
verifies that against its lock and the operator's keys (through
:func:`qlcapsule.pipeline.verify_capsule`, the function ``verify`` uses) and
renames it to ``dest``. On any failure the temp directory is removed and
``dest`` is untouched.

What is not locked is not written: an archive that holds anything else (a
``.git/config`` with ``core.fsmonitor``, a ``__pycache__/*.pyc``, a ``.venv/``,
any extra file) is refused, because it is not what was sealed; with
``drop_unlocked`` those files are left behind in the temp directory (and
removed with it) and named in the result. The built-in excludes that make
``verify`` skip such files in place never make import write them.

Refused, each with one line naming the archive and the entry:

- absolute paths, drive letters, ``..``, ``.``/empty components, backslashes,
  NUL and control characters, names that are not UTF-8;
- symlinks, hardlinks, devices, FIFOs, sparse files and unknown entry types;
- duplicate names and names that collide once case-folded and
  NFC-normalised (``README`` vs ``readme``, ``é`` vs ``e`` + combining accent),
  and a file that is also used as a directory;
- bombs: more than ``max_files`` entries, more than ``max_total`` bytes
  unpacked, or a compressed stream / zip entry inflating more than
  ``max_ratio`` times (checked while streaming, past the first MiB);
- zip specifics: encrypted entries, methods other than store/deflate,
  overlapping entries, sizes or CRCs that lie;
- OCI specifics: blobs whose digest or size differ from their descriptor.

Tar is read by the small reader below rather than :mod:`tarfile`, so every
header (PAX and GNU long names included) is bounded and checked before it is
trusted.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import math
import os
import re
import shutil
import stat
import struct
import tempfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InputError, QlcapsuleError, UnsafePathError, VerificationError, signals_deferred
from ..log import event, get_logger

__all__ = ["Limits", "ImportResult", "import_archive", "parse_size", "OCI_ARTIFACT_TYPE", "OCI_LAYER_TYPES"]

log = get_logger("import")

CHUNK = 1 << 20
OCI_ARTIFACT_TYPE = "application/vnd.qlcapsule.capsule.v1"
OCI_LAYER_TYPES = (
    "application/vnd.qlcapsule.capsule.layer.v1.tar+gzip",
    "application/vnd.qlcapsule.capsule.layer.v1.tar+zstd",
    "application/vnd.qlcapsule.capsule.layer.v1.tar",
)
_DRIVE = re.compile(r"^[A-Za-z]:")
#: characters that reorder how a name is displayed (Trojan Source, CVE-2021-42574)
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")  # \Z: "$" would accept a final newline


class UnsafeArchiveError(UnsafePathError):
    """An archive entry or structure that import refuses (exit code 2)."""


@dataclass
class Limits:
    """Bomb limits. ``max_entry`` defaults to ``max_total``."""

    max_total: int = 16 << 30
    max_files: int = 200_000
    max_ratio: float = 200.0
    max_entry: int | None = None
    ratio_floor: int = 1 << 20  # ratios are judged only past this many unpacked bytes

    def __post_init__(self) -> None:
        if not (self.max_ratio >= 1 and math.isfinite(self.max_ratio)):
            raise InputError(f"--max-ratio: {self.max_ratio} must be a finite number of at least 1")
        if self.max_files < 1:
            raise InputError(f"--max-files: {self.max_files} must be at least 1")
        if self.max_total < 1:
            raise InputError(f"--max-size: {self.max_total} bytes must be at least 1")

    @property
    def entry_limit(self) -> int:
        return self.max_entry if self.max_entry is not None else self.max_total


@dataclass
class ImportResult:
    path: Path
    capsule: str
    digest: str
    files: int
    format: str
    archive: str
    verification: dict[str, Any] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "capsule": self.capsule,
            "digest": self.digest,
            "files": self.files,
            "format": self.format,
            "archive": self.archive,
            "verification": self.verification,
            "dropped": self.dropped,
        }


_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
    "t": 10**12,
    "tb": 10**12,
    "tib": 2**40,
}


def parse_size(text: str, where: str = "size") -> int:
    """``"16GiB"`` -> bytes; plain numbers are bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise InputError(f"{where}: {text!r} is not a size (like 500MiB or 2GB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


# -- the sink: every write goes through here ------------------------------------


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


class _Sink:
    """Checks names and budgets and writes files under ``root`` only."""

    def __init__(self, root: Path, label: str, limits: Limits) -> None:
        self.root = root
        self.label = label
        self.limits = limits
        self.total = 0
        self.count = 0
        self.files: dict[str, str] = {}
        self.dirs: dict[str, str] = {}

    def refuse(self, name: str, reason: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self.label}: entry {name!r}: {reason}")

    def check(self, name: str, *, is_dir: bool = False) -> str:
        """Validate an entry name; returns it without a trailing '/' (directories)."""
        shown = name
        if is_dir and name.endswith("/"):
            name = name[:-1]
        if not name:
            raise self.refuse(shown, "empty name")
        if "\x00" in name:
            raise self.refuse(shown, "NUL byte in name")
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
            raise self.refuse(shown, "control character in name")
        if any(c in _BIDI for c in name):
            raise self.refuse(shown, "bidirectional-text control character in name (it can disguise the name)")
        if "\\" in name:
            raise self.refuse(shown, "backslash in name (Windows path separator)")
        if name.startswith("/"):
            raise self.refuse(shown, "absolute path")
        if _DRIVE.match(name):
            raise self.refuse(shown, "drive-letter path")
        parts = name.split("/")
        if ".." in parts:
            raise self.refuse(shown, "'..' escapes the destination")
        if any(p in ("", ".") for p in parts):
            raise self.refuse(shown, "not a normalised path ('.' or empty component)")
        if len(name.encode("utf-8")) > 4096 or any(len(p.encode("utf-8")) > 255 for p in parts):
            raise self.refuse(shown, "name too long")
        self.count += 1
        if self.count > self.limits.max_files:
            raise self.refuse(shown, f"more than {self.limits.max_files} entries (limit --max-files)")
        self._collisions(shown, parts, is_dir)
        return name

    def _collisions(self, shown: str, parts: list[str], is_dir: bool) -> None:
        for i in range(1, len(parts) + (1 if is_dir else 0)):
            prefix = "/".join(parts[:i])
            k = _key(prefix)
            if k in self.files:
                raise self.refuse(shown, f"uses {self.files[k]!r} as a directory but it is a file")
            seen = self.dirs.setdefault(k, prefix)
            if seen != prefix:
                raise self.refuse(shown, f"directory {prefix!r} collides with {seen!r} (case or Unicode normalisation)")
        if is_dir:
            return
        full = "/".join(parts)
        k = _key(full)
        if k in self.dirs:
            raise self.refuse(shown, f"is a file but {self.dirs[k]!r} is a directory")
        if k in self.files:
            other = self.files[k]
            if other == full:
                raise self.refuse(shown, "duplicate entry")
            raise self.refuse(shown, f"collides with {other!r} (case or Unicode normalisation)")
        self.files[k] = full

    def reserve(self, name: str, size: int) -> None:
        if size > self.limits.entry_limit:
            raise self.refuse(name, f"{size} bytes is over the per-entry limit of {self.limits.entry_limit}")
        if self.total + size > self.limits.max_total:
            raise self.refuse(name, f"unpacked size would exceed {self.limits.max_total} bytes (limit --max-size)")
        self.total += size

    def mkdir(self, name: str) -> Path:
        path = self.root
        for part in name.split("/"):
            path = path / part
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise self.refuse(name, "directory clashes with a file") from None
        return path

    def create(self, name: str, mode: int) -> BinaryIO:
        parent, _, base = name.rpartition("/")
        where = self.mkdir(parent) if parent else self.root
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(where / base, flags, 0o755 if mode & 0o111 else 0o644)
        except FileExistsError:
            raise self.refuse(name, "duplicate entry") from None
        os.fchmod(fd, 0o755 if mode & 0o111 else 0o644)
        return os.fdopen(fd, "wb")

    def write_stream(self, name: str, mode: int, size: int, read: Any) -> None:
        """Copy exactly ``size`` bytes from ``read(n)``; more or fewer is refused."""
        self.reserve(name, size)
        left = size
        with self.create(name, mode) as out:
            while left:
                chunk = read(min(CHUNK, left))
                if not chunk:
                    raise self.refuse(name, f"truncated: {left} of {size} bytes missing")
                out.write(chunk)
                left -= len(chunk)


# -- compressed streams with a ratio budget -------------------------------------------


class _Counting:
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data

    def readable(self) -> bool:
        return True


class _Inflating:
    """``read(n)`` over a decompressor, refusing bombs by ratio and total output."""

    def __init__(self, raw: BinaryIO, kind: str, label: str, limits: Limits) -> None:
        self.counter = _Counting(raw)
        self.label = label
        self.limits = limits
        self.kind = kind
        self.out = 0
        # headers and padding add to the payload; allow for them in the total budget
        self.cap = limits.max_total + max(64 << 20, limits.max_total // 8)
        self.stream: Any
        counter: Any = self.counter
        if kind == "gzip":
            self.stream = gzip.GzipFile(fileobj=counter, mode="rb")
        elif kind == "xz":
            self.stream = lzma.LZMAFile(counter)
        elif kind == "zstd":
            import zstandard  # noqa: PLC0415 -- start-up: zstandard loads only for a .tar.zst archive

            self.stream = zstandard.ZstdDecompressor().stream_reader(counter, read_across_frames=True)
        else:
            self.stream = counter

    def read(self, n: int) -> bytes:
        if n < 0:  # never "the rest of the stream": that is unbounded memory
            raise UnsafeArchiveError(f"{self.label}: corrupt tar archive (negative length)")
        try:
            data = self.stream.read(n)
        except (OSError, EOFError, lzma.LZMAError, ValueError, zlib.error) as exc:
            raise UnsafeArchiveError(f"{self.label}: corrupt {self.kind} stream: {exc}") from None
        except Exception as exc:  # zstandard.ZstdError has no common base with the others
            if type(exc).__name__ == "ZstdError":
                raise UnsafeArchiveError(f"{self.label}: corrupt zstd stream: {exc}") from None
            raise
        self.out += len(data)
        if self.kind != "none":
            if self.out > self.limits.ratio_floor and self.out > self.limits.max_ratio * max(self.counter.count, 1):
                raise UnsafeArchiveError(
                    f"{self.label}: {self.kind} stream inflates more than {self.limits.max_ratio:g} times "
                    f"(a decompression bomb? limit --max-ratio)"
                )
        if self.out > self.cap:
            raise UnsafeArchiveError(f"{self.label}: unpacks to more than {self.cap} bytes (limit --max-size)")
        return data

    def finish(self) -> None:
        """Read the compressed stream to its end: its trailer (CRC, size, index) is checked, trailing junk refused."""
        if self.kind == "none":
            return
        while self.read(CHUNK):
            pass


# -- tar --------------------------------------------------------------------------------

_TYPES_REFUSED = {
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "character device",
    b"4": "block device",
    b"6": "FIFO",
    b"S": "GNU sparse file",
    b"V": "volume label",
    b"M": "multi-volume continuation",
    b"D": "GNU dump directory",
    b"N": "GNU old long name",
}


def _octal(field_: bytes, what: str, label: str) -> int:
    if field_ and field_[0] & 0x80:  # GNU base-256
        value = int.from_bytes(field_[1:], "big")
        return -value if field_[0] & 0x40 else value
    text = field_.split(b"\x00", 1)[0].strip(b" \x00")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise UnsafeArchiveError(f"{label}: corrupt tar header ({what} field {text!r})") from None


def _read_exact(read: Any, n: int, label: str) -> bytes:
    parts = []
    left = n
    while left:
        chunk = read(min(left, CHUNK))
        if not chunk:
            raise UnsafeArchiveError(f"{label}: truncated tar archive")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _skip(read: Any, n: int, label: str) -> None:
    while n:
        chunk = read(min(n, CHUNK))
        if not chunk:
            raise UnsafeArchiveError(f"{label}: truncated tar archive")
        n -= len(chunk)


def _parse_pax(data: bytes, label: str) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos:].strip(b"\x00") == b"":
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise UnsafeArchiveError(f"{label}: corrupt PAX header")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise UnsafeArchiveError(f"{label}: corrupt PAX header length") from None
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise UnsafeArchiveError(f"{label}: corrupt PAX record")
        key, _, value = record[:-1].partition(b"=")
        try:
            records[key.decode("utf-8")] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeArchiveError(f"{label}: PAX record is not UTF-8") from None
        pos += length
    return records


_META_MAX = 1 << 20


def _extract_tar(read: Any, sink: _Sink) -> None:  # noqa: C901 - one refusal per kind of hostile tar member, in the order the threat model needs
    label = sink.label
    pax: dict[str, str] = {}
    long_name: str | None = None
    headers = 0
    while True:
        block = read(512)
        if not block:
            raise UnsafeArchiveError(f"{label}: truncated tar archive (no end-of-archive blocks)")
        if len(block) < 512:
            block += _read_exact(read, 512 - len(block), label)
        if block == b"\x00" * 512:
            if pax or long_name is not None:
                raise UnsafeArchiveError(f"{label}: a PAX or GNU long-name header with no entry after it")
            return
        headers += 1
        if headers > 4 * sink.limits.max_files + 16:
            raise UnsafeArchiveError(f"{label}: too many tar headers")
        stored = _octal(block[148:156], "checksum", label)
        unsigned = sum(block[:148]) + 256 + sum(block[156:])
        signed = sum(struct.unpack("148b", block[:148])) + 256 + sum(struct.unpack("356b", block[156:]))
        if stored not in (unsigned, signed):
            raise UnsafeArchiveError(f"{label}: bad tar header checksum (not a tar archive, or corrupt)")
        typeflag = block[156:157]
        size = _octal(block[124:136], "size", label)
        if size < 0:
            raise UnsafeArchiveError(f"{label}: negative size in tar header")
        raw_name = block[0:100].split(b"\x00", 1)[0]
        if block[257:263] == b"ustar\x00":
            prefix = block[345:500].split(b"\x00", 1)[0]
            if prefix:
                raw_name = prefix + b"/" + raw_name
        padded = size + (-size % 512)
        if typeflag in (b"x", b"g", b"L", b"K"):
            if size > _META_MAX:
                raise UnsafeArchiveError(f"{label}: tar metadata header of {size} bytes is too large")
            data = _read_exact(read, padded, label)[:size]
            if typeflag == b"x":
                pax = _parse_pax(data, label)
            elif typeflag == b"L":
                try:
                    long_name = data.split(b"\x00", 1)[0].decode("utf-8")
                except UnicodeDecodeError:
                    raise UnsafeArchiveError(f"{label}: GNU long name is not UTF-8") from None
            continue
        try:
            name = long_name if long_name is not None else raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeArchiveError(f"{label}: entry {raw_name!r}: name is not UTF-8") from None
        if "path" in pax:
            name = pax["path"]
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise UnsafeArchiveError(f"{label}: entry {name!r}: bad PAX size") from None
            if size < 0:
                raise UnsafeArchiveError(f"{label}: entry {name!r}: negative PAX size")
            padded = size + (-size % 512)
        sparse = any(k.startswith("GNU.sparse") for k in pax)
        pax, long_name = {}, None
        if typeflag in _TYPES_REFUSED or sparse:
            kind = "GNU sparse file" if sparse else _TYPES_REFUSED[typeflag]
            raise sink.refuse(name, f"{kind} entries are not allowed (regular files only)")
        if name.startswith("./"):  # 'tar -C dir -cf x.tar .' writes './' and './a/b': the same tree, no risk
            if name in ("./", ".") or (typeflag == b"5" and name.rstrip("/") == "."):
                if typeflag != b"5":
                    raise sink.refuse(name, "regular file with a directory name")
                if size:
                    _skip(read, padded, label)
                continue
            name = name[2:]
        if typeflag == b"5":
            sink.check(name, is_dir=True)
            if size:
                _skip(read, padded, label)
            continue
        if typeflag not in (b"0", b"\x00", b"7"):
            raise sink.refuse(name, f"unsupported tar entry type {typeflag!r}")
        if name.endswith("/"):
            raise sink.refuse(name, "regular file with a directory name")
        name = sink.check(name)
        mode = _octal(block[100:108], "mode", label)
        sink.write_stream(name, mode, size, read)
        if padded > size:
            _skip(read, padded - size, label)


# -- zip ----------------------------------------------------------------------------------


def _zip_directory_count(path: Path, label: str) -> int | None:
    """The entry count the end-of-central-directory record declares (before zipfile parses every entry)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - (1 << 16) - 22))
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return None  # zipfile says what is wrong
        disk, cd_disk, _, total = struct.unpack("<HHHH", tail[at + 4 : at + 12])
        if disk or cd_disk:
            raise UnsafeArchiveError(f"{label}: multi-disk (split) zip archives are not supported")
        if total != 0xFFFF or at < 20 or tail[at - 20 : at - 16] != b"PK\x06\x07":
            return int(total)
        (offset,) = struct.unpack("<Q", tail[at - 12 : at - 4])
        if offset > size - 56:
            return None
        f.seek(offset)
        record = f.read(56)
        if record[:4] != b"PK\x06\x06":
            return None
        return int(struct.unpack("<Q", record[32:40])[0])


def _extract_zip(path: Path, sink: _Sink) -> None:  # noqa: C901 - one refusal per kind of hostile zip entry
    label = sink.label
    declared = _zip_directory_count(path, label)
    if declared is not None and declared > sink.limits.max_files:
        raise UnsafeArchiveError(
            f"{label}: {declared} entries is more than {sink.limits.max_files} (limit --max-files)"
        )
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, UnicodeDecodeError, struct.error) as exc:
        raise UnsafeArchiveError(f"{label}: not a readable zip archive: {exc}") from None
    with zf, open(path, "rb") as raw:
        infos = zf.infolist()
        if len(infos) > sink.limits.max_files:
            raise UnsafeArchiveError(
                f"{label}: {len(infos)} entries is more than {sink.limits.max_files} (limit --max-files)"
            )
        _check_zip_layout(zf, infos, raw, label)
        plan = []
        for info in infos:
            name = info.orig_filename
            unix = info.external_attr >> 16 if info.create_system == 3 else 0
            ftype = stat.S_IFMT(unix)
            if ftype == stat.S_IFLNK:
                raise sink.refuse(name, "symlink entries are not allowed (regular files only)")
            if ftype and ftype not in (stat.S_IFREG, stat.S_IFDIR):
                raise sink.refuse(name, "device, FIFO or socket entries are not allowed")
            if info.flag_bits & 0x61:  # bit 0 encrypted, 5 patched data, 6 strong encryption
                raise sink.refuse(name, "encrypted or patched entries are not supported")
            if not info.flag_bits & 0x800 and not name.isascii():
                # zipfile decoded the bytes as cp437; Info-ZIP on Unix writes UTF-8 without setting the flag
                raw_name = name.encode("cp437")
                shown = raw_name.decode("utf-8", "replace")  # U+FFFD where the bytes are not UTF-8
                if info.create_system != 3 or shown.encode() != raw_name:  # not Unix, or not valid UTF-8
                    raise sink.refuse(shown, "name is not UTF-8 (legacy code-page names are not supported)")
                name = shown
            is_dir = name.endswith("/") or ftype == stat.S_IFDIR or bool(info.external_attr & 0x10)
            if is_dir:
                sink.check(name, is_dir=True)
                if info.file_size:
                    raise sink.refuse(name, "directory entry with data")
                continue
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise sink.refuse(
                    name, f"compression method {info.compress_type} is not supported (store or deflate only)"
                )
            if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                raise sink.refuse(name, "stored entry whose sizes disagree")
            if info.file_size > sink.limits.ratio_floor and info.file_size > sink.limits.max_ratio * max(
                info.compress_size, 1
            ):
                raise sink.refuse(
                    name,
                    f"inflates {info.file_size / max(info.compress_size, 1):.0f} times, more than "
                    f"{sink.limits.max_ratio:g} (a zip bomb? limit --max-ratio)",
                )
            plan.append((sink.check(name), info, unix))
        total = sum(info.file_size for _, info, _ in plan)
        packed = path.stat().st_size
        if total > sink.limits.ratio_floor and total > sink.limits.max_ratio * max(packed, 1):
            raise UnsafeArchiveError(
                f"{label}: entries inflate {total / max(packed, 1):.0f} times the archive's size, more than "
                f"{sink.limits.max_ratio:g} (a zip bomb? limit --max-ratio)"
            )
        for name, info, unix in plan:
            try:
                with zf.open(info) as member:
                    sink.write_stream(name, unix & 0o777, info.file_size, member.read)
                    if member.read(1):
                        raise sink.refuse(name, "more data than its declared size")
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, UnicodeDecodeError) as exc:
                raise sink.refuse(name, f"corrupt or unsupported entry: {exc}") from None


def _check_zip_layout(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], raw: BinaryIO, label: str) -> None:
    """Refuse entries whose data overlap (the classic non-recursive zip bomb)."""
    spans = []
    end_of_data = zf.start_dir  # type: ignore[attr-defined]
    for info in infos:
        if not 0 <= info.header_offset < end_of_data:
            raise UnsafeArchiveError(f"{label}: entry {info.orig_filename!r}: local header offset outside the archive")
        raw.seek(info.header_offset)
        header = raw.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise UnsafeArchiveError(f"{label}: entry {info.orig_filename!r}: bad local header")
        n, m = struct.unpack("<HH", header[26:30])
        start = info.header_offset
        end = start + 30 + n + m + info.compress_size
        spans.append((start, end, info.orig_filename))
    spans.sort()
    for (_s1, e1, n1), (s2, _e2, n2) in zip(spans, spans[1:], strict=False):
        if e1 > s2:
            raise UnsafeArchiveError(f"{label}: entries {n1!r} and {n2!r} overlap (a zip bomb?)")
    if spans and spans[-1][1] > end_of_data:
        raise UnsafeArchiveError(f"{label}: entry {spans[-1][2]!r} overlaps the central directory")


# -- format detection and OCI ------------------------------------------------------------


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if len(head) == 512 and head[257:262] == b"ustar":
        return "none"
    if len(head) == 512 and head[148:156].strip(b" \x00").isdigit():
        return "none"  # a pre-POSIX (v7) tar header
    raise UnsafeArchiveError(f"{path}: not a zip, tar, tar.gz, tar.xz, tar.zst or OCI export")


def _unpack(path: Path, into: Path, label: str, limits: Limits) -> tuple[str, list[str]]:
    """Unpack into ``into``; returns the format and every regular file written (relative names)."""
    kind = _sniff(path)
    sink = _Sink(into, label, limits)
    if kind == "zip":
        _extract_zip(path, sink)
        return "zip", list(sink.files.values())
    with open(path, "rb") as raw:
        stream = _Inflating(raw, kind, label, limits)
        _extract_tar(stream.read, sink)
        stream.finish()
    return {"none": "tar", "gzip": "tar.gz", "xz": "tar.xz", "zstd": "tar.zst"}[kind], list(sink.files.values())


def _read_small(path: Path, label: str, limit: int = 4 << 20) -> bytes:
    try:
        if path.is_symlink() or not path.is_file():
            raise UnsafeArchiveError(f"{label}: {path.name}: missing or not a regular file")
        if path.stat().st_size > limit:
            raise UnsafeArchiveError(f"{label}: {path.name}: larger than {limit} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise UnsafeArchiveError(f"{label}: {path.name}: {exc.strerror}") from None


def _json(data: bytes, what: str, label: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UnsafeArchiveError(f"{label}: {what}: not valid JSON") from None


def _blob(layout: Path, desc: Any, label: str) -> Path:
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
        raise UnsafeArchiveError(f"{label}: descriptor without a digest")
    algo, _, hexd = desc["digest"].partition(":")
    if algo != "sha256" or not _HEX64.match(hexd):
        raise UnsafeArchiveError(f"{label}: unsupported or malformed digest {desc['digest']!r}")
    path = layout / "blobs" / "sha256" / hexd
    if path.is_symlink() or not path.is_file():
        raise UnsafeArchiveError(f"{label}: blob {desc['digest']} is missing")
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    if h.hexdigest() != hexd:
        raise UnsafeArchiveError(f"{label}: blob {desc['digest']} does not match its digest")
    if desc.get("size") != size:
        raise UnsafeArchiveError(f"{label}: blob {desc['digest']} is {size} bytes, descriptor says {desc.get('size')}")
    return path


def oci_capsule_layer(layout: Path, label: str) -> Path:
    """The verified capsule layer blob of an OCI image layout directory."""
    meta = _json(_read_small(layout / "oci-layout", label), "oci-layout", label)
    if not isinstance(meta, dict) or meta.get("imageLayoutVersion") != "1.0.0":
        raise UnsafeArchiveError(f"{label}: oci-layout: unsupported imageLayoutVersion")
    index = _json(_read_small(layout / "index.json", label), "index.json", label)
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise UnsafeArchiveError(f"{label}: index.json: no manifests")
    chosen = next(
        (m for m in manifests if isinstance(m, dict) and m.get("artifactType") == OCI_ARTIFACT_TYPE), manifests[0]
    )
    manifest = _json(_read_small(_blob(layout, chosen, label), label), "manifest", label)
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if not isinstance(layers, list):
        raise UnsafeArchiveError(f"{label}: manifest has no layers")
    for layer in layers:
        if isinstance(layer, dict) and layer.get("mediaType") in OCI_LAYER_TYPES:
            return _blob(layout, layer, label)
    raise UnsafeArchiveError(f"{label}: manifest holds no qlcapsule capsule layer ({OCI_LAYER_TYPES[0]})")


def _capsule_root(stage: Path, label: str) -> Path:
    if (stage / "capsule.yaml").is_file():
        root = stage
    else:
        children = list(stage.iterdir())
        if len(children) == 1 and children[0].is_dir() and (children[0] / "capsule.yaml").is_file():
            root = children[0]
        else:
            raise UnsafeArchiveError(f"{label}: no capsule.yaml at the top of the archive (or under one top directory)")
    if not (root / "capsule.lock").is_file():
        raise VerificationError(f"{label}: the archive holds no capsule.lock; only sealed capsules can be imported")
    return root


# -- the entry point ------------------------------------------------------------------------


def _check_dest(dest: Path, shown: Path) -> None:
    """Refuse a destination that is not new or empty; messages name it ``shown``, as the user did."""
    if dest.is_symlink():
        raise InputError(f"{shown}: is a symlink; choose a new directory")
    if dest.exists():
        if not dest.is_dir():
            raise InputError(f"{shown}: exists and is not a directory")
        if any(dest.iterdir()):
            raise InputError(f"{shown}: exists and is not empty; import only into a new or empty directory")
    if not dest.parent.is_dir():
        raise InputError(f"{shown.parent}: parent directory does not exist")


def _refused(exc: QlcapsuleError, label: str, root: Path, dest: Path) -> QlcapsuleError:
    """``exc`` reworded for the archive: ``label: refused: ...``, temp paths shown as ``dest``."""
    message = exc.message.replace(str(root.resolve()), str(dest)).replace(str(root), str(dest))
    err = type(exc).__new__(type(exc))
    QlcapsuleError.__init__(err, f"{label}: refused: {message}", exit_code=exc.exit_code)
    return err


def _locked_only(root: Path, staged: list[str], into: Path, label: str, dest: Path, drop_unlocked: bool) -> list[str]:
    """Move the files capsule.lock lists (and the capsule's own three files) from ``root`` to ``into``.

    Returns what was left behind; refuses the archive when that is not empty, unless ``drop_unlocked``.
    Only names the unpacking wrote as regular files are moved, so a locked name that is a directory
    in the archive can never carry unlocked files along.
    """
    from ..format.lock import read_lock  # noqa: PLC0415 -- start-up: the lock and tree modules load only once an archive is unpacked
    from ..format.names import DEFINITION_FILE, LOCK_FILE, SIG_FILE  # noqa: PLC0415 -- start-up: the lock and tree modules load only once an archive is unpacked
    from ..format.tree import display_path, path_key  # noqa: PLC0415 -- start-up: the lock and tree modules load only once an archive is unpacked

    try:
        lock = read_lock(root / LOCK_FILE)
    except QlcapsuleError as exc:
        raise _refused(exc, label, root, dest) from None
    if lock is None:
        raise VerificationError(f"{label}: the archive holds no capsule.lock; only sealed capsules can be imported")
    wanted = {e.path for e in lock.files} | {DEFINITION_FILE, LOCK_FILE, SIG_FILE}
    keep = sorted((n for n in staged if n in wanted), key=path_key)
    extra = sorted((n for n in staged if n not in wanted), key=path_key)
    if extra and not drop_unlocked:
        more = f" (+{len(extra) - 1} more)" if len(extra) > 1 else ""
        raise VerificationError(
            f"{label}: refused: {display_path(extra[0])}{more} is not in capsule.lock; the archive is not what "
            f"was sealed (--drop-unlocked imports the locked files only)"
        )
    into.mkdir()
    for name in keep:
        parent = (into / name).parent
        parent.mkdir(parents=True, exist_ok=True)
        os.rename(root / name, into / name)
    return extra


def _stage(
    archive: Path,
    tmp: Path,
    label: str,
    limits: Limits,
    dest: Path,
    drop_unlocked: bool,
    signature_options: dict[str, Any],
) -> tuple[str, Path, dict[str, Any], list[str]]:
    """Unpack into ``tmp``, keep the locked files and verify them.

    Returns the format, the directory to rename to ``dest``, the verification report and
    the files left out.
    """
    from ..pipeline import verify_capsule  # noqa: PLC0415 -- start-up: the pipeline loads only once an archive is unpacked

    stage = tmp / "stage"
    stage.mkdir()
    try:
        if archive.is_dir():
            fmt = "oci-dir"
            layer = oci_capsule_layer(archive, label)
            staged: list[str] = []
        else:
            fmt, staged = _unpack(archive, stage, label, limits)
            layer = None
            if (stage / "oci-layout").is_file():
                fmt = "oci"
                layer = oci_capsule_layer(stage, label)
        if layer is not None:
            capsule_dir = tmp / "capsule"
            capsule_dir.mkdir()
            _, staged = _unpack(layer, capsule_dir, f"{label} (capsule layer)", limits)
            shutil.rmtree(stage)
            stage = capsule_dir
    except (
        zlib.error,
        lzma.LZMAError,
        EOFError,
        struct.error,
        NotImplementedError,
        UnicodeError,
        RecursionError,
    ) as exc:
        # a malformed structure the checks above did not name: still one line, never "internal error"
        raise UnsafeArchiveError(f"{label}: corrupt or unsupported archive ({type(exc).__name__}: {exc})") from None
    root = _capsule_root(stage, label)
    if root != stage:  # everything sits under one top directory (checked by _capsule_root)
        top = root.name + "/"
        staged = [n[len(top) :] for n in staged if n.startswith(top)]
    locked = tmp / "locked"
    dropped = _locked_only(root, staged, locked, label, dest, drop_unlocked)
    try:
        report = verify_capsule(locked, **signature_options)
    except QlcapsuleError as exc:
        raise _refused(exc, label, locked, dest) from None
    return fmt, locked, report, dropped


def import_archive(
    archive: Path,
    dest: Path,
    *,
    limits: Limits | None = None,
    drop_unlocked: bool = False,
    keys: list[str] | None = None,
    hmac_key_envs: list[str] | None = None,
    trust: str | None = None,
) -> ImportResult:
    """Unpack ``archive`` safely, keep the locked files, verify them and move them to ``dest``.

    ``keys``, ``hmac_key_envs`` and ``trust`` are the operator's trust roots, passed unchanged to
    :func:`qlcapsule.pipeline.verify_capsule` as ``verify --key/--hmac-key-env/--trust`` pass them.
    See the module docstring.
    """
    limits = limits or Limits()
    label = str(archive)
    if not archive.exists():
        raise InputError(f"{archive}: no such file")
    if not (archive.is_dir() or archive.is_file()):
        raise InputError(f"{archive}: is not a regular file or an OCI layout directory")
    shown, dest = Path(dest), Path(os.path.abspath(dest))
    if dest == Path(os.path.abspath(os.curdir)):
        raise InputError(f"{shown}: is the current directory; import into a new directory (e.g. ./{archive.stem})")
    _check_dest(dest, shown)
    signature_options = {"keys": list(keys or []), "hmac_key_envs": list(hmac_key_envs or []), "trust": trust}
    with signals_deferred():  # a SIGTERM right after the directory exists is handled in the try below
        try:
            tmp = Path(tempfile.mkdtemp(prefix=".qlcapsule-import-", dir=dest.parent))
        except OSError as exc:
            raise InputError(f"{dest.parent}: cannot create the import's temp directory ({exc.strerror})") from None
    try:
        fmt, root, report, dropped = _stage(archive, tmp, label, limits, dest, drop_unlocked, signature_options)
        if dest.exists():
            dest.rmdir()
        os.rename(root, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = ImportResult(
        path=dest,
        capsule=f"{report.get('capsule')}@{report.get('version')}",
        digest=str(report.get("digest")),
        files=int(report.get("files", 0)),
        format=fmt,
        archive=label,
        verification=report,
        dropped=dropped,
    )
    event(
        log,
        "import.done",
        archive=label,
        path=str(dest),
        capsule=result.capsule,
        digest=result.digest,
        dropped=len(dropped),
    )
    return result
