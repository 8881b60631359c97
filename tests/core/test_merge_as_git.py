"""Merges as git makes them: markers and messages name both sides by version, and a directory checked out
before a merge (or another version) it does not contain is not committed over it unless forced.

Every case runs the real CLI (in process) against a real pygit2 store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pygit2
import pytest

from qlcapsule import Capsule
from qlcapsule.testing import write_capsule

BODY = "".join(f"line {i}\n" for i in range(30))


def _ok(res: Any) -> Any:
    assert res.exit_code == 0, res.stderr
    assert "Traceback" not in res.stderr
    return res


def _edit(root: Path, version: str | None = None, **files: str) -> None:
    """Change files (``a_txt`` is ``a.txt``) and the version, then seal."""
    text = (root / "capsule.yaml").read_text()
    if version is not None:
        old = Capsule.load(root).version
        (root / "capsule.yaml").write_text(text.replace(f"version: {old}", f"version: {version}"))
    for key, content in files.items():
        (root / key.replace("_", ".")).write_text(content)
    Capsule.load(root).seal()


def _head(store: Path, branch: str = "main") -> str:
    return str(pygit2.Repository(str(store)).references[f"refs/capsules/svc/heads/{branch}"].target)


@pytest.fixture
def diverged(tmp_path: Path, qlcapsule_cli: Any) -> tuple[Any, Path, Path, Path]:
    """svc 1.0.0 on main; main then commits 1.1.0 (line 3 of a.txt), feature 1.0.1 (b.txt, and line 3 of a.txt
    when the test edits it again). Returns (cli, store, main directory, feature directory)."""
    store = tmp_path / "store.git"
    cap = write_capsule(tmp_path / "main", {"a.txt": BODY, "b.txt": BODY}, name="svc")

    def cli(*args: str) -> Any:
        return qlcapsule_cli(*args, "--store", str(store))

    _ok(cli("commit", str(cap.root)))
    _ok(cli("branch", "svc", "feature"))
    _ok(cli("checkout", "svc", "feature", str(tmp_path / "feature")))
    _edit(cap.root, "1.1.0", a_txt=BODY.replace("line 3\n", "main 3\n"))
    _ok(cli("commit", str(cap.root)))
    _edit(tmp_path / "feature", "1.0.1", b_txt=BODY.replace("line 20\n", "feature 20\n"))
    _ok(cli("commit", str(tmp_path / "feature"), "--branch", "feature"))
    return cli, store, cap.root, tmp_path / "feature"


# -- 1. conflict markers name both sides by version -----------------------------------------------------------


def test_conflict_markers_name_both_versions(diverged: tuple[Any, Path, Path, Path], tmp_path: Path) -> None:
    cli, store, _, feature = diverged
    _edit(feature, "1.0.2", a_txt=BODY.replace("line 3\n", "feature 3\n"))
    _ok(cli("commit", str(feature), "--branch", "feature"))
    res = cli("merge", "svc", "feature", "--workdir", str(tmp_path / "w"))
    assert res.exit_code == 1, res.stderr
    lines = (tmp_path / "w" / "a.txt").read_text().splitlines()
    assert lines[3:8] == ["<<<<<<< svc@1.1.0 (main)", "main 3", "=======", "feature 3", ">>>>>>> svc@1.0.2 (feature)"]
    assert "a.txt" not in "".join(line for line in lines if line.startswith(("<<<<<<<", ">>>>>>>")))


# -- 2. merge commits carry a message naming both parents ---------------------------------------------------------


def test_a_clean_merge_commit_names_both_parents_in_log(diverged: tuple[Any, Path, Path, Path]) -> None:
    cli, store, _, _ = diverged
    merged = json.loads(_ok(cli("merge", "svc", "feature", "--json")).stdout)["result"]
    assert merged["status"] == "merged"
    said = "Merge svc@1.0.1 (feature) into svc@1.1.0 (main)"
    assert said in _ok(cli("log", "svc")).stdout
    entry = json.loads(_ok(cli("log", "svc", "--json")).stdout)["result"]["versions"][0]
    assert entry["commit"] == merged["commit"] and entry["message"] == said
    assert len(entry["parents"]) == 2


def test_merge_m_is_added_below_the_line_naming_the_parents(diverged: tuple[Any, Path, Path, Path]) -> None:
    cli, _, _, _ = diverged
    _ok(cli("merge", "svc", "feature", "-m", "release train 7"))
    entry = json.loads(_ok(cli("log", "svc", "--json")).stdout)["result"]["versions"][0]
    assert entry["message"] == "Merge svc@1.0.1 (feature) into svc@1.1.0 (main)\n\nrelease train 7"


def test_a_resolved_conflict_is_committed_with_the_merge_message(
    diverged: tuple[Any, Path, Path, Path], tmp_path: Path
) -> None:
    """The merge commit made by 'commit' in the work directory had an empty message."""
    cli, _, _, feature = diverged
    _edit(feature, "1.0.2", a_txt=BODY.replace("line 3\n", "feature 3\n"))
    _ok(cli("commit", str(feature), "--branch", "feature"))
    work = tmp_path / "w"
    assert cli("merge", "svc", "feature", "--workdir", str(work)).exit_code == 1
    _edit(work, a_txt=BODY.replace("line 3\n", "both 3\n"))
    done = json.loads(_ok(cli("commit", str(work), "--json")).stdout)["result"]
    assert len(done["parents"]) == 2
    text = _ok(cli("log", "svc", "-n", "1")).stdout
    assert "Merge svc@1.0.2 (feature) into svc@1.1.0 (main)" in text


# -- 3. a directory checked out before a merge it does not contain ---------------------------------------------------


def test_committing_the_pre_merge_directory_is_refused_unless_forced(diverged: tuple[Any, Path, Path, Path]) -> None:
    cli, store, main, _ = diverged
    merged = json.loads(_ok(cli("merge", "svc", "feature", "--json")).stdout)["result"]["commit"]
    _edit(main, "1.2.0", a_txt=BODY.replace("line 3\n", "main 3\n") + "more\n")
    res = cli("commit", str(main))
    assert res.exit_code == 2, res.stdout
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    error = res.stderr
    assert "based on svc@1.1.0" in error and "svc/main is now at svc@1.1.0" in error
    assert "a merge it does not contain (Merge svc@1.0.1 (feature) into svc@1.1.0 (main))" in error
    assert "would undo its changes to b.txt" in error
    assert "Check out main into a new directory" in error and "--force" in error
    assert _head(store) == merged  # nothing was committed
    forced = json.loads(_ok(cli("commit", str(main), "--force", "--json")).stdout)["result"]
    assert forced["parents"] == [merged]


def test_a_fresh_checkout_of_the_merge_commits(diverged: tuple[Any, Path, Path, Path], tmp_path: Path) -> None:
    cli, store, main, _ = diverged
    merged = json.loads(_ok(cli("merge", "svc", "feature", "--json")).stdout)["result"]["commit"]
    fresh = tmp_path / "fresh"
    _ok(cli("checkout", "svc", "main", str(fresh)))
    assert sorted(p.name for p in fresh.iterdir()) == ["a.txt", "b.txt", "capsule.lock", "capsule.yaml"]  # no record
    _edit(fresh, "1.2.0", a_txt=(fresh / "a.txt").read_text() + "more\n")
    done = json.loads(_ok(cli("commit", str(fresh), "--json")).stdout)["result"]
    assert done["parents"] == [merged] and _head(store) == done["commit"]
    _edit(fresh, "1.3.0", a_txt=(fresh / "a.txt").read_text() + "again\n")  # its own commit is its new base
    _ok(cli("commit", str(fresh)))
    _edit(main, "1.4.0", a_txt="x\n")
    assert cli("commit", str(main)).exit_code == 2  # still stale


def test_a_linear_advance_from_another_directory_is_refused_too(
    diverged: tuple[Any, Path, Path, Path], tmp_path: Path
) -> None:
    """git's non-fast-forward: someone else's version is undone as silently as a merge."""
    cli, store, main, _ = diverged
    other = tmp_path / "other"
    _ok(cli("checkout", "svc", "main", str(other)))
    _edit(other, "1.1.1", b_txt="changed elsewhere\n")
    theirs = json.loads(_ok(cli("commit", str(other), "--json")).stdout)["result"]["commit"]
    _edit(main, "1.1.2", a_txt="changed here\n")
    res = cli("commit", str(main))
    assert res.exit_code == 2 and "would undo its changes to b.txt. " in res.stderr  # 1.1.2 supersedes 1.1.1
    assert "a merge" not in res.stderr
    # the head's change brought in by hand (b.txt as the head has it, a version at least as high) undoes nothing
    (main / "b.txt").write_text("changed elsewhere\n")
    _edit(main, "1.1.0")
    assert "would undo its changes to capsule.yaml" in cli("commit", str(main)).stderr  # an older version
    _edit(main, "1.1.2")
    done = json.loads(_ok(cli("commit", str(main), "--json")).stdout)["result"]
    assert done["parents"] == [theirs]
    repo = pygit2.Repository(str(store))
    tree = repo[done["commit"]].tree
    assert repo[tree["b.txt"].id].data == b"changed elsewhere\n" and repo[tree["a.txt"].id].data == b"changed here\n"


def test_a_directory_ahead_of_the_head_undoes_nothing(tmp_path: Path, qlcapsule_cli: Any) -> None:
    """A checkout of a branch that descends from main, committed to main: main made no change it lacks."""
    store = tmp_path / "store.git"

    def cli(*args: str) -> Any:
        return qlcapsule_cli(*args, "--store", str(store))

    cap = write_capsule(tmp_path / "main", {"a.txt": BODY}, name="svc")
    first = json.loads(_ok(cli("commit", str(cap.root), "--json")).stdout)["result"]["commit"]
    _ok(cli("branch", "svc", "feature"))
    feature = tmp_path / "feature"
    _ok(cli("checkout", "svc", "feature", str(feature)))
    _edit(feature, "1.1.0", a_txt="feature\n")
    _ok(cli("commit", str(feature), "--branch", "feature"))
    _edit(feature, "1.2.0", a_txt="feature again\n")
    done = json.loads(_ok(cli("commit", str(feature), "--branch", "main", "--json")).stdout)["result"]
    assert done["parents"] == [first]


def test_a_directory_without_a_record_builds_on_the_head_as_before(
    diverged: tuple[Any, Path, Path, Path], tmp_path: Path
) -> None:
    cli, store, _, _ = diverged
    _ok(cli("merge", "svc", "feature"))
    new = write_capsule(tmp_path / "new", {"a.txt": "new\n"}, name="svc", version="2.0.0")
    done = json.loads(_ok(cli("commit", str(new.root), "--json")).stdout)["result"]
    assert done["created"] and _head(store) == done["commit"]


def test_an_unreadable_base_record_is_no_base(diverged: tuple[Any, Path, Path, Path]) -> None:
    cli, store, main, _ = diverged
    _ok(cli("merge", "svc", "feature"))
    records = list((store / "qlcapsule" / "bases").iterdir())
    assert records
    for record in records:
        record.write_bytes(b"\xff{not json")
    _edit(main, "1.2.0", a_txt="x\n")
    res = _ok(cli("commit", str(main)))
    assert "Traceback" not in res.stderr


def test_a_commit_killed_before_its_ref_moved_leaves_no_stale_base(
    diverged: tuple[Any, Path, Path, Path],
) -> None:
    """The base is recorded before the ref moves: a process killed between the two leaves a record of a commit
    whose parent is the head (state built here as such a process leaves it), which the next commit accepts."""
    from qlcapsule.store.repo import open_store, record_base

    cli, store, main, _ = diverged
    st = open_store(store=store)
    head = st.repo.references["refs/capsules/svc/heads/main"].target
    sig = pygit2.Signature("t", "t@x")
    orphan = st.repo.create_commit(None, sig, sig, "svc 1.1.1\n", st.repo[head].tree_id, [head])
    record_base(st, main.resolve(), "svc", "main", orphan)
    _edit(main, "1.1.1", a_txt="after the crash\n")
    done = json.loads(_ok(cli("commit", str(main), "--json")).stdout)["result"]
    assert done["parents"] == [str(head)]
