"""Comparing, re-materialising and merging capsule versions (libgit2 via pygit2).

- ``diff_versions``: file list with line stats and unified patches.
- ``checkout_version``: write a version into a new directory and verify it.
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
from pathlib import Path
from typing import Any

from .capsule import Capsule
from .errors import ConflictError, InputError, PluginError, StoreError
from .lock import atomic_write
from .log import event, get_logger
from .model import DEFINITION_FILE, LOCK_FILE, SIG_FILE
from .store import (
    DEFAULT_BRANCH,
    MERGE_STATE,
    Store,
    _enable_fsync,
    _pygit2,
    ensure_capsule_exists,
    parse_trailers,
    semver_key,
)
from .storecommit import commit_tree
from .tree import check_relative, walk

log = get_logger("merge")
_VERSION_LINE = re.compile(rb"^version:[ \t]*['\"]?([^'\"\s#]+)['\"]?[ \t]*(#.*)?$", re.M)
_SEALS = (LOCK_FILE, SIG_FILE)

__all__ = ["diff_versions", "checkout_version", "merge_branch", "update_capsule"]


def _describe(commit: Any, rev: str) -> dict[str, Any]:
    info = parse_trailers(commit.message)
    return {"rev": rev, "commit": str(commit.id), "version": info.get("version"), "digest": info.get("digest", "").removeprefix("sha256:")}


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
    pygit2 = _pygit2()
    for entry in tree:
        path = prefix + entry.name
        if entry.filemode == pygit2.GIT_FILEMODE_TREE:
            yield from _tree_files(repo, repo[entry.id], path + "/")
        elif entry.filemode in (pygit2.GIT_FILEMODE_BLOB, pygit2.GIT_FILEMODE_BLOB_EXECUTABLE):
            yield check_relative(path, "tree entry"), entry.id, entry.filemode
        else:
            raise StoreError(f"{path}: a symlink or submodule in a stored version; refusing to write it")


def _write_tree_to(repo: Any, tree: Any, dest: Path, skip: Iterable[str] = ()) -> int:
    pygit2 = _pygit2()
    skipped = set(skip)
    n = 0
    for path, oid, mode in _tree_files(repo, tree):
        if path in skipped:
            continue
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(repo[oid].data)
        os.chmod(target, 0o755 if mode == pygit2.GIT_FILEMODE_BLOB_EXECUTABLE else 0o644)
        n += 1
    return n


def _fresh_dir(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError(f"{dest}: already exists and is not empty; choose a new directory")


def checkout_version(st: Store, name: str, rev: str, dest: Path) -> dict[str, Any]:
    """Write version ``rev`` of ``name`` into the new directory ``dest`` and verify it.

    The files land in a temporary sibling first and are renamed into place only
    after the integrity check, so a failure never leaves a half-written ``dest``.
    """
    ensure_capsule_exists(st, name)
    commit = st.resolve(name, rev)
    dest = Path(dest)
    _fresh_dir(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        n = _write_tree_to(st.repo, commit.tree, tmp)
        lock = Capsule.load(tmp).verify_integrity()
        recorded = parse_trailers(commit.message).get("digest", "").removeprefix("sha256:")
        if recorded and recorded != lock.digest:
            raise StoreError(f"{name}@{rev}: stored digest {recorded[:12]} does not match the files ({lock.digest[:12]})")
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    event(log, "store.checkout", capsule=name, rev=rev, commit=str(commit.id), dest=str(dest))
    return {**_describe(commit, rev), "capsule": name, "directory": str(dest), "files": n, "verified": True}


# -- three-way merge of trees -----------------------------------------------------


def _without_seals(repo: Any, tree: Any) -> Any:
    tb = repo.TreeBuilder(tree)
    for name in _SEALS:
        if tb.get(name) is not None:
            tb.remove(name)
    return repo[tb.write()]


def _entry(repo: Any, path: str, data: bytes, mode: int) -> Any:
    pygit2 = _pygit2()
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
    found = [_VERSION_LINE.search(t) for t in texts]
    if not all(found):
        return
    versions = [m.group(1).decode() for m in found]  # type: ignore[union-attr]
    winner = max(versions[1:], key=semver_key)
    line = f"version: {winner}".encode()
    same = [_VERSION_LINE.sub(line, t, count=1) for t in texts]
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


def _conflict_content(repo: Any, anc: Any, ours: Any, theirs: Any) -> bytes:
    """Marker text for a text conflict; ours for binary or delete/modify conflicts."""
    if ours is not None and theirs is not None:
        data = [repo[e.id].data for e in (ours, theirs)]
        if not any(b"\0" in d[:8000] for d in data):
            result = _merge_file(repo, anc, ours, theirs)
            return result.contents.encode("utf-8", "surrogateescape")
    keep = ours if ours is not None else theirs
    return repo[keep.id].data


def _merge_trees(repo: Any, base: Any, ours: Any, theirs: Any) -> tuple[dict[str, tuple[bytes, int]], list[str]]:
    """(path -> (content, mode)) of the merge result, and the conflicted paths (written with markers)."""
    index = repo.merge_trees(base, ours, theirs)
    _resolve_version_lines(repo, index)
    files: dict[str, tuple[bytes, int]] = {}
    conflicts: list[str] = []
    if index.conflicts is not None:
        for anc, o, t in index.conflicts:
            some = o or t or anc
            path = check_relative(some.path, "merge")
            files[path] = (_conflict_content(repo, anc, o, t), (o or t or anc).mode)
            conflicts.append(path)
    for entry in index:
        if entry.path not in files:
            files[check_relative(entry.path, "merge")] = (repo[entry.id].data, entry.mode)
    return files, sorted(set(conflicts))


def _write_files(dest: Path, files: dict[str, tuple[bytes, int]]) -> None:
    for path, (data, mode) in files.items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data, mode=0o755 if mode & 0o111 else 0o644)


def merge_branch(
    st: Store, name: str, branch: str, *, into: str = DEFAULT_BRANCH, workdir: Path | None = None, message: str | None = None
) -> dict[str, Any]:
    """Merge ``branch`` into ``into``: fast-forward, clean merge commit, or ConflictError (exit 1)."""
    _enable_fsync()
    ensure_capsule_exists(st, name)
    repo = st.repo
    ours_id, theirs_id = st.head(name, into), st.head(name, branch)
    for b, h in ((into, ours_id), (branch, theirs_id)):
        if h is None:
            raise StoreError(f"{name}: no branch {b!r} (branches: {', '.join(st.branches(name)) or 'none'})")
    base_id = repo.merge_base(ours_id, theirs_id)  # type: ignore[arg-type]
    result: dict[str, Any] = {"capsule": name, "into": into, "branch": branch, "ours": str(ours_id), "theirs": str(theirs_id)}
    if base_id == theirs_id:
        return {**result, "status": "up-to-date", "commit": str(ours_id), "conflicts": []}
    if base_id == ours_id:
        with st.lock(name):
            if not st.cas_ref(st.head_ref(name, into), theirs_id, ours_id, f"qlcapsule merge: fast-forward to {branch}"):
                raise StoreError(f"{name}/{into} moved during the merge; run it again")
        return {**result, "status": "fast-forward", "commit": str(theirs_id), "conflicts": []}
    trees = [_without_seals(repo, repo[c].tree) if c is not None else repo[repo.TreeBuilder().write()] for c in (base_id, ours_id, theirs_id)]
    files, conflicts = _merge_trees(repo, *trees)
    state = {"capsule": name, "branch": into, "ours": str(ours_id), "theirs": str(theirs_id), "from": branch, "conflicts": conflicts}
    if conflicts:
        dest = Path(workdir) if workdir is not None else Path.cwd() / f"{name}-merge-{branch}"
        _fresh_dir(dest)
        dest.mkdir(parents=True, exist_ok=True)
        _write_files(dest, files)
        (dest / ".qlcapsule").mkdir(exist_ok=True)
        atomic_write(dest / MERGE_STATE, (json.dumps(state, indent=2) + "\n").encode())
        err = ConflictError(
            f"{name}: merging {branch} into {into} left {len(conflicts)} conflict(s) in {dest}: {', '.join(conflicts)}"
            f" — resolve them, then 'qlcapsule seal {dest}' and 'qlcapsule commit {dest}'",
            conflicts,
        )
        err.workdir = str(dest)  # type: ignore[attr-defined]
        err.result = {**result, "status": "conflict", "workdir": str(dest), "conflicts": conflicts}  # type: ignore[attr-defined]
        raise err
    tmp = Path(tempfile.mkdtemp(prefix=f"qlcapsule-merge-{name}-"))
    try:
        _write_files(tmp, files)
        (tmp / ".qlcapsule").mkdir(exist_ok=True)
        atomic_write(tmp / MERGE_STATE, json.dumps(state).encode())
        Capsule.load(tmp).seal()
        text = message or f"Merge {branch} into {into}"
        done = commit_tree(tmp, message=text, store=st.git_dir, branch=into, rehash=True, stat_cache=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    event(log, "store.merge", capsule=name, branch=branch, into=into, commit=done.commit)
    return {**result, "status": "merged", "commit": done.commit, "version": done.version, "digest": done.digest, "conflicts": []}


# -- template update ------------------------------------------------------------------


def _generator_for(template: str, source: str) -> Any:
    from .plugins import registry

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
    raise PluginError(f"capsule.yaml: generator.template: no generator plugin named {template!r} or handling {source!r} (see 'qlcapsule plugins')")


def _snapshot(repo: Any, root: Path, capsule: Capsule | None) -> Any:
    """A tree of the files under ``root`` (the capsule's globs; seals left out)."""
    from .globs import GlobSet
    from .model import DEFAULT_EXCLUDE

    pygit2 = _pygit2()
    globs = capsule.globs() if capsule is not None else GlobSet(["**"], list(DEFAULT_EXCLUDE))
    index = pygit2.Index()
    for f in walk(root, globs):
        if f.path in _SEALS:
            continue
        oid = repo.create_blob_fromdisk(str(root / f.path))
        index.add(pygit2.IndexEntry(f.path, oid, pygit2.GIT_FILEMODE_BLOB_EXECUTABLE if f.mode == "755" else pygit2.GIT_FILEMODE_BLOB))
    return repo[index.write_tree(repo)]


def _set_generator_record(root: Path, record: dict[str, Any]) -> None:
    """Make capsule.yaml's ``generator`` match the new render when the merge did not carry it."""
    import yaml

    path = root / DEFINITION_FILE
    data = yaml.safe_load(path.read_text("utf-8")) or {}
    current = data.get("generator") or {}
    wanted = {**current, **{k: v for k, v in record.items() if k in ("template", "version", "commit", "source")}}
    if wanted == current:
        return
    data["generator"] = wanted
    atomic_write(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8"))


def update_capsule(root: Path, *, to: str | None = None) -> dict[str, Any]:
    """Re-generate ``root`` from a newer template version and merge it with the local edits.

    Needs neither a clean git checkout nor a tagged template: the base is the
    recorded template version (or commit) rendered again with the recorded
    answers. A clean update re-seals; conflicts raise ConflictError (exit 1)
    after writing marker files in place.
    """
    pygit2 = _pygit2()
    root = Path(root)
    capsule = Capsule.load(root)
    info = capsule.definition.generator
    if info is None:
        raise InputError(f"{root / DEFINITION_FILE}: no 'generator' section; this capsule was not generated from a template")
    old_rev = info.version or info.commit
    if old_rev is None:
        raise InputError(f"{root / DEFINITION_FILE}: generator: neither 'version' nor 'commit' is recorded, so the base cannot be rendered")
    source = info.source or info.template
    gen = _generator_for(info.template, source)
    answers = dict(info.answers)
    with tempfile.TemporaryDirectory(prefix="qlcapsule-update-") as tmpname:
        tmp = Path(tmpname)
        try:
            gen.generate(source, tmp / "base", answers, version=old_rev)
        except InputError:
            # A version is a label the template repository need not spell as a tag
            # (v1 for 1.0.0, say); the recorded commit names the base exactly.
            if not info.commit or info.commit == old_rev:
                raise
            shutil.rmtree(tmp / "base", ignore_errors=True)
            gen.generate(source, tmp / "base", answers, version=info.commit)
        record = gen.generate(source, tmp / "new", answers, version=to)
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
        base = _snapshot(repo, tmp / "base", None)
        new = _snapshot(repo, tmp / "new", None)
        ours = _snapshot(repo, root, capsule)
        files, conflicts = _merge_trees(repo, base, ours, new)
        current = {p for p, _, _ in _tree_files(repo, ours)}
        changed = sorted(p for p, (data, _) in files.items() if p not in current or (root / p).read_bytes() != data)
        removed = sorted(p for p in current if p not in files)
        _write_files(root, {p: files[p] for p in changed})
        for p in removed:
            (root / p).unlink(missing_ok=True)
    if DEFINITION_FILE not in conflicts:
        _set_generator_record(root, {"template": info.template, "version": record.version, "commit": record.commit, "source": record.source or info.source})
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
