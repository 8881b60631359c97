"""``qlcapsule.read_store``: the one reader of a version store someone else wrote (``catalog sync`` uses it).

Real stores made by ``commit_capsule``/``tag_version``, then edited the way a hostile repository could be:
symbolic refs, tags in another capsule's namespace, a capsule.lock that is a symlink, a submodule or too
large, alternates, more refs than the bound, impossible author lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pygit2
import pytest

import qlcapsule
from qlcapsule import StoreError, read_store
from qlcapsule.store.versions import commit_capsule, open_store, tag_version
from qlcapsule.testing import write_capsule


def _ship(tmp_path: Path, store: Path, name: str, version: str) -> str:
    cap = write_capsule(tmp_path / f"{name}-{version}", {"app.py": f"print({version!r})\n"}, name=name, version=version)
    return commit_capsule(cap.root, store=store).commit


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store.git"


def test_versions_oldest_first_with_their_lock_tags_and_branches(tmp_path: Path, store: Path) -> None:
    first = _ship(tmp_path, store, "orders", "1.0.0")
    second = _ship(tmp_path, store, "orders", "1.1.0")
    other = _ship(tmp_path, store, "billing", "3.0.0")
    st = open_store(store=store)
    tag_version(st, "orders", "1.1.0")
    st.repo.references.create("refs/capsules/orders/heads/stable", pygit2.Oid(hex=second))
    # a tag in billing's namespace pointing at an orders commit is billing's business, not this version's
    st.repo.references.create("refs/capsules/billing/tags/9.9.9", pygit2.Oid(hex=second))

    reader = read_store(store)
    assert reader.location == str(store.resolve())
    assert reader.heads == {
        "refs/capsules/billing/heads/main": other,
        "refs/capsules/orders/heads/main": second,
        "refs/capsules/orders/heads/stable": second,
    }
    assert reader.skipped == []
    older, newer = reader.versions("refs/capsules/orders/heads/main")
    assert (older.commit, newer.commit) == (first, second)
    assert (older.capsule, older.version, newer.version) == ("orders", "1.0.0", "1.1.0")
    assert newer.parents == (first,) and older.parents == ()
    assert newer.lock == (tmp_path / "orders-1.1.0" / "capsule.lock").read_bytes()
    assert newer.signature is None and newer.problem is None
    assert (newer.tags, newer.branches) == (("1.1.0",), ("main", "stable"))
    assert (older.tags, older.branches) == ((), ())
    assert newer.author.endswith(">") and newer.date[:2] == "20"

    assert [v.commit for v in reader.versions("refs/capsules/orders/heads/main", since=first)] == [second]
    assert [v.commit for v in reader.versions("refs/capsules/orders/heads/main", limit=1)] == [first]
    # a since the repository lacks (or that is no commit id) hides nothing
    for since in ("0" * 40, "not-a-commit"):
        assert len(list(reader.versions("refs/capsules/orders/heads/main", since=since))) == 2
    assert reader.version(second) == newer
    assert reader.version("f" * 40) is None
    with pytest.raises(StoreError, match="is not a head"):
        list(reader.versions("refs/capsules/orders/tags/1.1.0"))


def test_it_is_public_api() -> None:
    assert {"read_store", "StoreReader", "StoredVersion"} <= set(qlcapsule.__all__)
    assert qlcapsule.read_store is read_store


def _replace_head_tree(store: Path, edit: Any) -> str:
    """A new head commit for orders/main whose tree is ``edit(repo, tree_builder)`` applied to the old one."""
    repo = pygit2.Repository(str(store))
    head = repo.references["refs/capsules/orders/heads/main"]
    old = repo[head.target]
    builder = repo.TreeBuilder(old.tree)
    edit(repo, builder)
    new = repo.create_commit(None, old.author, old.committer, old.message, builder.write(), [old.id])
    head.set_target(new)
    return str(new)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        pytest.param(
            lambda repo, b: b.insert("capsule.lock", repo.create_blob(b"/etc/passwd"), pygit2.GIT_FILEMODE_LINK),
            "capsule.lock is not a regular file",
            id="symlink",
        ),
        pytest.param(
            lambda repo, b: b.insert("capsule.lock", pygit2.Oid(hex="1" * 40), pygit2.GIT_FILEMODE_COMMIT),
            "capsule.lock is not a regular file",
            id="submodule",
        ),
        pytest.param(
            lambda repo, b: b.insert("capsule.sig", repo.create_blob(b"x" * 2048), pygit2.GIT_FILEMODE_BLOB),
            "capsule.sig is 2048 bytes; at most 1024 are read",
            id="too-large",
        ),
    ],
)
def test_a_file_that_is_not_a_small_regular_blob_is_not_read(
    tmp_path: Path, store: Path, edit: Any, problem: str
) -> None:
    _ship(tmp_path, store, "orders", "1.0.0")
    crafted = _replace_head_tree(store, edit)
    found = read_store(store, max_file=1024).version(crafted)
    assert found is not None and found.problem == problem
    if "lock" in problem:
        assert found.lock is None
    else:
        assert found.signature is None and found.lock is not None  # the lock (well under 1 KiB) is still read


def test_symbolic_refs_and_refs_outside_the_layout_are_listed_not_followed(tmp_path: Path, store: Path) -> None:
    main = _ship(tmp_path, store, "orders", "1.0.0")
    repo = pygit2.Repository(str(store))
    repo.references.create("refs/heads/private", pygit2.Oid(hex=main))
    repo.references.create("refs/capsules/orders/heads/alias", "refs/heads/private")
    repo.references.create("refs/capsules/orders/notes/x", pygit2.Oid(hex=main))
    reader = read_store(store)
    assert list(reader.heads) == ["refs/capsules/orders/heads/main"]
    assert reader.skipped == [
        "refs/capsules/orders/heads/alias: a symbolic ref (it names another ref, which is not followed)",
        "refs/capsules/orders/notes/x: not refs/capsules/<name>/heads|tags/<name>",
    ]


def test_a_repository_keeping_objects_elsewhere_is_refused(tmp_path: Path, store: Path) -> None:
    _ship(tmp_path, store, "orders", "1.0.0")
    (store / "objects" / "info").mkdir(parents=True, exist_ok=True)
    (store / "objects" / "info" / "alternates").write_text(str(tmp_path / "elsewhere" / "objects") + "\n")
    with pytest.raises(StoreError, match=r"keeps objects outside itself \(objects/info/alternates\)"):
        read_store(store)


def test_more_refs_than_the_bound_is_refused_before_any_is_read(tmp_path: Path, store: Path) -> None:
    main = _ship(tmp_path, store, "orders", "1.0.0")
    repo = pygit2.Repository(str(store))
    for n in range(5):
        repo.references.create(f"refs/capsules/orders/heads/b{n}", pygit2.Oid(hex=main))
    assert len(read_store(store, max_refs=6).heads) == 6
    with pytest.raises(StoreError, match=r"6 refs under refs/capsules/; at most 5 are read"):
        read_store(store, max_refs=5)


def test_not_a_store_and_a_directory_inside_one(tmp_path: Path, store: Path) -> None:
    _ship(tmp_path, store, "orders", "1.0.0")
    with pytest.raises(StoreError, match=r"not a git repository \(a version store"):
        read_store(tmp_path / "orders-1.0.0")
    with pytest.raises(StoreError, match="not a git repository but a directory inside"):
        read_store(store / "refs")


def test_an_impossible_author_is_bounded_and_never_raises(tmp_path: Path, store: Path) -> None:
    _ship(tmp_path, store, "orders", "1.0.0")
    repo = pygit2.Repository(str(store))
    head = repo.references["refs/capsules/orders/heads/main"]
    old = repo[head.target]
    # a commit object written byte by byte: a non-UTF-8, 100 KiB author and a time no clock reaches
    raw = (
        f"tree {old.tree_id}\nparent {old.id}\n".encode()
        + b"author "
        + b"\xff" * 100_000
        + b" <e@x> 99999999999999 +0000\ncommitter c <c@x> 1700000000 +0000\n\n"
        + old.raw_message
    )
    crafted = repo.odb.write(pygit2.enums.ObjectType.COMMIT, raw)
    head.set_target(crafted)
    (_, found) = read_store(store).versions("refs/capsules/orders/heads/main")
    assert found.commit == str(crafted) and found.version == "1.0.0"
    assert len(found.author) == 512 and found.author.startswith("\ufffd")
    assert found.date == ""
