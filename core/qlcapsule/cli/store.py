"""The version store: commit, log, tag, branch, diff, checkout, merge, update.

pygit2 is imported inside the commands, never at module import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import ConflictError
from ._common import capsule_dir, emit, json_option, main, trust_options
from ._text import commit_text, signature_text

STORE_HELP = (
    "Bare git repository holding the versions (created on first commit). Default: $QLCAPSULE_STORE, "
    "else the git repository containing the capsule (or the current directory)."
)
store_option = click.option("--store", "store", metavar="PATH", envvar="QLCAPSULE_STORE", help=STORE_HELP)
name_argument = click.argument("name")


def _shown(text: Any) -> str:
    """Store data (authors, messages, branch and version names, paths) for a terminal: controls escaped."""
    from ..store.versions import printable  # noqa: PLC0415 -- start-up: the store (pygit2) loads only in the commands that use it, not for --help

    return printable(str(text))


def _open(store: str | None, start: str | None = None) -> Any:
    from ..store.versions import open_store  # noqa: PLC0415 -- start-up: the store (pygit2) loads only in the commands that use it, not for --help

    return open_store(start, store, create=False)


def _short(commit: str) -> str:
    return commit[:12]


@main.command()
@capsule_dir
@click.option("-m", "--message", help="Describe the change (kept in the commit message).")
@click.option("--branch", default="main", show_default=True, help="Store branch to commit to.")
@click.option("--rehash", is_flag=True, help="Hash every file again instead of trusting the stat cache.")
@click.option(
    "--force",
    is_flag=True,
    help="Commit even when DIRECTORY was checked out before the branch head and would undo its changes.",
)
@store_option
@json_option
def commit(
    directory: str, message: str | None, branch: str, rehash: bool, force: bool, store: str | None, as_json: bool
) -> None:
    """Record the sealed capsule in DIRECTORY as a new version.

    The version is a git commit under refs/capsules/NAME/heads/BRANCH whose
    tree is the capsule (with capsule.lock and capsule.sig) and whose parent is
    the previous version. Committing an unchanged capsule changes nothing.
    A directory checked out (or last committed) before the branch head moved,
    by a merge or another version, is refused when committing it would undo
    those changes: check out the head and redo the edits there, or merge;
    --force commits over them.

    \b
    Exit codes: 0 committed (or unchanged); 1 not sealed, or files differ from
    capsule.lock; 2 bad input, a stale directory, or a store problem.
    """
    from ..store.versions import commit_capsule  # noqa: PLC0415 -- start-up: the store (pygit2) loads only in the commands that use it, not for --help

    r = commit_capsule(Path(directory), message=message, store=store, branch=branch, rehash=rehash, force=force)
    emit(as_json, r.to_dict(), commit_text(r))


@main.command(name="log")
@name_argument
@click.option("--branch", default="main", show_default=True, help="Branch to list.")
@click.option("--all", "all_branches", is_flag=True, help="Versions of every branch.")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=1), help="Show at most this many versions.")
@store_option
@json_option
def log_cmd(name: str, branch: str, all_branches: bool, limit: int | None, store: str | None, as_json: bool) -> None:
    """List the versions of capsule NAME, newest first: version, digest, author, date, tags."""
    from ..store.versions import log_versions  # noqa: PLC0415 -- start-up: the store (pygit2) loads only in the commands that use it, not for --help

    st = _open(store)
    entries = log_versions(st, name, branch=None if all_branches else branch, limit=limit)

    def text() -> None:
        for e in entries:
            marks = [f"tag: {t}" for t in e["tags"]] + e["branches"]
            deco = f" ({', '.join(marks)})" if marks else ""
            click.echo(_shown(f"{_short(e['commit'])} {e['version']} sha256:{e['digest'][:16]}{deco}"))
            click.echo("    " + _shown(f"{e['author']}  {e['date']}"))
            if e["message"]:
                click.echo("    " + _shown(e["message"].splitlines()[0]))

    emit(as_json, {"capsule": name, "versions": entries}, text)


@main.command()
@name_argument
@click.argument("version")
@click.option("--rev", help="Commit, branch or tag to tag (default: the newest commit recording VERSION).")
@click.option("-m", "--message", help="Tag message.")
@trust_options(
    "Trusted public key file; a version whose capsule.sig does not verify against it is skipped. Repeatable."
)
@store_option
@json_option
def tag(
    name: str,
    version: str,
    rev: str | None,
    message: str | None,
    keys: tuple[str, ...],
    hmac_key_envs: tuple[str, ...],
    trust: str | None,
    store: str | None,
    as_json: bool,
) -> None:
    """Create the annotated tag VERSION for capsule NAME.

    Without --rev the commit is the newest on main recording VERSION (a version
    on another branch is tagged only with --rev BRANCH). With --key/--trust the
    commit must verify against those keys. A version tag never moves: tagging
    the same commit again is a no-op, tagging another commit is refused (exit 2).
    """
    from ..store.merge import trusted_versions  # noqa: PLC0415 -- start-up: the store (pygit2) loads only in the commands that use it, not for --help
    from ..store.versions import tag_version  # noqa: PLC0415 -- start-up: the store (pygit2) loads only in the commands that use it, not for --help

    st = _open(store)
    accept = trusted_versions(st, name, keys=keys, hmac_key_envs=hmac_key_envs, trust=trust)
    r = tag_version(st, name, version, rev=rev, message=message, accept=accept)
    verb = "tagged" if r["created"] else "already tagged"
    emit(as_json, r, f"{verb} {name}@{version} -> {_short(r['commit'])}")


@main.command()
@name_argument
@click.argument("branch", required=False)
@click.option("--from", "rev", help="Version, tag, branch or commit to start from (default: main).")
@store_option
@json_option
def branch(name: str, branch: str | None, rev: str | None, store: str | None, as_json: bool) -> None:
    """List the branches of capsule NAME, or create BRANCH (from --from, default main)."""
    from ..store.versions import create_branch, ensure_capsule_exists  # noqa: PLC0415 -- start-up: the store (pygit2) loads only in the commands that use it, not for --help

    st = _open(store)
    if branch is None:
        ensure_capsule_exists(st, name)
        heads = st.branches(name)
        emit(
            as_json,
            {"capsule": name, "branches": heads},
            "\n".join(_shown(f"{b} {_short(c)}") for b, c in heads.items()),
        )
        return
    r = create_branch(st, name, branch, rev=rev)
    emit(as_json, r, f"created branch {branch} of {name} at {_short(r['commit'])}")


@main.command()
@name_argument
@click.argument("rev1")
@click.argument("rev2")
@click.option("--stat", "stat_only", is_flag=True, help="Only the list of files with +/- line counts.")
@store_option
@json_option
def diff(name: str, rev1: str, rev2: str, stat_only: bool, store: str | None, as_json: bool) -> None:
    """Show what changed in capsule NAME between REV1 and REV2.

    A revision is a version (1.2.0), tag, branch (main, main~2) or commit id.
    """
    from ..store.merge import diff_versions  # noqa: PLC0415 -- start-up: the store (pygit2) loads only in the commands that use it, not for --help

    r = diff_versions(_open(store), name, rev1, rev2, patch=not stat_only)

    def text() -> None:
        width = max((len(f["path"]) for f in r["files"]), default=0)
        for f in r["files"]:
            change = "binary" if f["binary"] else f"+{f['additions']} -{f['deletions']}"
            click.echo(_shown(f" {f['path']:<{width}} | {f['status']:<8} {change}"))
        click.echo(
            f" {r['files_changed']} files changed, {r['insertions']} insertions(+), {r['deletions']} deletions(-)"
        )
        if not stat_only and r.get("patch"):
            click.echo("")
            click.echo(r["patch"], nl=False)

    emit(as_json, r, text)


@main.command()
@name_argument
@click.argument("rev")
@click.argument("directory", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--branch",
    metavar="BRANCH",
    help="Find a version REV on BRANCH (default: the version's tag, else main; other branches only when named).",
)
@trust_options(
    "Trusted public key file; a version whose capsule.sig does not verify against it is skipped. Repeatable."
)
@store_option
@json_option
def checkout(
    name: str,
    rev: str,
    directory: str,
    branch: str | None,
    keys: tuple[str, ...],
    hmac_key_envs: tuple[str, ...],
    trust: str | None,
    store: str | None,
    as_json: bool,
) -> None:
    """Write version REV of capsule NAME into the new DIRECTORY and verify it.

    REV is a version (its tag, else the newest commit on main recording it),
    a branch (BRANCH, BRANCH~N) or a commit id. Only the files the version's
    capsule.lock lists are written; a stored tree holding anything else is
    refused (exit 1). DIRECTORY must not exist or be empty; it appears only once
    verified (integrity, and signatures when --key/--trust are given).
    """
    from ..store.merge import checkout_version  # noqa: PLC0415 -- start-up: the store (pygit2) loads only in the commands that use it, not for --help

    r = checkout_version(
        _open(store),
        name,
        rev,
        Path(directory),
        branch=branch,
        keys=keys,
        hmac_key_envs=hmac_key_envs,
        trust=trust,
    )
    emit(
        as_json,
        r,
        _shown(
            f"checked out {name}@{r['version']} ({_short(r['commit'])}) into {directory}: {r['files']} files, "
            f"verified against capsule.lock; {signature_text(r['signature'])}"
        ),
    )


@main.command()
@name_argument
@click.argument("branch")
@click.option("--into", default="main", show_default=True, help="Branch that receives the merge.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=str),
    help="Where conflicts are written (default: ./NAME-merge-BRANCH).",
)
@click.option("-m", "--message", help="Merge commit message.")
@store_option
@json_option
def merge(
    name: str, branch: str, into: str, workdir: str | None, message: str | None, store: str | None, as_json: bool
) -> None:
    """Three-way merge BRANCH of capsule NAME into --into (main).

    A clean merge is sealed and committed with both parents. Conflicts are
    written with markers into a work directory; every conflicted path is listed
    and the exit code is 1. Resolve them there, then `qlcapsule seal DIR` and
    `qlcapsule commit DIR` to record the merge.
    """
    from ..store.merge import merge_branch  # noqa: PLC0415 -- start-up: the store (pygit2) loads only in the commands that use it, not for --help

    try:
        r = merge_branch(
            _open(store), name, branch, into=into, workdir=Path(workdir) if workdir else None, message=message
        )
    except ConflictError as exc:
        data = getattr(exc, "result", {"conflicts": exc.paths})
        if as_json:
            emit(True, data)
        else:
            click.echo(f"CONFLICT: {len(exc.paths)} path(s) in {data.get('workdir')}", err=True)
            kinds = data.get("kinds", {})
            for p in exc.paths:
                kind = kinds.get(p, "content")
                click.echo(_shown(f"  {p}" if kind == "content" else f"  {p} ({kind})"), err=True)
        raise
    texts = {
        "up-to-date": f"{name}/{into} already contains {branch}",
        "fast-forward": f"fast-forward {name}/{into} to {_short(r['commit'])}",
        "merged": f"merged {branch} into {name}/{into}: {r.get('version')} {_short(r['commit'])}",
    }
    emit(as_json, r, texts[r["status"]])


@main.command()
@capsule_dir
@click.option(
    "--to", "to", metavar="VERSION", help="Template version (tag, branch or commit) to update to (default: the newest)."
)
@json_option
def update(directory: str, to: str | None, as_json: bool) -> None:
    """Re-generate DIRECTORY from a newer template version, keeping local edits.

    The template is rendered at the recorded version and at the new one with
    the recorded answers (capsule.yaml `generator`), and the difference is
    merged three-way into the files as they are now — like `copier update`,
    without needing a clean git checkout or a tagged template. A clean update
    re-seals; conflicts are left as markers, listed, and exit with 1.
    """
    from ..store.merge import update_capsule  # noqa: PLC0415 -- start-up: the store (pygit2) loads only in the commands that use it, not for --help

    try:
        r = update_capsule(Path(directory), to=to)
    except ConflictError as exc:
        if as_json:
            emit(True, getattr(exc, "result", {"conflicts": exc.paths}))
        else:
            for p in exc.paths:
                click.echo(f"CONFLICT: {p}", err=True)
        raise
    if r["status"] == "up-to-date":
        emit(as_json, r, f"{r['capsule']} is up to date with {r['template']} {r['to']}")
        return
    emit(
        as_json,
        r,
        f"updated {r['capsule']} from {r['template']} {r['from']} to {r['to']}: {len(r['changed'])} changed, {len(r['removed'])} removed; sealed sha256:{r['digest']}",
    )


__all__ = ["commit", "log_cmd", "tag", "branch", "diff", "checkout", "merge", "update"]
