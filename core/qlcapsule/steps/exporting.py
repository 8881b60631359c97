"""Export a sealed capsule with one of the registered exporters.

``export_capsule(root, fmt, output)`` is what ``qlcapsule export``, ``ship``
and the Action call. In order, before any byte is written:

1. the exporter for ``fmt`` is looked up and its options — capsule.yaml
   ``exports.<exporter>`` with ``--option k=v`` merged over them — are
   validated by its pydantic model (and its ``check(fmt)``);
2. the output must not land inside the capsule (it would change it);
3. the capsule must be sealed, its lock intact and exactly the locked files
   there (:class:`qlcapsule.PayloadReader`, whose contents checks run as the
   exporter reads the files; see :mod:`qlcapsule.format.streaming`).

Every exporter gets that reader as its ``payload`` argument; whatever the
exporter did, :meth:`PayloadReader.verify` runs before the export is
committed, and the export's last write is held back until it passed.

Files are written to a temp file in the destination directory, fsynced and
renamed, so a failed export never leaves a half-written archive; the archive's
SHA-256 is recorded beside it in ``<file>.sha256`` (``sha256sum -c`` format).
``output="-"`` streams to stdout (exporters with ``streams = True`` only).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InputError, OptionsError, signals_deferred
from ..format.capsule import Capsule
from ..format.lock import mkstemp
from ..format.streaming import OrderedWorker, PayloadReader
from ..log import event, get_logger
from ..plugins.components import Exporter
from ..progress import bytes_progress

__all__ = ["ExportResult", "export_capsule", "parse_option_args", "resolve_exporter", "write_export"]

log = get_logger("export")


@dataclass
class ExportResult:
    """What was written: ``path`` is None when the export went to stdout."""

    path: Path | None
    format: str
    exporter: str
    sha256: str
    size: int
    media_type: str
    capsule: str
    digest: str
    sidecar: Path | None = None
    directory: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path) if self.path else "-"
        data["sidecar"] = str(self.sidecar) if self.sidecar else None
        return data


class _HashingWriter:
    """Counts and hashes what passes through; never seeks.

    Large writes are hashed on a helper thread, in order, while this thread
    goes on writing (hashlib and file writes both release the GIL), a bounded
    number of bytes ahead; so hashing the output costs almost no wall time.
    """

    _PARALLEL = 1 << 16

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.size = 0
        self._h = hashlib.sha256()
        self._worker = OrderedWorker("qlcapsule-sha256")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if n >= self._PARALLEL:
            if not isinstance(data, bytes):
                data = bytes(data)  # the caller may reuse its buffer
            self._worker.submit(self._h.update, data, n)
        else:
            self._worker.drain()
            self._h.update(data)
        self.raw.write(data)
        self.size += n
        return n

    def flush(self) -> None:
        self._worker.drain()
        self.raw.flush()

    def close(self) -> None:
        try:
            self._worker.drain()
        finally:
            self._worker.close()

    def hexdigest(self) -> str:
        self.close()
        return self._h.hexdigest()


def _parse_value(text: str) -> Any:
    """``--option`` values are strings (pydantic coerces ``3`` or ``true``); JSON for lists and maps."""
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise OptionsError(f"--option value {text[:80]!r}: invalid JSON: {exc.msg}") from None
        except RecursionError:
            raise OptionsError(f"--option value {text[:80]!r}: invalid JSON: nested too deeply") from None
    return text


def parse_option_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``["level=9", "resources.limits.cpu=500m"]`` -> nested dict; dotted keys nest."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OptionsError(f"--option {pair!r}: expected KEY=VALUE")
        parts = key.split(".")
        if any(not p for p in parts):
            raise OptionsError(f"--option {pair!r}: empty part in key {key!r}")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise OptionsError(f"--option {pair!r}: {part!r} is already set to a value")
            node = child
        node[parts[-1]] = _parse_value(value)
    return result


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _configured(capsule: Capsule, name: str) -> Mapping[str, Any]:
    """capsule.yaml ``exports.<name>``, as the model validated it."""
    return capsule.definition.exports.get(name, {})


def resolve_exporter(capsule: Capsule, fmt: str, options: Mapping[str, Any] | None = None) -> Exporter:
    """The exporter for ``fmt`` with validated options (capsule.yaml ``exports`` + ``options``)."""
    from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only when an exporter is needed

    cls = registry().exporter_for(fmt)
    configured = _configured(capsule, cls.name)
    merged = _merge(configured, options or {})
    where = f"exporter {cls.name!r} options (capsule.yaml exports.{cls.name} and --option)"
    exporter = cls.from_options(merged, where=where)
    assert isinstance(exporter, Exporter)
    exporter.sources = dict.fromkeys(configured, f"capsule.yaml exports.{cls.name}")
    exporter.sources.update(dict.fromkeys(options or {}, "--option"))
    exporter.check(canonical_format(cls, fmt))
    return exporter


def canonical_format(cls: type[Exporter] | Exporter, fmt: str) -> str:
    """``fmt``, or the exporter's first (default) format when ``fmt`` is the exporter's name."""
    return cls.formats[0] if cls.formats and fmt not in cls.formats else fmt


def inside_capsule(capsule: Capsule, target: Path) -> str | None:
    """The capsule-relative path when ``target`` would become one of the capsule's files."""
    try:
        rel = target.resolve().relative_to(capsule.root)
    except ValueError:
        return None
    parts = rel.parts
    globs = capsule.globs()
    for i in range(1, len(parts)):
        if globs.prune_dir("/".join(parts[:i])):
            return None
    path = "/".join(parts)
    if path in ("capsule.lock", "capsule.sig"):
        return path
    return path if globs.wants(path) else None


def export_capsule(  # noqa: C901 - one path for every format, option source and output kind
    root: str | Path,
    fmt: str,
    output: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    stdout: BinaryIO | None = None,
) -> ExportResult:
    """Export the capsule at ``root`` as ``fmt``; see the module docstring.

    ``output``: None writes ``<cwd>/<exporter filename>``; a directory writes
    that file inside it; ``"-"`` streams to ``stdout`` (default ``sys.stdout``).
    """
    capsule = Capsule.load(root, strict=False)
    exporter = resolve_exporter(capsule, fmt, options)
    fmt = canonical_format(exporter, fmt)  # the exporter's name stands for its first (default) format
    directory = fmt in exporter.directory_formats
    to_stdout = str(output) == "-"
    if to_stdout and (directory or not exporter.streams):
        raise InputError(f"format {fmt!r} cannot be written to stdout; pass -o PATH")
    target: Path | None = None
    if not to_stdout:
        target = Path(output) if output is not None else Path.cwd()
        # "-o dist/" means "into dist/", created if missing (like cp or aws s3 cp)
        into_dir = output is not None and str(output).endswith(("/", os.sep))
        if into_dir or (target.is_dir() and not directory) or (output is None and directory):
            target = target / exporter.filename(capsule, fmt)
        inside = inside_capsule(capsule, target)
        if inside is not None:
            raise InputError(
                f"{target}: refusing to write the export inside the capsule (it would become part of it as "
                f"{inside!r}); pass -o outside {capsule.root} or exclude that path in capsule.yaml"
            )
        if not target.parent.is_dir() and not into_dir:
            raise InputError(f"{target.parent}: output directory does not exist")
        if target.parent.exists() and not target.parent.is_dir():
            raise InputError(f"{target.parent}: exists and is not a directory")
        device = _device(target)
        if device is not None:  # "-o /dev/null", "-o fifo": written to in place, like stdout (never replaced)
            if directory or not exporter.streams:
                raise InputError(f"{target}: is a {device}; format {fmt!r} can only be written to a file or directory")
        elif not directory:
            _check_sidecar(target)
    payload = PayloadReader(capsule)  # every check but the contents; those are hashed as they are read
    digest = payload.lock.digest
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)  # only once the capsule verified
    # progress by the capsule's bytes read: a compressed export's output size is not known in advance
    with bytes_progress(f"exporting {capsule.ref} as {fmt}", sum(f.size for f in payload.files)) as advance:
        payload.progress = advance
        if directory:
            assert target is not None
            result = _export_dir(capsule, exporter, fmt, target, payload)
        elif to_stdout:
            if stdout is None and sys.stdout is None:
                raise InputError("standard output is closed; pass -o PATH")
            result = _export_stream(capsule, exporter, fmt, stdout or sys.stdout.buffer, None, digest, payload)
        elif device is not None:
            assert target is not None
            try:
                dev = open(target, "wb", buffering=0)  # a FIFO blocks here until its reader opens it, as tar does
            except OSError as exc:
                raise InputError(f"{target}: cannot open for writing ({exc.strerror})") from None
            try:
                with dev:
                    result = _export_stream(capsule, exporter, fmt, dev, target, digest, payload)  # type: ignore[arg-type]
            except OSError as exc:
                if exc.filename is not None:
                    raise
                raise InputError(f"{target}: cannot write ({exc.strerror})") from None
        else:
            assert target is not None
            result = _export_file(capsule, exporter, fmt, target, digest, payload)
    event(log, "export.done", capsule=capsule.ref, format=fmt, path=str(result.path or "-"), sha256=result.sha256)
    return result


def sha256sum_line(digest: str, name: str) -> str:
    """One ``sha256sum`` line; a name with a backslash or newline is escaped as GNU coreutils does."""
    if "\\" in name or "\n" in name or "\r" in name:
        escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{digest}  {escaped}\n"
    return f"{digest}  {name}\n"


def _device(target: Path) -> str | None:
    """What ``target`` is when it exists and is not a regular file or directory (it must not be replaced)."""
    try:
        mode = target.stat().st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        raise InputError(
            f"{target}: is a {'block device' if stat.S_ISBLK(mode) else 'socket'}; refusing to write to it"
        )
    return None


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _check_sidecar(target: Path) -> None:
    """Refuse, before writing, a ``<file>.sha256`` that could not be replaced by a file."""
    sidecar = _sidecar(target)
    if os.path.lexists(sidecar) and not (sidecar.is_file() and not sidecar.is_symlink()):
        raise InputError(f"{sidecar}: exists and is not a regular file (the export's SHA-256 goes there)")


def _export_stream(
    capsule: Capsule,
    exporter: Exporter,
    fmt: str,
    raw: BinaryIO,
    path: Path | None,
    digest: str,
    payload: PayloadReader,
) -> ExportResult:
    """Stream into ``raw`` (stdout, a FIFO, a character device): nothing to rename, no sidecar."""
    hw = _HashingWriter(raw)
    try:
        write_export(exporter, capsule, hw, fmt, payload)  # type: ignore[arg-type]
        hw.flush()
    finally:
        hw.close()
    return _result(path, fmt, exporter, hw, capsule, digest)


def _umask() -> int:
    """The process umask, read without changing it where Linux tells (another thread may be creating files)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _LastWriteHeld:
    """Passes an exporter's writes on one write behind, so its last write waits for the verdict."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._held is not None:
            self.out.write(self._held)
        self._held = data if isinstance(data, bytes) else bytes(data)  # the caller may reuse its buffer
        return len(data)

    def flush(self) -> None:
        self.out.flush()

    def release(self) -> None:
        if self._held is not None:
            self.out.write(self._held)
            self._held = None


def write_export(
    exporter: Exporter, capsule: Capsule, out: BinaryIO, fmt: str, payload: PayloadReader | None = None
) -> None:
    """Run ``exporter.export`` into ``out`` on the one integrity path every export takes.

    ``payload`` (default: a new :class:`PayloadReader`, which checks the
    capsule's lock and file set now) is handed to the exporter; once it
    returns, :meth:`PayloadReader.verify` checks every locked file the
    exporter did not read, and only then is its last write passed on to
    ``out``: a tampered capsule never yields a complete export, even on a pipe.
    """
    if payload is None:
        payload = PayloadReader(capsule)
    held = _LastWriteHeld(out)
    try:
        exporter.export(capsule, held, fmt, payload)  # type: ignore[arg-type]
        payload.verify()
        held.release()
    finally:
        payload.close()


def _result(
    path: Path | None, fmt: str, exporter: Exporter, hw: _HashingWriter, capsule: Capsule, digest: str
) -> ExportResult:
    return ExportResult(
        path=path,
        format=fmt,
        exporter=exporter.name,
        sha256=hw.hexdigest(),
        size=hw.size,
        media_type=exporter.media_type_for(fmt),
        capsule=capsule.ref,
        digest=digest,
    )


def _export_file(
    capsule: Capsule, exporter: Exporter, fmt: str, target: Path, digest: str, payload: PayloadReader
) -> ExportResult:
    if target.is_dir():
        raise InputError(f"{target}: is a directory")
    sidecar = _sidecar(target)
    mode = 0o666 & ~_umask()  # what the user's umask gives a new file (as tar and zip do)
    tmp: str | None = None
    side_tmp: str | None = None
    hw: _HashingWriter | None = None
    try:
        with signals_deferred():  # a SIGTERM right after the file exists still finds it in ``tmp``
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            except OSError as exc:
                raise InputError(f"{target.parent}: cannot write the export there ({exc.strerror})") from None
        f = os.fdopen(fd, "wb", buffering=1 << 20)
        hw = _HashingWriter(f)  # type: ignore[arg-type]
        try:
            with f:
                write_export(exporter, capsule, hw, fmt, payload)  # type: ignore[arg-type]  # raises before the rename
                hw.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if exc.filename not in (None, tmp):
                raise
            raise InputError(f"{target}: cannot write ({exc.strerror})") from None
        result = _result(target, fmt, exporter, hw, capsule, digest)
        # the sidecar is written before the archive is renamed into place, so a failure leaves neither
        with signals_deferred():
            sfd, side_tmp = mkstemp(f".{sidecar.name}.", target.parent, ".part")
        with os.fdopen(sfd, "wb") as sf:
            sf.write(sha256sum_line(result.sha256, target.name).encode())
            sf.flush()
            os.fsync(sf.fileno())
        os.chmod(tmp, mode)
        os.chmod(side_tmp, mode)
        os.replace(tmp, target)
        os.replace(side_tmp, sidecar)
    except BaseException:
        if hw is not None:
            hw.close()
        for leftover in (tmp, side_tmp):
            if leftover is not None:
                _unlink(Path(leftover))
        raise
    result.sidecar = sidecar
    return result


def _export_dir(capsule: Capsule, exporter: Exporter, fmt: str, target: Path, payload: PayloadReader) -> ExportResult:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"{target}: already exists and is not an empty directory")
    with signals_deferred():  # the temp directory is removed below, even after a signal at once
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        try:
            exporter.export_dir(capsule, tmp, fmt, payload)
            payload.verify()  # before the rename: a tampered capsule never yields a directory
        finally:
            payload.close()
        os.chmod(tmp, 0o777 & ~_umask())
        h, size = _tree_digest(tmp)
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(
        path=target,
        format=fmt,
        exporter=exporter.name,
        sha256=h,
        size=size,
        media_type=exporter.media_type_for(fmt),
        capsule=capsule.ref,
        digest=payload.lock.digest,
        directory=True,
    )


def _tree_digest(root: Path) -> tuple[str, int]:
    """SHA-256 over ``sha256sum``-style lines of every file (sorted), and the total size."""
    lines = []
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        total += path.stat().st_size
        lines.append(f"{h.hexdigest()}  {rel}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest(), total


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
