"""Comparing, re-materialising and merging capsule versions (libgit2 via pygit2).

- ``diff_versions``: file list with line stats and unified patches.
- ``checkout_version``: write a version into a new directory and verify it
  (integrity, and signatures against the operator's keys when given). Only the
  files its capsule.lock lists are written, and a lock listing a path no capsule
  holds (``.git/``, ``__pycache__/``, ``*.pyc``: the built-in excludes) is refused.
- ``trusted_versions``: the check ``Store.resolve`` and ``latest_version`` use to
  skip stored versions whose capsule.sig does not verify against the operator's keys.
- ``merge_branch``: three-way merge of two branches of a capsule. capsule.lock
  and capsule.sig are left out of the merge (they describe one version, never
  a mix) and the result is re-sealed. A ``version:`` line changed on both sides
  resolves to the higher SemVer. Conflicts are written with markers into a work
  directory together with ``.qlcapsule/merge.json``; resolving, sealing and
  ``qlcapsule commit`` there records the merge with both parents.
- ``update_capsule`` (copier-update style): render the template at the recorded
  version and at the new one with the recorded answers, and merge
  (base = old render, ours = the directory as it is now, theirs = new render).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode

from ..errors import (
    ConflictError,
    DefinitionError,
    InputError,
    IntegrityError,
    PluginError,
    QlcapsuleError,
    StoreError,
    VerificationError,
)
from ..format import yamlsrc
from ..format.capsule import Capsule
from ..format.globs import GlobSet
from ..format.lock import Lock, atomic_write, parse_lock
from ..format.model import DEFAULT_EXCLUDE, DEFINITION_FILE, LOCK_FILE, SIG_FILE
from ..format.tree import check_relative, walk
from ..log import event, get_logger
from .commit import commit_tree
from .repo import (
    DEFAULT_BRANCH,
    MERGE_STATE,
    VERSION_LINE,
    Accept,
    Store,
    check_text,
    enable_fsync,
    ensure_capsule_exists,
    load_pygit2,
    merge_record_path,
    parse_trailers,
    printable,
    record_base,
    record_merge_state,
    semver_key,
)

log = get_logger("merge")
_SEALS = (LOCK_FILE, SIG_FILE)
#: where a conflicted merge puts the merged branch's side of each binary conflict (never sealed: .qlcapsule/ is excluded)
THEIRS_DIR = ".qlcapsule/theirs"

__all__ = ["diff_versions", "checkout_version", "trusted_versions", "merge_branch", "update_capsule"]


def _describe(commit: Any, rev: str) -> dict[str, Any]:
    info = parse_trailers(commit.message)
    return {
        "rev": rev,
        "commit": str(commit.id),
        "version": info.get("version"),
        "digest": info.get("digest", "").removeprefix("sha256:"),
    }


# -- diff ------------------------------------------------------------------------


def diff_versions(st: Store, name: str, rev1: str, rev2: str, *, patch: bool = True) -> dict[str, Any]:
    """Files changed between two versions, with +/- line counts and (optionally) the unified patch."""
    ensure_capsule_exists(st, name)
    a, b = st.resolve(name, rev1), st.resolve(name, rev2)
    diff = st.repo.diff(a.tree, b.tree)
    diff.find_similar()
    files = []
    for p in diff:
        delta = p.delta
        _, adds, dels = p.line_stats
        entry = {
            "path": delta.new_file.path,
            "status": _STATUS.get(delta.status_char(), delta.status_char()),
            "additions": adds,
            "deletions": dels,
            "binary": bool(delta.is_binary),
        }
        if delta.old_file.path != delta.new_file.path:
            entry["old_path"] = delta.old_file.path
        files.append(entry)
    stats = diff.stats
    out: dict[str, Any] = {
        "capsule": name,
        "from": _describe(a, rev1),
        "to": _describe(b, rev2),
        "files": files,
        "files_changed": stats.files_changed,
        "insertions": stats.insertions,
        "deletions": stats.deletions,
    }
    if patch:
        out["patch"] = diff.patch or ""
    return out


_STATUS = {"A": "added", "D": "deleted", "M": "modified", "R": "renamed", "C": "copied", "T": "type-changed"}


# -- checkout --------------------------------------------------------------------


def _tree_files(repo: Any, tree: Any, prefix: str = "") -> Iterable[tuple[str, Any, int]]:
    pygit2 = load_pygit2()
    for entry in tree:
        if "/" in entry.name:  # git never writes one; a crafted tree could alias another path with it
            raise StoreError(f"{prefix}{entry.name!r}: a tree entry name with '/' in a stored version; refusing it")
        path = prefix + entry.name
        if entry.filemode == pygit2.GIT_FILEMODE_TREE:
            yield from _tree_files(repo, repo[entry.id], path + "/")
        elif entry.filemode in (pygit2.GIT_FILEMODE_BLOB, pygit2.GIT_FILEMODE_BLOB_EXECUTABLE):
            yield check_relative(path, "tree entry"), entry.id, entry.filemode
        else:
            raise StoreError(f"{path}: a symlink or submodule in a stored version; refusing to write it")


def _locked_files(repo: Any, tree: Any, where: str) -> tuple[dict[str, tuple[Any, int]], Lock]:
    """The tree's files (path -> (blob id, mode)) once checked against the capsule.lock it holds.

    The lock is what a version promises: a tree entry it does not list (``.git/config``,
    ``hooks/x`` in a crafted commit) is never written, and is refused rather than skipped,
    as is a listed file the tree lacks.
    """
    files: dict[str, tuple[Any, int]] = {}
    for path, oid, mode in _tree_files(repo, tree):
        if path in files:
            raise IntegrityError(f"{where}: the stored tree holds {path!r} twice; refusing it")
        files[path] = (oid, mode)
    if LOCK_FILE not in files:
        raise IntegrityError(f"{where}: the stored tree has no {LOCK_FILE}; not a sealed capsule version")
    lock = parse_lock(repo[files[LOCK_FILE][0]].data, f"{where}: {LOCK_FILE}")
    listed = {e.path for e in lock.files}
    never = _never_sealed(listed)
    if never:
        raise IntegrityError(
            f"{where}: its {LOCK_FILE} lists {printable(never[0])!r}, which no capsule holds "
            f"(a built-in exclude: .git/, __pycache__/, *.pyc, .qlcapsule/, ...); refusing it"
        )
    extra = sorted(set(files) - listed - set(_SEALS))
    missing = sorted(listed - set(files))
    problems = [f"not in {LOCK_FILE}: {p}" for p in extra] + [
        f"listed in {LOCK_FILE} but missing: {p}" for p in missing
    ]
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IntegrityError(f"{where}: the stored tree does not match its {LOCK_FILE}: {problems[0]}{more}")
    return files, lock


def _never_sealed(paths: Iterable[str]) -> list[str]:
    """Paths ``seal`` would never have locked (the built-in excludes), sorted: only a crafted lock lists them."""
    globs = GlobSet(["**"], list(DEFAULT_EXCLUDE))
    return sorted(p for p in paths if not globs.wants(p))


def _write_tree_to(repo: Any, files: dict[str, tuple[Any, int]], dest: Path) -> int:
    pygit2 = load_pygit2()
    for path, (oid, mode) in files.items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(repo[oid].data)
        os.chmod(target, 0o755 if mode == pygit2.GIT_FILEMODE_BLOB_EXECUTABLE else 0o644)
    return len(files)


def _fresh_dir(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError(f"{dest}: already exists and is not empty; choose a new directory")


def _materialise(st: Store, name: str, commit: Any, where: str, dest: Path, check: Any) -> tuple[int, Any]:
    """Write ``commit``'s locked files into a temporary sibling of ``dest``, run ``check(tmp)`` on it,
    and rename it to ``dest`` (None: remove it afterwards). Nothing is left behind on failure."""
    files, _ = _locked_files(st.repo, commit.tree, where)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        n = _write_tree_to(st.repo, files, tmp)
        try:
            report = check(tmp)
        except QlcapsuleError as exc:  # name the version, not the temporary directory
            exc.args = (exc.message.replace(str(tmp), where),)
            raise
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return n, report


def _verifier(commit: Any, where: str, signature_options: dict[str, Any]) -> Any:
    """``verify_capsule`` (integrity, then signatures against the operator's keys) of a written version,
    plus the digest its commit message records."""
    from ..pipeline import verify_capsule  # noqa: PLC0415 -- start-up: the pipeline loads only when a version's signature is checked

    def check(root: Path) -> dict[str, Any]:
        # an old version is what was asked for: the store's newest is no rollback here
        report = verify_capsule(root, **signature_options, allow_rollback=True)
        recorded = parse_trailers(commit.message).get("digest", "").removeprefix("sha256:")
        if recorded and recorded != report["digest"]:
            raise IntegrityError(
                f"{where}: stored digest {printable(recorded[:12])} does not match the files ({report['digest'][:12]})"
            )
        return report

    return check


def _signature_options(keys: Iterable[str], hmac_key_envs: Iterable[str], trust: str | None) -> dict[str, Any]:
    return {"keys": list(keys), "hmac_key_envs": list(hmac_key_envs), "trust": trust}


def trusted_versions(
    st: Store, name: str, *, keys: Iterable[str] = (), hmac_key_envs: Iterable[str] = (), trust: str | None = None
) -> Accept | None:
    """The check a stored version must pass when the operator gave trusted keys (None when none were given):
    its files written to a temporary directory verify, signature included, against those keys."""
    options = _signature_options(keys, hmac_key_envs, trust)
    if not any(options.values()):
        return None
    from ..signing.signatures import load_hmac_env, load_public_key, load_trust_file  # noqa: PLC0415 -- start-up: signing loads only when versions are checked against keys

    # a missing or malformed key is the operator's bad input (exit 2), not a refused version
    for k in options["keys"]:
        load_public_key(k)
    for e in options["hmac_key_envs"]:
        load_hmac_env(e)
    if trust:
        load_trust_file(trust)
    seen: dict[str, str | None] = {}

    def accept(commit: Any) -> str | None:
        cid = str(commit.id)
        if cid not in seen:
            where = f"{name} ({cid[:12]})"
            with tempfile.TemporaryDirectory(prefix="qlcapsule-candidate-") as scratch:
                try:
                    _materialise(st, name, commit, where, Path(scratch) / "v", _verifier(commit, where, options))
                    seen[cid] = None
                except (IntegrityError, VerificationError, StoreError) as exc:
                    seen[cid] = str(exc)
        return seen[cid]

    return accept


def checkout_version(
    st: Store,
    name: str,
    rev: str,
    dest: Path,
    *,
    branch: str | None = None,
    keys: Iterable[str] = (),
    hmac_key_envs: Iterable[str] = (),
    trust: str | None = None,
) -> dict[str, Any]:
    """Write version ``rev`` of ``name`` into the new directory ``dest`` and verify it.

    ``rev`` resolves through the capsule's own namespace (``Store.resolve``; ``branch`` names
    another branch to find a version on). Only the files the version's capsule.lock lists are
    written (with capsule.yaml, capsule.lock and capsule.sig); a tree holding anything else,
    lacking a listed file, or a lock listing a path no capsule holds, is refused before a byte
    is written. The files land in a temporary sibling first and are renamed into place only
    after ``verify_capsule`` passed (integrity; signatures against ``keys``/``hmac_key_envs``/
    ``trust`` when given), so a failure never leaves a half-written ``dest``.
    """
    ensure_capsule_exists(st, name)
    options = _signature_options(keys, hmac_key_envs, trust)
    accept = trusted_versions(st, name, **options)
    commit = st.resolve(name, rev, branch=branch, accept=accept)
    where = f"{name}@{rev} ({str(commit.id)[:12]})"
    dest = Path(dest)
    _fresh_dir(dest)
    n, report = _materialise(st, name, commit, where, dest, _verifier(commit, where, options))
    record_base(st, dest.resolve(), name, branch, commit.id)  # what 'commit' checks for a stale base
    event(log, "store.checkout", capsule=name, rev=rev, commit=str(commit.id), dest=str(dest))
    return {
        **_describe(commit, rev),
        "capsule": name,
        "directory": str(dest),
        "files": n,
        "verified": True,
        "signature": report["signature"],
    }


# -- three-way merge of trees -----------------------------------------------------


def _without_seals(repo: Any, tree: Any) -> Any:
    tb = repo.TreeBuilder(tree)
    for name in _SEALS:
        if tb.get(name) is not None:
            tb.remove(name)
    return repo[tb.write()]


def _entry(repo: Any, path: str, data: bytes, mode: int) -> Any:
    pygit2 = load_pygit2()
    return pygit2.IndexEntry(path, repo.create_blob(data), mode)


def _resolve_version_lines(repo: Any, index: Any) -> None:
    """capsule.yaml changed its ``version:`` on both sides: merge the rest, keep the higher version."""
    if index.conflicts is None:
        return
    try:
        anc, ours, theirs = index.conflicts[DEFINITION_FILE]
    except KeyError:
        return
    if anc is None or ours is None or theirs is None:
        return
    texts = [repo[e.id].data for e in (anc, ours, theirs)]
    if not all(_text(t) for t in texts):  # left to the conflict report (a binary conflict)
        return
    found = [VERSION_LINE.search(t) for t in texts]
    if not all(found):
        return
    versions = [m.group(1).decode() for m in found]  # type: ignore[union-attr]
    try:
        winner = max(versions[1:], key=semver_key)
    except InputError:  # a side's version is not SemVer: left to the conflict report
        return
    line = f"version: {winner}".encode()
    same = [VERSION_LINE.sub(line, t, count=1) for t in texts]
    entries = [_entry(repo, DEFINITION_FILE, data, e.mode) for data, e in zip(same, (anc, ours, theirs), strict=True)]
    result = _merge_file(repo, *entries)
    if not result.automergeable:
        return
    del index.conflicts[DEFINITION_FILE]
    index.add(_entry(repo, DEFINITION_FILE, result.contents.encode("utf-8"), ours.mode))


def _merge_file(repo: Any, anc: Any, ours: Any, theirs: Any) -> Any:
    """merge_file_from_index returning a MergeFileResult on every pygit2 we support.

    pygit2 < 1.19 returns a plain string unless asked with use_deprecated=False
    (and 1.18 is the newest release for Python 3.10).
    """
    try:
        return repo.merge_file_from_index(anc, ours, theirs, use_deprecated=False)
    except TypeError:  # a pygit2 that no longer takes the argument
        return repo.merge_file_from_index(anc, ours, theirs)


def _text(data: bytes) -> bool:
    """Can libgit2's line merge handle it (and pygit2 hand the result back as str)?"""
    if b"\0" in data[:8000]:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _label_markers(text: bytes, ours: Any, theirs: Any, labels: tuple[str, str]) -> bytes:
    """libgit2 labels the markers with the file's path; git labels them with the sides (here their versions)."""
    for marker, entry, label in ((b"<<<<<<< ", ours, labels[0]), (b">>>>>>> ", theirs, labels[1])):
        line = re.compile(b"^" + re.escape(marker + entry.path.encode("utf-8")) + b"$", re.M)
        new = marker + label.encode("utf-8")
        text = line.sub(new.replace(b"\\", b"\\\\"), text)
    return text


@dataclass
class _Merged:
    """A three-way merge of trees: what to write, what conflicted (and how), the other side of binary conflicts."""

    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    #: conflicted path -> what happened there, in words
    kinds: dict[str, str] = field(default_factory=dict)
    #: path -> theirs' bytes and mode, for a binary conflict where ours was kept
    theirs: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    @property
    def conflicts(self) -> list[str]:
        return sorted(self.kinds)


def _add_conflict(
    repo: Any, out: _Merged, anc: Any, o: Any, t: Any, labels: tuple[str, str], markers: tuple[str, str]
) -> None:
    ours_l, theirs_l = labels
    if o is not None and t is not None and o.path == t.path:
        path = check_relative(o.path, "merge")
        data = [repo[e.id].data for e in (o, t)]
        if all(_text(d) for d in data) and (anc is None or _text(repo[anc.id].data)):
            merged = _merge_file(repo, anc, o, t).contents.encode("utf-8", "surrogateescape")
            out.files[path] = (_label_markers(merged, o, t, markers), o.mode)
            out.kinds[path] = "content"
            return
        out.files[path] = (data[0], o.mode)
        out.theirs[path] = (data[1], t.mode)
        out.kinds[path] = f"binary: {ours_l}'s side kept"
        return
    for entry, side, other in ((o, ours_l, theirs_l), (t, theirs_l, ours_l)):
        if entry is None:
            continue
        path = check_relative(entry.path, "merge")
        out.files[path] = (repo[entry.id].data, entry.mode)
        if anc is not None and anc.path == entry.path:
            out.kinds[path] = f"changed on {side}, deleted or renamed on {other}"
        else:
            out.kinds.setdefault(path, f"added or renamed on {side}; clashes with {other}")
    if anc is not None and o is None and t is None:  # libgit2's record of a rename/rename or rename/delete
        out.kinds[check_relative(anc.path, "merge")] = f"deleted or renamed on both {ours_l} and {theirs_l}"


def _parents(path: str) -> Iterable[str]:
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def _file_dir_clashes(out: _Merged, ours_tree: Any, labels: tuple[str, str]) -> None:
    """A path that is a file on one side and a directory on the other: keep the directory, move the file to
    ``PATH~<its side>`` (as git does), and list PATH as conflicted; writing both would fail half-way."""
    dirs = {d for path in out.files for d in _parents(path)}
    for path in sorted(dirs & set(out.files)):
        try:
            side = labels[0] if ours_tree[path].type_str == "blob" else labels[1]
        except KeyError:
            side = labels[1]
        moved = f"{path}~{side}"
        while moved in out.files or moved in dirs:
            moved += "~"
        out.files[moved] = out.files.pop(path)
        if path in out.theirs:
            out.theirs[moved] = out.theirs.pop(path)
        other = labels[1] if side == labels[0] else labels[0]
        out.kinds.pop(path, None)
        out.kinds[path] = f"a file on {side} (written as {moved.rsplit('/', 1)[-1]}), a directory on {other}"


def _merge_trees(
    repo: Any,
    base: Any,
    ours: Any,
    theirs: Any,
    labels: tuple[str, str] = ("ours", "theirs"),
    markers: tuple[str, str] | None = None,
) -> _Merged:
    """The merge result (path -> (content, mode)) and its conflicts, written with markers or named.

    ``labels`` name the two sides in the description of each conflict, ``markers`` (default:
    ``labels``) after ``<<<<<<<`` and ``>>>>>>>``.
    """
    index = repo.merge_trees(base, ours, theirs)
    _resolve_version_lines(repo, index)
    out = _Merged()
    conflicted: set[str] = set()
    if index.conflicts is not None:
        for anc, o, t in index.conflicts:
            conflicted.update(e.path for e in (anc, o, t) if e is not None)
            _add_conflict(repo, out, anc, o, t, labels, markers or labels)
    for entry in index:  # iterating the index also yields the conflict stages: those are handled above
        if entry.path not in conflicted:
            out.files[check_relative(entry.path, "merge")] = (repo[entry.id].data, entry.mode)
    _file_dir_clashes(out, ours, labels)
    return out


def _write_files(dest: Path, files: dict[str, tuple[bytes, int]]) -> None:
    for path, (data, mode) in files.items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data, mode=0o755 if mode & 0o111 else 0o644)


def _write_workdir(dest: Path, files: dict[str, tuple[bytes, int]], state: dict[str, Any]) -> None:
    """The conflicted merge in ``dest``, all or nothing: written to a sibling, then renamed into place."""
    _fresh_dir(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        _write_files(tmp, files)
        (tmp / ".qlcapsule").mkdir(exist_ok=True)
        atomic_write(tmp / MERGE_STATE, (json.dumps(state, indent=2) + "\n").encode())
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _side(repo: Any, name: str, commit_id: Any, branch: str) -> str:
    """One side of a merge as git would name it, by version: ``name@1.2.0 (main)``."""
    version = parse_trailers(repo[commit_id].message).get("version")
    return printable(f"{name}@{version} ({branch})" if version else f"{branch} ({str(commit_id)[:12]})")


def merge_branch(
    st: Store,
    name: str,
    branch: str,
    *,
    into: str = DEFAULT_BRANCH,
    workdir: Path | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """Merge ``branch`` into ``into``: fast-forward, clean merge commit, or ConflictError (exit 1).

    Conflict markers and the merge commit's message name both sides by version and branch
    (``<<<<<<< orders@1.2.0 (main)``, ``Merge orders@1.3.0 (feature) into orders@1.2.0 (main)``);
    ``message`` is added below that line.
    """
    enable_fsync()
    ensure_capsule_exists(st, name)
    if message is not None:
        check_text(message, "-m/--message")
    repo = st.repo
    ours_id, theirs_id = st.head(name, into), st.head(name, branch)
    for b, h in ((into, ours_id), (branch, theirs_id)):
        if h is None:
            raise StoreError(f"{name}: no branch {b!r} (branches: {', '.join(st.branches(name)) or 'none'})")
    base_id = repo.merge_base(ours_id, theirs_id)  # type: ignore[arg-type]
    result: dict[str, Any] = {
        "capsule": name,
        "into": into,
        "branch": branch,
        "ours": str(ours_id),
        "theirs": str(theirs_id),
    }
    for c in (base_id, ours_id, theirs_id):  # a crafted commit's extra entries (.git/config) are never merged in
        if c is not None:
            _locked_files(repo, repo[c].tree, f"{name}: commit {str(c)[:12]}")
    if base_id == theirs_id:
        return {**result, "status": "up-to-date", "commit": str(ours_id), "conflicts": []}
    if base_id == ours_id:
        with st.lock(name):
            if not st.cas_ref(
                st.head_ref(name, into), theirs_id, ours_id, f"qlcapsule merge: fast-forward to {branch}"
            ):
                raise StoreError(f"{name}/{into} moved during the merge; run it again")
        return {**result, "status": "fast-forward", "commit": str(theirs_id), "conflicts": []}
    trees = [
        _without_seals(repo, repo[c].tree) if c is not None else repo[repo.TreeBuilder().write()]
        for c in (base_id, ours_id, theirs_id)
    ]
    sides = (_side(repo, name, ours_id, into), _side(repo, name, theirs_id, branch))
    merged = _merge_trees(repo, trees[0], trees[1], trees[2], labels=(into, branch), markers=sides)
    files, conflicts = merged.files, merged.conflicts
    for path in merged.theirs:
        merged.kinds[path] += f"; {branch}'s is in {THEIRS_DIR}/{path}"
    state = {
        "capsule": name,
        "branch": into,
        "ours": str(ours_id),
        "theirs": str(theirs_id),
        "from": branch,
        # the merge commit's message, naming both parents (the conflict's commit uses it too)
        "message": f"Merge {sides[1]} into {sides[0]}"
        + (f"\n\n{message.strip()}" if message and message.strip() else ""),
        # what 'commit' checks for markers left: a path that is now a directory (file/directory clash) has none
        "conflicts": [p for p in conflicts if p not in {d for f in files for d in _parents(f)}],
        "kinds": {p: merged.kinds[p] for p in conflicts},
    }
    if conflicts:
        dest = Path(workdir) if workdir is not None else Path.cwd() / f"{name}-merge-{branch}"
        record_merge_state(st, state)  # what makes 'commit' believe the work dir's merge.json
        _write_workdir(dest, {**files, **{f"{THEIRS_DIR}/{p}": f for p, f in merged.theirs.items()}}, state)
        err = ConflictError(
            f"{name}: merging {branch} into {into} left {len(conflicts)} conflict(s) in {dest}: {', '.join(conflicts)}"
            f" — resolve them, then 'qlcapsule seal {dest}' and 'qlcapsule commit {dest}'",
            conflicts,
        )
        err.workdir = str(dest)  # type: ignore[attr-defined]
        err.result = {  # type: ignore[attr-defined]
            **result,
            "status": "conflict",
            "workdir": str(dest),
            "conflicts": conflicts,
            "kinds": state["kinds"],
        }
        raise err
    tmp = Path(tempfile.mkdtemp(prefix=f"qlcapsule-merge-{name}-"))
    try:
        _write_files(tmp, files)
        (tmp / ".qlcapsule").mkdir(exist_ok=True)
        atomic_write(tmp / MERGE_STATE, json.dumps(state).encode())
        record_merge_state(st, state)  # what gives the commit its two parents and its message
        Capsule.load(tmp).seal()
        done = commit_tree(  # the message comes with the merge state
            tmp, message=None, store=st.git_dir, branch=into, rehash=True, stat_cache=False, track_base=False
        )
    finally:
        merge_record_path(st, state).unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    event(log, "store.merge", capsule=name, branch=branch, into=into, commit=done.commit)
    return {
        **result,
        "status": "merged",
        "commit": done.commit,
        "version": done.version,
        "digest": done.digest,
        "conflicts": [],
    }


# -- template update ------------------------------------------------------------------


def _generator_for(template: str, source: str) -> Any:
    from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only for update (a generator)

    reg = registry()
    try:
        return reg.get("generator", template)()
    except (PluginError, KeyError):
        pass
    for cls in reg.all("generator"):
        gen: Any = cls()
        try:
            if gen.handles(source):
                return gen
        except NotImplementedError:
            continue
    raise PluginError(
        f"capsule.yaml: generator.template: no generator plugin named {template!r} or handling {source!r} (see 'qlcapsule plugins')"
    )


def _snapshot(repo: Any, root: Path, capsule: Capsule | None) -> Any:
    """A tree of the files under ``root`` (the capsule's globs; seals left out)."""
    pygit2 = load_pygit2()
    globs = capsule.globs() if capsule is not None else GlobSet(["**"], list(DEFAULT_EXCLUDE))
    index = pygit2.Index()
    for f in walk(root, globs):
        if f.path in _SEALS:
            continue
        oid = repo.create_blob_fromdisk(str(root / f.path))
        index.add(
            pygit2.IndexEntry(
                f.path, oid, pygit2.GIT_FILEMODE_BLOB_EXECUTABLE if f.mode == "755" else pygit2.GIT_FILEMODE_BLOB
            )
        )
    return repo[index.write_tree(repo)]


_RECORD_KEYS = ("template", "version", "commit", "source")


def _yaml_scalar(value: Any) -> str:
    """``value`` as a one-line YAML scalar (plain when safe, else quoted)."""
    for style in (None, '"'):
        text = yaml.safe_dump(value, default_style=style, default_flow_style=True, allow_unicode=True, width=10**9)
        text = text.removesuffix("\n").removesuffix("\n...").rstrip("\n")
        if "\n" not in text:
            return text
    raise DefinitionError(f"cannot write {value!r} as one YAML line")  # unreachable: '"' style escapes newlines


def _edit_generator_text(text: str, current: dict[str, Any], wanted: dict[str, Any]) -> str | None:  # noqa: C901 - one branch per YAML shape of the generator block
    """``text`` with only the changed ``generator.<key>`` scalars rewritten in place (comments, order and layout
    kept); None when the block is not a plain block mapping of scalars this can edit."""
    try:
        doc = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(doc, MappingNode):
        return None
    block = next((v for k, v in doc.value if isinstance(k, ScalarNode) and k.value == "generator"), None)
    if not isinstance(block, MappingNode) or block.flow_style or not block.value:
        return None
    entries = {k.value: (k, v) for k, v in block.value if isinstance(k, ScalarNode)}
    indent = " " * block.value[0][0].start_mark.column

    def line_end(index: int) -> int:
        end = text.find("\n", index)
        return len(text) if end < 0 else end + 1

    edits: list[tuple[int, int, str]] = []
    added: list[str] = []
    for key in _RECORD_KEYS:
        if current.get(key) == wanted.get(key) and (key in current) == (key in wanted):
            continue
        if key not in entries:
            if key in wanted:
                added.append(f"{indent}{key}: {_yaml_scalar(wanted[key])}\n")
            continue
        k, v = entries[key]
        if not isinstance(v, ScalarNode):
            return None
        if key in wanted:
            edits.append((v.start_mark.index, v.end_mark.index, _yaml_scalar(wanted[key])))
        else:  # no null: the line goes
            start = text.rfind("\n", 0, k.start_mark.index) + 1
            if text[start : k.start_mark.index].strip():
                return None
            edits.append((start, line_end(v.end_mark.index), ""))
    if added:
        scalars = [v for name, (_, v) in entries.items() if name in _RECORD_KEYS and isinstance(v, ScalarNode)]
        if not scalars:
            return None
        at = line_end(max(v.end_mark.index for v in scalars))
        if at == len(text) and not text.endswith("\n"):
            added[0] = "\n" + added[0]
        edits.append((at, at, "".join(added)))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _set_generator_record(root: Path, record: dict[str, Any]) -> None:
    """Make capsule.yaml's ``generator`` match the new render when the merge did not carry it.

    Only the changed values are rewritten, in the text, so comments and layout stay; a value the new
    render does not have (a local template has no commit) is removed, never written as null.
    """
    path = root / DEFINITION_FILE
    text = path.read_text("utf-8")
    data = yamlsrc.safe_load(text, str(path)) or {}
    if not isinstance(data, dict):
        raise DefinitionError(f"{path}: expected a mapping")
    current = data.get("generator") or {}
    if not isinstance(current, dict):
        raise DefinitionError(f"{path}: generator: expected a mapping")
    wanted = {k: v for k, v in current.items() if not (k in _RECORD_KEYS and v is None)}
    for key in _RECORD_KEYS:
        if record.get(key) is not None:
            wanted[key] = record[key]
        elif key in record:
            wanted.pop(key, None)
    if wanted == current:
        return
    new_text = _edit_generator_text(text, current, wanted)
    if new_text is None or yamlsrc.safe_load(new_text, str(path)) != {**data, "generator": wanted}:
        new_text = yaml.safe_dump({**data, "generator": wanted}, sort_keys=False, allow_unicode=True)
    atomic_write(path, new_text.encode("utf-8"))


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def update_capsule(root: Path, *, to: str | None = None) -> dict[str, Any]:
    """Re-generate ``root`` from a newer template version and merge it with the local edits.

    Needs neither a clean git checkout nor a tagged template: the base is the
    recorded template version (or commit) rendered again with the recorded
    answers. A clean update re-seals; conflicts raise ConflictError (exit 1)
    after writing marker files in place.
    """
    pygit2 = load_pygit2()
    root = Path(root)
    capsule = Capsule.load(root)
    info = capsule.definition.generator
    if info is None:
        raise InputError(
            f"{root / DEFINITION_FILE}: no 'generator' section; this capsule was not generated from a template"
        )
    old_rev = info.version or info.commit
    if old_rev is None:
        raise InputError(
            f"{root / DEFINITION_FILE}: generator: neither 'version' nor 'commit' is recorded, so the base cannot be rendered"
        )
    source = info.source or info.template
    gen = _generator_for(info.template, source)
    answers = dict(info.answers)
    if to is None:  # default: the generator's newest (a git template's highest SemVer tag), not the pinned @rev
        newest = getattr(gen, "newest", None)
        to = newest(source) if callable(newest) else None
    folder = root.resolve().name  # templates see it as _folder_name: render base and new under the real name
    with tempfile.TemporaryDirectory(prefix="qlcapsule-update-") as tmpname:
        tmp = Path(tmpname)
        base_dir, new_dir = tmp / "base" / folder, tmp / "new" / folder
        try:
            gen.generate(source, base_dir, answers, version=old_rev)
        except InputError:
            # A version is a label the template repository need not spell as a tag
            # (v1 for 1.0.0, say); the recorded commit names the base exactly.
            if not info.commit or info.commit == old_rev:
                raise
            shutil.rmtree(base_dir, ignore_errors=True)
            gen.generate(source, base_dir, answers, version=info.commit)
        record = gen.generate(source, new_dir, answers, version=to)
        new_rev = record.version or record.commit
        result: dict[str, Any] = {
            "capsule": capsule.name,
            "directory": str(root),
            "template": info.template,
            "from": old_rev,
            "to": new_rev,
        }
        if new_rev == old_rev or (record.commit and record.commit == info.commit):
            return {**result, "status": "up-to-date", "changed": [], "conflicts": []}
        repo = pygit2.init_repository(str(tmp / "repo.git"), bare=True)
        base = _snapshot(repo, base_dir, None)
        new = _snapshot(repo, new_dir, None)
        ours = _snapshot(repo, root, capsule)
        merged = _merge_trees(repo, base, ours, new, labels=("local", "template"))
        files, conflicts = merged.files, merged.conflicts
        current = {p for p, _, _ in _tree_files(repo, ours)}
        changed = sorted(p for p, (data, _) in files.items() if p not in current or _read(root / p) != data)
        removed = sorted(p for p in current if p not in files)
        for p in removed:  # first: a file the merge moved aside (file/directory clash) makes room for the directory
            (root / p).unlink(missing_ok=True)
        _write_files(root, {p: files[p] for p in changed})
        _write_files(root, {f"{THEIRS_DIR}/{p}": f for p, f in merged.theirs.items()})
    if DEFINITION_FILE not in conflicts:
        _set_generator_record(
            root,
            {
                "template": info.template,
                "version": record.version,
                "commit": record.commit,
                "source": record.source or info.source,
            },
        )
    result.update(changed=changed, removed=removed, conflicts=conflicts)
    if conflicts:
        err = ConflictError(
            f"{root}: updating {info.template} {old_rev} -> {new_rev} left {len(conflicts)} conflict(s): {', '.join(conflicts)}"
            f" — resolve the markers, then 'qlcapsule seal {root}'",
            conflicts,
        )
        err.result = {**result, "status": "conflict"}  # type: ignore[attr-defined]
        raise err
    sealed = Capsule.load(root).seal()
    event(log, "store.update", capsule=capsule.name, template=info.template, old=old_rev, new=new_rev)
    return {**result, "status": "updated", "digest": sealed.digest, "version": sealed.lock.version}
