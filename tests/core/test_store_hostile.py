"""A hostile store and hostile input: crafted commits, odd merges, bytes that are not UTF-8.

Every case ends in one error line and an exit code (1 or 2), never a traceback or
exit 70, and nothing half-written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pygit2
import pytest

from qlcapsule import Capsule, IntegrityError
from qlcapsule.store.merge import checkout_version
from qlcapsule.store.versions import commit_capsule, open_store
from qlcapsule.testing import write_capsule


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store.git"


def _raw_tree(repo: Any, entries: list[tuple[str, str, Any]]) -> Any:
    """A tree object written byte by byte: libgit2's TreeBuilder refuses names like ``.git``, git's fsck need not run."""
    data = b"".join(
        f"{mode} {name}".encode() + b"\0" + bytes.fromhex(str(oid))
        for mode, name, oid in sorted(entries, key=lambda e: e[1])
    )
    return repo.odb.write(pygit2.enums.ObjectType.TREE, data)


def _craft_head(store: Path, edit: Any, on: str | None = None) -> str:
    """Move svc/main to a child of ``on`` (default: the head) with its message and ``edit(repo, entries)`` as tree."""
    repo = open_store(store=store).repo
    head = repo.references["refs/capsules/svc/heads/main"]
    commit = repo[on or head.target]
    entries = [(f"{e.filemode:o}", e.name, e.id) for e in commit.tree]
    new = repo.create_commit(
        None, commit.author, commit.committer, commit.message, _raw_tree(repo, edit(repo, entries)), [commit.id]
    )
    head.set_target(new)
    return str(new)


def _dir_of(repo: Any, name: str, data: bytes, mode: str = "100644") -> tuple[str, str, Any]:
    return ("40000", name, _raw_tree(repo, [(mode, "x" if name == "hooks" else "config", repo.create_blob(data))]))


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([".git"], id="dot-git-config"),
        pytest.param(["hooks"], id="hooks"),
        pytest.param([".git", "hooks"], id="both"),
    ],
)
def test_checkout_refuses_tree_entries_the_lock_does_not_list(
    tmp_path: Path, store: Path, extra: list[str], qlcapsule_cli: Any
) -> None:
    cap = write_capsule(tmp_path / "c", {"a.txt": "a\n"}, name="svc")
    commit_capsule(cap.root, store=store)

    def add(repo: Any, entries: list[Any]) -> list[Any]:
        return entries + [_dir_of(repo, n, b"[core]\n\tfsmonitor = evil\n", "100755") for n in extra]

    _craft_head(store, add)
    out = tmp_path / "out"
    res = qlcapsule_cli("checkout", "svc", "main", str(out), "--store", str(store))
    assert res.exit_code == 1, res.stderr
    assert "does not match its capsule.lock: not in capsule.lock:" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c", "store.git"]  # nothing written
    assert qlcapsule_cli("checkout", "svc", "main~1", str(out), "--store", str(store)).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "capsule.lock", "capsule.yaml"]


def test_checkout_refuses_a_tree_lacking_a_locked_file(tmp_path: Path, store: Path) -> None:
    cap = write_capsule(tmp_path / "c", {"a.txt": "a\n", "b.txt": "b\n"}, name="svc")
    commit_capsule(cap.root, store=store)
    _craft_head(store, lambda repo, entries: [e for e in entries if e[1] != "b.txt"])
    with pytest.raises(IntegrityError, match="listed in capsule.lock but missing: b.txt"):
        checkout_version(open_store(store=store), "svc", "main", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_checkout_refuses_a_tree_without_a_lock_and_names_the_version_not_a_temp_dir(
    tmp_path: Path, store: Path
) -> None:
    cap = write_capsule(tmp_path / "c", {"a.txt": "a\n"}, name="svc")
    sealed = commit_capsule(cap.root, store=store).commit
    _craft_head(store, lambda repo, entries: [e for e in entries if e[1] != "capsule.lock"])
    with pytest.raises(IntegrityError, match="has no capsule.lock"):
        checkout_version(open_store(store=store), "svc", "main", tmp_path / "out")

    def edited(repo: Any, entries: list[Any]) -> list[Any]:
        return [(m, n, repo.create_blob(b"A\n") if n == "a.txt" else i) for m, n, i in entries]

    _craft_head(store, edited, on=sealed)
    with pytest.raises(IntegrityError, match=r"^svc@main \([0-9a-f]{12}\): modified: a.txt"):
        checkout_version(open_store(store=store), "svc", "main", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_merge_refuses_a_crafted_branch_with_unlocked_entries(tmp_path: Path, store: Path, qlcapsule_cli: Any) -> None:
    cap = write_capsule(tmp_path / "c", {"a.txt": "a\n"}, name="svc")
    commit_capsule(cap.root, store=store)
    repo = open_store(store=store).repo
    base = str(repo.references["refs/capsules/svc/heads/main"].target)
    repo.references.create("refs/capsules/svc/heads/feature", base)
    (cap.root / "a.txt").write_text("main\n")
    Capsule.load(cap.root).seal()
    commit_capsule(cap.root, store=store)
    main = str(repo.references["refs/capsules/svc/heads/main"].target)
    evil = _craft_head(
        store, lambda repo, entries: entries + [_dir_of(repo, "hooks", b"#!/bin/sh\n", "100755")], on=base
    )
    repo.references["refs/capsules/svc/heads/feature"].set_target(evil)
    repo.references["refs/capsules/svc/heads/main"].set_target(main)
    work = tmp_path / "w"
    res = qlcapsule_cli("merge", "svc", "feature", "--workdir", str(work), "--store", str(store))
    assert res.exit_code == 1 and "not in capsule.lock: hooks/x" in res.stderr and "Traceback" not in res.stderr
    assert not work.exists()


# -- bad input: one error line, exit 2, never exit 70 ------------------------------------

BAD = "ma\udcffin"  # how Python hands over the argument b"ma\xffin" (not UTF-8)
LONG = "a" * 1000


@pytest.fixture
def committed(tmp_path: Path, store: Path) -> Path:
    cap = write_capsule(tmp_path / "c", {"a.txt": "a\n"}, name="svc")
    commit_capsule(cap.root, store=store)
    return cap.root


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["commit", "{cap}", "-m", "bad \udcff"], "-m/--message: 'bad \\xff' is not valid UTF-8", id="commit-message"
        ),
        pytest.param(
            ["tag", "svc", "1.0.0", "-m", "bad \udcff"],
            "-m/--message: 'bad \\xff' is not valid UTF-8",
            id="tag-message",
        ),
        pytest.param(
            ["merge", "svc", "main", "-m", "bad \udcff"],
            "-m/--message: 'bad \\xff' is not valid UTF-8",
            id="merge-message",
        ),
        pytest.param(["checkout", "svc", BAD, "{out}"], "revision: 'ma\\xffin' is not valid UTF-8", id="checkout-rev"),
        pytest.param(["diff", "svc", "main", "1.0.\udcff"], "revision: '1.0.\\xff' is not valid UTF-8", id="diff-rev"),
        pytest.param(["tag", "svc", "1.0.0", "--rev", BAD], "revision: 'ma\\xffin' is not valid UTF-8", id="tag-rev"),
        pytest.param(
            ["branch", "svc", "x", "--from", BAD], "revision: 'ma\\xffin' is not valid UTF-8", id="branch-from"
        ),
        pytest.param(["log", "svc", "--branch", BAD], "branch: 'ma\\xffin' is not valid UTF-8", id="log-branch"),
        pytest.param(["merge", "svc", BAD], "branch: 'ma\\xffin' is not valid UTF-8", id="merge-branch"),
        pytest.param(
            ["merge", "svc", "main", "--into", BAD], "branch: 'ma\\xffin' is not valid UTF-8", id="merge-into"
        ),
        pytest.param(["log", "s\udcffvc"], "capsule name: 's\\xffvc' is not valid UTF-8", id="capsule-name"),
        pytest.param(["checkout", "svc", LONG, "{out}"], "revision: 'aaaa", id="checkout-long-rev"),
        pytest.param(
            ["checkout", "svc", "1" * 1000, "{out}"], "is 1000 characters long; at most 255", id="long-hex-rev"
        ),
        pytest.param(["diff", "svc", "main", LONG], "is 1000 characters long; at most 255", id="diff-long-rev"),
        pytest.param(["merge", "svc", LONG], "branch: 'aaaa", id="merge-long-branch"),
        pytest.param(["log", "svc", "--branch", LONG], "is 1000 characters long", id="log-long-branch"),
        pytest.param(["diff", "svc", "main", "main\x01"], "contains control characters", id="control-character"),
    ],
)
def test_bad_input_is_one_error_line_with_exit_2(
    committed: Path, store: Path, tmp_path: Path, args: list[str], expected: str, qlcapsule_cli: Any
) -> None:
    argv = [a.format(cap=committed, out=tmp_path / "out") for a in args]
    res = qlcapsule_cli(*argv, "--store", str(store))
    assert res.exit_code == 2, res.stderr
    assert expected in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "internal error" not in res.stderr
    assert not (tmp_path / "out").exists()


def test_a_branch_pointing_at_a_missing_object_is_a_clear_error(
    committed: Path, store: Path, qlcapsule_cli: Any
) -> None:
    ghost = store / "refs" / "capsules" / "svc" / "heads" / "ghost"
    ghost.write_text("1234567890" * 4 + "\n")
    (committed / "a.txt").write_text("b\n")
    Capsule.load(committed).seal()
    for args in (
        ["commit", str(committed), "--branch", "ghost"],
        ["log", "svc", "--branch", "ghost"],
        ["log", "svc", "--all"],
        ["merge", "svc", "ghost"],
        ["merge", "svc", "main", "--into", "ghost"],
    ):
        res = qlcapsule_cli(*args, "--store", str(store))
        assert res.exit_code == 2, (args, res.stderr)
        assert "svc: branch 'ghost' points at 123456789012, which is missing from" in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1


def test_a_version_ending_in_dot_lock_cannot_be_tagged_and_says_why(
    tmp_path: Path, store: Path, qlcapsule_cli: Any
) -> None:
    cap = write_capsule(tmp_path / "c", {"a.txt": "a\n"}, name="svc", version="1.0.0-rc.lock")
    commit_capsule(cap.root, store=store)
    res = qlcapsule_cli("tag", "svc", "1.0.0-rc.lock", "--store", str(store))
    assert res.exit_code == 2
    assert "cannot tag 1.0.0-rc.lock: git refuses ref names ending in '.lock'" in res.stderr
    assert "another process" not in res.stderr
    res = qlcapsule_cli("checkout", "svc", "1.0.0-rc.lock", str(tmp_path / "out"), "--store", str(store))
    assert res.exit_code == 0, res.stderr


@pytest.mark.parametrize(
    "lock", [b"[" * 100_000 + b"]" * 100_000, b'{"files": [7]}', b"\xff"], ids=["deep", "shape", "not-utf8"]
)
def test_a_malformed_lock_in_the_parent_version_is_not_an_internal_error(
    tmp_path: Path, store: Path, lock: bytes
) -> None:
    """The parent's capsule.lock is read by the one lock reader; from a bad one nothing is known of the parent."""
    cap = write_capsule(tmp_path / "c", {"a.txt": "a\n"}, name="svc")
    commit_capsule(cap.root, store=store)
    _craft_head(
        store,
        lambda repo, entries: [(m, n, repo.create_blob(lock) if n == "capsule.lock" else i) for m, n, i in entries],
    )
    (cap.root / "a.txt").write_text("A\n")
    cap.seal()
    assert commit_capsule(cap.root, store=store).created
