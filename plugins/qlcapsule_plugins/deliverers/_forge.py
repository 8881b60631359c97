"""Shared helpers of the forge deliverers (github, gitlab, git): git object ids, option checks, HTTP sessions.

The capsule is pushed as a git tree whose ids are computed here, locally, the way
git computes them; after a push the deliverer compares the ids the server reports
with these, so a commit only counts when the server holds exactly the capsule's bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlcapsule import Capsule, PluginError, guard_redirects

__all__ = [
    "TreeFile",
    "blob_id",
    "capsule_files",
    "tree_id",
    "check_ref_name",
    "check_repo_path",
    "prerelease",
    "guarded_session",
    "guard_pygithub",
]

_BAD_REF = re.compile(r"(\.\.|[\x00-\x20~^:?*\[\\\x7f]|@\{|//|/\.|\.lock(/|$))")


@dataclass(frozen=True)
class TreeFile:
    """One file of the tree to push: repository path, git mode, git blob id and where the bytes are."""

    path: str
    mode: str  # "100644" or "100755"
    blob: str
    source: Path
    size: int


def blob_id(data: bytes) -> str:
    """The git blob id (SHA-1 of ``blob <size>\\0<data>``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def capsule_files(capsule: Capsule, prefix: str = "") -> list[TreeFile]:
    """Every file of the capsule's payload (locked files, capsule.lock, capsule.sig) under ``prefix``."""
    out = []
    for rel, abspath, mode in capsule.payload():
        data = abspath.read_bytes()
        path = f"{prefix}/{rel}" if prefix else rel
        out.append(TreeFile(path, "100755" if mode == "755" else "100644", blob_id(data), abspath, len(data)))
    return out


def tree_id(files: dict[str, tuple[str, str]]) -> str:
    """The git tree id of ``path -> (mode, blob id)``, building the sub-trees as git would."""
    groups: dict[str, dict[str, tuple[str, str]]] = {}
    entries: dict[str, tuple[str, str]] = {}
    for path, (mode, sha) in files.items():
        head, sep, rest = path.partition("/")
        if sep:
            groups.setdefault(head, {})[rest] = (mode, sha)
        else:
            entries[head] = (mode, sha)
    for name, sub in groups.items():
        entries[name] = ("40000", tree_id(sub))

    def key(item: tuple[str, tuple[str, str]]) -> bytes:
        name, (mode, _) = item
        return name.encode() + (b"/" if mode == "40000" else b"")

    raw = b"".join(
        f"{mode.lstrip('0') or '0'} {name}".encode() + b"\0" + bytes.fromhex(sha)
        for name, (mode, sha) in sorted(entries.items(), key=key)
    )
    return hashlib.sha1(b"tree %d\0" % len(raw) + raw).hexdigest()


def check_ref_name(value: str) -> str:
    """Validate a branch or tag name by git's ``check-ref-format`` rules (placeholders allowed)."""
    probe = value.replace("{name}", "n").replace("{version}", "1.0.0")
    if not probe or probe.startswith(("/", "-", ".")) or probe.endswith(("/", ".")) or _BAD_REF.search(probe):
        raise ValueError(f"{value!r} is not a valid git branch or tag name")
    return value


def check_repo_path(value: str) -> str:
    """A directory inside the repository: relative, no '..', no empty segments ('' = the root)."""
    v = value.strip("/")
    if v and any(part in ("", ".", "..") for part in v.split("/")):
        raise ValueError(f"{value!r} must be a relative directory without '.' or '..' segments")
    if "\\" in v or "\0" in v:
        raise ValueError(f"{value!r} must use '/' as separator")
    return v


def prerelease(version: str) -> bool:
    """True for a SemVer pre-release (``1.0.0-rc.1``)."""
    return "-" in version.split("+", 1)[0]


def guarded_session(what: str) -> Any:
    """A ``requests.Session`` whose redirects follow the one rule (:func:`qlcapsule.resilience.guard_redirects`)."""
    import requests  # noqa: PLC0415 -- extra: requests (not a core dependency: it comes with the s3, gcs, github and gitlab extras)

    return guard_redirects(requests.Session(), what=what)


def guard_pygithub(gh: Any, what: str = "github") -> Any:
    """Make every connection of a PyGithub client use :func:`guard_redirects`; returns ``gh``.

    PyGithub builds its own ``requests`` sessions inside its connection classes and
    offers no session argument, and its own redirect handling keeps the token on
    another port of the same host name. Its only public switch,
    ``Requester.injectConnectionClasses``, is process-wide and turns off connection
    reuse, so the guarded classes are set on this client's requester alone. If a
    PyGithub release renames those attributes this fails closed, naming the version.
    """
    from importlib.metadata import version  # noqa: PLC0415 -- start-up: importlib.metadata loads only for a GitHub delivery

    from github.Requester import HTTPRequestsConnectionClass, HTTPSRequestsConnectionClass  # noqa: PLC0415 -- extra: github (pip install qlcapsule[github])

    class _Http(HTTPRequestsConnectionClass):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            guard_redirects(self.session, what=what)

    class _Https(HTTPSRequestsConnectionClass):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            guard_redirects(self.session, what=what)

    requester = gh.requester
    names = ("_Requester__connectionClass", "_Requester__httpConnectionClass", "_Requester__httpsConnectionClass")
    if not all(hasattr(requester, n) for n in names) or getattr(requester, "_Requester__connection", 1) is not None:
        raise PluginError(
            f"github: PyGithub {version('PyGithub')} changed its connection internals; "
            "cannot guard redirects, refusing to send the token"
        )
    https = requester.scheme == "https"
    requester._Requester__httpConnectionClass = _Http
    requester._Requester__httpsConnectionClass = _Https
    requester._Requester__connectionClass = _Https if https else _Http
    return gh
