"""Caches that spare imports and scans: the entry points, and parsed capsule.yaml files.

Finding plugins means reading the metadata of every installed distribution
(``importlib.metadata.entry_points``): 30-60 ms in a venv of 150 packages,
plus importing importlib.metadata and the email package it parses METADATA
with. That is a third of a small ``qlcapsule verify --key``. So the result is
cached in a small JSON file and reused while nothing could have changed it:

- the cache is keyed by the interpreter and ``sys.path``;
- it records the modification time of every ``sys.path`` entry. Installing,
  upgrading or removing a distribution adds or removes a ``*.dist-info``
  directory in one of them, which changes that directory's mtime, and the
  cache is rebuilt;
- a directory modified in the last two seconds makes the scan's result
  uncacheable (a change within the same timestamp tick would go unseen, the
  racy-git problem), so a fresh install is never hidden.

Editing an installed ``entry_points.txt`` by hand, in place, is not noticed;
set ``QLCAPSULE_NO_CACHE=1`` (or delete the cache directory) after doing that.

The cache lives in ``$QLCAPSULE_CACHE_DIR``, else ``$XDG_CACHE_HOME/qlcapsule``,
else ``~/.cache/qlcapsule``. A cache that cannot be read or written is
ignored: the scan is the truth, the cache only a shortcut.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from . import __version__

ENV_DIR = "QLCAPSULE_CACHE_DIR"
ENV_OFF = "QLCAPSULE_NO_CACHE"
RACY_SECONDS = 2.0
_FORMAT = 1
_PATTERN = r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$"  # compiled when loading


class PluginEntry(NamedTuple):
    """An entry point with the distribution that declares it."""

    name: str
    value: str
    distribution: str | None
    version: str | None

    def load(self) -> Any:
        """Import the object the entry point names (what ``EntryPoint.load`` does)."""
        import importlib

        match = re.match(_PATTERN, self.value)
        if match is None:
            raise ValueError(f"malformed entry point value {self.value!r}")
        obj = importlib.import_module(match.group("module"))
        for attr in filter(None, (match.group("attr") or "").split(".")):
            obj = getattr(obj, attr)
        return obj


def cache_dir() -> Path | None:
    if os.environ.get(ENV_OFF, "").strip().lower() not in ("", "0", "false", "no"):
        return None
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qlcapsule"


def _stamp() -> list[list[Any]]:
    """(sys.path entry, mtime_ns or None) for every entry: what an install changes."""
    out: list[list[Any]] = []
    for entry in sys.path:
        try:
            mtime: int | None = os.stat(entry or ".").st_mtime_ns
        except OSError:
            mtime = None
        out.append([entry, mtime])
    return out


def _cache_file(group: str) -> Path | None:
    base = cache_dir()
    if base is None:
        return None
    paths = [os.path.abspath(p or ".") for p in sys.path]  # "" is the working directory
    key = json.dumps([_FORMAT, __version__, sys.executable, sys.version, group, paths])
    return base / f"entry-points-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _scan(group: str) -> list[PluginEntry]:
    from importlib.metadata import entry_points

    seen: dict[str, tuple[str | None, str | None]] = {}
    found: list[PluginEntry] = []
    for ep in entry_points(group=group):
        dist = getattr(ep, "dist", None)
        if dist is None:
            name, version = None, None
        else:
            # One METADATA parse per distribution (qlcapsule's carries the whole README).
            key = str(getattr(dist, "_path", "")) or repr(dist)
            if key not in seen:
                meta = dist.metadata
                seen[key] = (meta["Name"], meta["Version"])
            name, version = seen[key]
        found.append(PluginEntry(ep.name, ep.value, name, version))
    return found


def _read(file: Path, stamp: list[list[Any]]) -> list[PluginEntry] | None:
    try:
        data = json.loads(file.read_bytes())
        if data.get("stamp") != stamp:
            return None
        return [PluginEntry(*(e[k] for k in ("name", "value", "distribution", "version"))) for e in data["entries"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _write(file: Path, stamp: list[list[Any]], entries: list[PluginEntry]) -> None:
    newest = max((m for _, m in stamp if m is not None), default=0)
    if newest > (time.time() - RACY_SECONDS) * 1e9:
        return  # a directory changed just now: a change in the same tick would be missed
    _write_quietly(file, json.dumps({"stamp": stamp, "entries": [e._asdict() for e in entries]}))


def _write_quietly(file: Path, text: str) -> bool:
    """Replace ``file`` by ``text`` atomically; False (and nothing left behind) when it cannot.

    A cache is a shortcut: a directory that cannot be written is no error."""
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, file)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return False
    return True


def discover(group: str) -> list[PluginEntry]:
    """The entry points of ``group``, from the cache when it is still valid."""
    file = _cache_file(group)
    stamp = _stamp()
    if file is not None:
        cached = _read(file, stamp)
        if cached is not None:
            return cached
    entries = _scan(group)
    if file is not None:
        _write(file, stamp, entries)
    return entries


# -- parsed capsule.yaml ------------------------------------------------------------
#
# PyYAML costs ~25 ms to import (its reader compiles a large regex), more than
# parsing a capsule.yaml. The light read of a definition (capsule.py) is a pure
# function of the file's bytes, so its result is cached by content hash, as JSON.
# Results that JSON cannot carry exactly (dates, non-string keys) are not cached.

_DEF_DIR = "definitions"
_DEF_KEEP = 256  # files kept; the oldest half goes when there are more


def _code_stamp() -> str:
    """Size and mtime of the code that computes the cached result: a development checkout
    changes it without changing the version, and must not read results of older code."""
    try:
        st = os.stat(Path(__file__).with_name("capsule.py"))
    except OSError:
        return "?"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _definition_file(raw: bytes) -> Path | None:
    base = cache_dir()
    if base is None:
        return None
    salt = f"light-definition\0{_FORMAT}\0{__version__}\0{_code_stamp()}\0"
    key = hashlib.sha256(salt.encode() + raw).hexdigest()[:40]
    return base / _DEF_DIR / f"{key}.json"


_writes_suspended = 0
#: a parsed capsule.yaml larger than this as JSON is not cached (YAML aliases can expand a small file a lot)
_DEF_MAX = 256 << 10


class no_writes:  # noqa: N801 - used as ``with caches.no_writes():``
    """Within this block, caches are read but never written (``qlcapsule import`` of an unverified capsule)."""

    def __enter__(self) -> None:
        global _writes_suspended
        _writes_suspended += 1

    def __exit__(self, *exc: object) -> None:
        global _writes_suspended
        _writes_suspended -= 1


def cached_definition(raw: bytes, parse: Callable[[bytes], Any]) -> Any:
    """``parse(raw)``, from the cache when these bytes were parsed before (then remembered)."""
    file = _definition_file(raw)
    if file is None:
        return parse(raw)
    try:
        data = json.loads(file.read_bytes())
        if isinstance(data, dict) and "result" in data:
            return data["result"]
    except (OSError, ValueError):
        pass
    result = parse(raw)
    try:
        text = json.dumps({"result": result})
        if json.loads(text)["result"] != result:
            return result  # e.g. integer keys would come back as strings
    except (TypeError, ValueError):
        return result  # dates, binary: not JSON
    if _writes_suspended or len(text) > _DEF_MAX:
        return result
    if _write_quietly(file, text):
        try:
            _prune(file.parent)
        except OSError:
            pass
    return result


def _prune(folder: Path) -> None:
    entries = list(os.scandir(folder))
    if len(entries) <= _DEF_KEEP:
        return
    entries.sort(key=lambda e: e.stat().st_mtime_ns)
    for entry in entries[: len(entries) // 2]:
        try:
            os.unlink(entry.path)
        except OSError:
            pass
