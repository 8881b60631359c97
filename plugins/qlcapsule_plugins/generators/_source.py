"""Where a template comes from: a built-in name, a local directory, or a git URL@rev.

Every source is read into memory as ``{relative path: (bytes, mode)}`` so the
renderer never touches anything but the destination directory. Git sources are
cloned with pygit2 into a temporary directory that is removed before rendering
starts.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlcapsule import InputError, RemoteError, UnsafePathError

BUILTIN = Path(__file__).parent / "templates"
SPEC_FILE = "template.yaml"
_SCHEME = re.compile(r"^(?:git\+)?(?:https?|ssh|git|file)://", re.I)
_SCP = re.compile(r"^[\w.-]+@[\w.-]+:")
_SKIP = {".git", "__pycache__", ".DS_Store"}

Files = dict[str, tuple[bytes, int]]


@dataclass
class Loaded:
    files: Files
    source: str
    commit: str | None = None


def builtin_names() -> list[str]:
    return sorted(p.name for p in BUILTIN.iterdir() if (p / SPEC_FILE).is_file()) if BUILTIN.is_dir() else []


def is_git_url(source: str) -> bool:
    return bool(_SCHEME.match(source) or _SCP.match(source))


def split_rev(source: str) -> tuple[str, str | None]:
    """``url@rev`` -> (url, rev); the ``@`` must come after the host part."""
    url = source[4:] if source.lower().startswith("git+") else source
    if "://" in url:
        scheme, rest = url.split("://", 1)
        host_end = rest.find("/")
        path_start = len(scheme) + 3 + (host_end if host_end >= 0 else len(rest))
    else:  # scp-like user@host:path
        path_start = url.find(":") + 1
    at = url.rfind("@")
    if at >= path_start and at > 0:
        return url[:at], url[at + 1 :] or None
    return url, None


def read_dir(root: Path) -> Files:
    """Every regular file under ``root``; symlinks and special files are refused."""
    files: Files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP)
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                rel = (Path(dirpath) / d).relative_to(root).as_posix()
                raise UnsafePathError(f"template entry {rel}: is a symlink; templates hold regular files only")
        for name in sorted(filenames):
            if name in _SKIP:
                continue
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePathError(f"template file {rel}: is a symlink; templates hold regular files only")
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePathError(f"template file {rel}: is not a regular file")
            files[rel] = (full.read_bytes(), 0o755 if st.st_mode & 0o111 else 0o644)
    return files


def _tree_files(repo: Any, tree: Any, prefix: str = "") -> Files:
    import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only for a template in git

    files: Files = {}
    for entry in tree:
        path = f"{prefix}{entry.name}"
        if entry.name in _SKIP:
            continue
        if entry.filemode == pygit2.GIT_FILEMODE_TREE:
            files.update(_tree_files(repo, repo[entry.id], path + "/"))
        elif entry.filemode in (pygit2.GIT_FILEMODE_BLOB, pygit2.GIT_FILEMODE_BLOB_EXECUTABLE):
            mode = 0o755 if entry.filemode == pygit2.GIT_FILEMODE_BLOB_EXECUTABLE else 0o644
            files[path] = (repo[entry.id].data, mode)
        elif entry.filemode == pygit2.GIT_FILEMODE_LINK:
            raise UnsafePathError(f"template file {path}: is a symlink; templates hold regular files only")
    return files


def _resolve(repo: Any, rev: str) -> Any:
    import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only for a template in git

    candidates = [rev, f"origin/{rev}", f"refs/tags/{rev}"]
    if not rev.startswith("v"):
        candidates += [f"v{rev}", f"refs/tags/v{rev}"]
    for cand in candidates:
        try:
            return repo.revparse_single(cand).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            continue
    raise InputError(f"revision {rev!r} not found in the template repository")


def load_git(source: str, version: str | None) -> Loaded:
    import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only for a template in git

    url, rev = split_rev(source)
    rev = version or rev
    with tempfile.TemporaryDirectory(prefix="qlcapsule-template-") as tmp:
        try:
            repo = pygit2.clone_repository(url, os.path.join(tmp, "repo"), bare=True)
        except (pygit2.GitError, ValueError, KeyError) as exc:
            raise RemoteError(f"cannot clone template {url}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
        if rev:
            commit = _resolve(repo, rev)
        else:
            try:
                commit = repo.head.peel(pygit2.Commit)
            except pygit2.GitError:
                raise InputError(f"template repository {url} has no commits") from None
        files = _tree_files(repo, commit.tree)
        repo.free()
    return Loaded(files, f"{url}@{rev}" if rev else url, str(commit.id))


def load_local(path: Path, version: str | None) -> Loaded:
    """A template directory; with ``version`` (not the current one) read from its git history."""
    root = path.resolve()
    here = Loaded(read_dir(root), root.as_posix())
    current = spec_version(here.files)
    if version is None or version == current:
        return here
    import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only for a template in git

    found = pygit2.discover_repository(str(root))
    if not found:
        raise InputError(
            f"template {root}: version {version} requested, but the directory is at {current} and not in git"
        )
    repo = pygit2.Repository(found)
    workdir = Path(repo.workdir or root).resolve()
    commit = _resolve(repo, version)
    tree = commit.tree
    rel = root.relative_to(workdir).as_posix()
    if rel != ".":
        try:
            tree = repo[tree[rel].id]
        except KeyError:
            raise InputError(f"template {root}: not present at revision {version}") from None
    return Loaded(_tree_files(repo, tree), root.as_posix(), str(commit.id))


def spec_version(files: Files) -> str | None:
    from qlcapsule import yamlsrc  # noqa: PLC0415 -- start-up: yaml loads only when a template is read

    raw = files.get(SPEC_FILE)
    if raw is None:
        return None
    try:
        data = yamlsrc.safe_load(raw[0].decode("utf-8"), SPEC_FILE)
    except (InputError, UnicodeDecodeError):
        return None  # load_spec names the problem
    return str(data.get("version")) if isinstance(data, dict) and data.get("version") is not None else None


def newest_rev(source: str) -> str:
    """The newest revision of a git template: its highest SemVer tag (``v1.2.0`` or ``1.2.0``, pre-releases
    left out), else its default branch. ``qlcapsule update`` moves to this when no ``--to`` is given."""
    import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only for a template in git
    from packaging.version import InvalidVersion, Version  # noqa: PLC0415 -- start-up: packaging loads only to pick a template's newest tag

    url, _ = split_rev(source)
    with tempfile.TemporaryDirectory(prefix="qlcapsule-template-") as tmp:
        try:
            repo = pygit2.clone_repository(url, os.path.join(tmp, "repo"), bare=True)
        except (pygit2.GitError, ValueError, KeyError) as exc:
            raise RemoteError(f"cannot clone template {url}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
        try:
            best: tuple[Version, str] | None = None
            for ref in repo.references:
                if not ref.startswith("refs/tags/"):
                    continue
                tag = ref[len("refs/tags/") :]
                try:
                    v = Version(tag[1:] if tag[:1] in ("v", "V") else tag)
                except InvalidVersion:
                    continue
                if not v.is_prerelease and (best is None or v > best[0]):
                    best = (v, tag)
            if best is not None:
                return best[1]
            try:
                return str(repo.head.shorthand)
            except pygit2.GitError:
                raise InputError(f"template repository {url} has no commits") from None
        finally:
            repo.free()
