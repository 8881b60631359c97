"""Three-way merges of capsule branches and template updates (copier-update style)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Mapping

import pygit2
import pytest

from qlcapsule import Capsule, ConflictError, Generator, GeneratorRecord, hookimpl
from qlcapsule.store.merge import merge_branch, update_capsule
from qlcapsule.store.versions import commit_capsule, create_branch, log_versions, open_store
from qlcapsule.testing import write_capsule


def fsck(path: Path) -> None:
    out = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def bump(root: Path, version: str, files: dict[str, str] | None = None) -> Capsule:
    old = Capsule.load(root).version
    text = (root / "capsule.yaml").read_text()
    (root / "capsule.yaml").write_text(text.replace(f"version: {old}", f"version: {version}"))
    for path, content in (files or {}).items():
        (root / path).write_text(content)
    cap = Capsule.load(root)
    cap.seal()
    return cap


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store.git"


def _two_branches(tmp_path: Path, store: Path) -> tuple[Capsule, Path]:
    text = "".join(f"line {i}\n" for i in range(20))
    cap = write_capsule(tmp_path / "main", {"a.txt": text, "b.txt": text}, name="svc")
    commit_capsule(cap.root, store=store)
    create_branch(open_store(store=store), "svc", "feature")
    feature = tmp_path / "feature"
    import shutil

    shutil.copytree(cap.root, feature)
    return cap, feature


def test_clean_merge_commits_with_both_parents(tmp_path: Path, store: Path) -> None:
    cap, feature = _two_branches(tmp_path, store)
    bump(cap.root, "1.1.0", {"a.txt": (cap.root / "a.txt").read_text().replace("line 2\n", "main 2\n")})
    ours = commit_capsule(cap.root, store=store)
    bump(feature, "1.0.1", {"b.txt": (feature / "b.txt").read_text().replace("line 15\n", "feature 15\n")})
    theirs = commit_capsule(feature, store=store, branch="feature")
    out = merge_branch(open_store(store=store), "svc", "feature")
    assert out["status"] == "merged" and out["version"] == "1.1.0"
    st = open_store(store=store)
    merged = st.repo[out["commit"]]
    assert [str(p) for p in merged.parent_ids] == [ours.commit, theirs.commit]
    files = {e.name: st.repo[e.id].data for e in merged.tree if e.name.endswith(".txt")}
    assert b"main 2\n" in files["a.txt"] and b"feature 15\n" in files["b.txt"]
    assert "capsule.sig" not in [e.name for e in merged.tree]
    from qlcapsule.store.merge import checkout_version

    checkout_version(st, "svc", "main", tmp_path / "check")  # the merged lock verifies
    assert merge_branch(st, "svc", "feature")["status"] == "up-to-date"
    fsck(store)


def test_both_sides_bump_the_version_resolves_to_the_higher(tmp_path: Path, store: Path) -> None:
    cap, feature = _two_branches(tmp_path, store)
    bump(cap.root, "1.1.0", {"a.txt": "main\n" + (cap.root / "a.txt").read_text()})
    commit_capsule(cap.root, store=store)
    bump(feature, "2.0.0", {"b.txt": (feature / "b.txt").read_text() + "feature\n"})
    commit_capsule(feature, store=store, branch="feature")
    out = merge_branch(open_store(store=store), "svc", "feature")
    assert out["status"] == "merged" and out["version"] == "2.0.0"


def test_fast_forward(tmp_path: Path, store: Path) -> None:
    cap, feature = _two_branches(tmp_path, store)
    bump(feature, "1.0.1", {"b.txt": "ff\n"})
    theirs = commit_capsule(feature, store=store, branch="feature")
    out = merge_branch(open_store(store=store), "svc", "feature")
    assert out["status"] == "fast-forward" and out["commit"] == theirs.commit
    assert str(open_store(store=store).head("svc", "main")) == theirs.commit


def test_conflicts_leave_markers_list_paths_and_exit_1(
    tmp_path: Path, store: Path, qlcapsule_cli, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    cap, feature = _two_branches(tmp_path, store)
    bump(cap.root, "1.1.0", {"a.txt": "main wins\n", "b.txt": "main b\n"})
    ours = commit_capsule(cap.root, store=store)
    bump(feature, "1.0.1", {"a.txt": "feature wins\n", "b.txt": "feature b\n"})
    theirs = commit_capsule(feature, store=store, branch="feature")
    work = tmp_path / "resolve"
    res = qlcapsule_cli("merge", "svc", "feature", "--workdir", str(work), "--store", str(store), "--json")
    assert res.exit_code == 1
    data = json.loads(res.stdout)["result"]
    assert data["conflicts"] == ["a.txt", "b.txt"] and data["status"] == "conflict"
    assert "a.txt, b.txt" in res.stderr
    text = (work / "a.txt").read_text()
    assert "<<<<<<< " in text and "main wins" in text and "feature wins" in text and ">>>>>>> " in text
    assert json.loads((work / ".qlcapsule/merge.json").read_text())["theirs"] == theirs.commit
    assert str(open_store(store=store).head("svc", "main")) == ours.commit  # nothing moved
    # committing with markers left is refused, even when sealed
    Capsule.load(work).seal()
    res = qlcapsule_cli("commit", str(work), "--store", str(store))
    assert res.exit_code == 2 and "conflict markers remain in a.txt, b.txt" in res.stderr
    (work / "a.txt").write_text("resolved\n")
    (work / "b.txt").write_text("resolved b\n")
    Capsule.load(work).seal()
    res = qlcapsule_cli("commit", str(work), "--store", str(store), "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["result"]["parents"] == [ours.commit, theirs.commit]
    assert not (work / ".qlcapsule/merge.json").exists()
    fsck(store)


# -- template update ----------------------------------------------------------------


def _template_repo(path: Path, versions: list[dict[str, str]]) -> list[str]:
    """A git template repository; commit i gets tag v{i+1}. Files use {{name}}."""
    repo = pygit2.init_repository(str(path), bare=True)
    sig = pygit2.Signature("t", "t@x")
    parents: list[Any] = []
    ids = []
    for i, files in enumerate(versions):
        index = pygit2.Index()
        for rel, text in files.items():
            index.add(pygit2.IndexEntry(rel, repo.create_blob(text.encode()), pygit2.GIT_FILEMODE_BLOB))
        oid = repo.create_commit(None, sig, sig, f"v{i + 1}", index.write_tree(repo), parents)
        repo.create_reference(f"refs/tags/v{i + 1}", oid)
        parents = [oid]
        ids.append(str(oid))
    return ids


class GitTemplate(Generator):
    """Renders a git template repository at a tag or commit; newest tag when no version."""

    name = "test-git-template"

    def handles(self, source: str) -> bool:
        return source.endswith(".git")

    def generate(
        self,
        source: str,
        dest: Path,
        answers: Mapping[str, Any],
        *,
        version: str | None = None,
        interactive: bool = False,
    ) -> GeneratorRecord:
        repo = pygit2.Repository(source)
        if version is None:
            tags = sorted(
                (r for r in repo.listall_references() if r.startswith("refs/tags/v")), key=lambda r: int(r[11:])
            )
            version = tags[-1].removeprefix("refs/tags/")
        try:
            commit = repo.revparse_single(f"refs/tags/{version}").peel(pygit2.Commit)
            tag = version
        except KeyError:
            commit = repo.revparse_single(version).peel(pygit2.Commit)
            tag = None
        dest.mkdir(parents=True, exist_ok=True)
        for entry in commit.tree:
            text = repo[entry.id].data.decode().replace("{{name}}", str(answers["name"]))
            (dest / entry.name).write_text(text)
        record = GeneratorRecord(
            template=self.name, version=tag, commit=str(commit.id), source=source, answers=dict(answers)
        )
        gen = dict(record.to_definition().items())
        (dest / "capsule.yaml").write_text(
            f"name: {answers['name']}\nversion: 0.1.0\ngenerator:\n"
            + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in gen.items() if k != "answers")
            + f"  answers: {json.dumps(gen['answers'])}\n"
        )
        return record


class _Plugin:
    @staticmethod
    @hookimpl
    def qlcapsule_register_generators(register):  # type: ignore[no-untyped-def]
        register(GitTemplate)


V1 = {"app.py": "# {{name}}\nA = 1\nB = 2\nC = 3\n", "README.md": "{{name}}\n\nintro\n", "old.txt": "to be dropped\n"}
V2 = {
    "app.py": "# {{name}}\nA = 1\nB = 2\nC = 30\n",
    "README.md": "{{name}}\n\nintro\n",
    "new.txt": "added in v2 for {{name}}\n",
}


@pytest.fixture
def generated(tmp_path: Path, qlcapsule_plugin) -> tuple[Path, list[str]]:  # type: ignore[no-untyped-def]
    qlcapsule_plugin(_Plugin, "test-git-template")
    ids = _template_repo(tmp_path / "tpl.git", [V1, V2])
    root = tmp_path / "svc"
    GitTemplate().generate(str(tmp_path / "tpl.git"), root, {"name": "svc"}, version="v1")
    Capsule.load(root).seal()
    return root, ids


def test_update_merges_template_changes_with_local_edits(generated: tuple[Path, list[str]], qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    root, ids = generated
    app = (root / "app.py").read_text().replace("A = 1", "A = 100  # local")
    (root / "app.py").write_text(app)
    (root / "mine.txt").write_text("a local file\n")
    res = qlcapsule_cli("update", str(root), "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)["result"]
    assert out["status"] == "updated" and out["from"] == "v1" and out["to"] == "v2"
    text = (root / "app.py").read_text()
    assert "A = 100  # local" in text and "C = 30" in text  # both sides kept
    assert (root / "new.txt").read_text() == "added in v2 for svc\n"
    assert not (root / "old.txt").exists() and (root / "mine.txt").exists()
    cap = Capsule.load(root)
    cap.verify_integrity()  # re-sealed
    assert cap.definition.generator is not None and cap.definition.generator.version == "v2"
    assert cap.definition.generator.commit == ids[1]
    res = qlcapsule_cli("update", str(root), "--json")
    assert json.loads(res.stdout)["result"]["status"] == "up-to-date"


def test_update_to_an_untagged_commit_from_an_unsealed_dir(generated: tuple[Path, list[str]]) -> None:
    root, ids = generated
    (root / "README.md").write_text("svc\n\nintro\n\nlocal notes\n")  # unsealed local edit
    out = update_capsule(root, to=ids[1])
    assert out["status"] == "updated" and out["to"] == ids[1]
    assert (root / "README.md").read_text().endswith("local notes\n")


def test_update_conflict_writes_markers_and_exits_1(generated: tuple[Path, list[str]], qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    root, _ = generated
    (root / "app.py").write_text((root / "app.py").read_text().replace("C = 3", "C = 4  # mine"))
    res = qlcapsule_cli("update", str(root))
    assert res.exit_code == 1
    assert "CONFLICT: app.py" in res.stderr and "1 conflict(s): app.py" in res.stderr
    text = (root / "app.py").read_text()
    assert "<<<<<<< " in text and "C = 4  # mine" in text and "C = 30" in text
    with pytest.raises(Exception, match="modified: app.py|modified"):
        Capsule.load(root).verify_integrity()  # not re-sealed while conflicted


def test_update_without_generator_section(tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    cap = write_capsule(tmp_path / "plain", {"a.txt": "a\n"})
    res = qlcapsule_cli("update", str(cap.root))
    assert res.exit_code == 2 and "no 'generator' section" in res.stderr


def test_merge_state_in_log(tmp_path: Path, store: Path) -> None:
    cap, feature = _two_branches(tmp_path, store)
    bump(cap.root, "1.1.0", {"a.txt": "x\n" + (cap.root / "a.txt").read_text()})
    commit_capsule(cap.root, store=store)
    bump(feature, "1.0.1", {"b.txt": (feature / "b.txt").read_text() + "y\n"})
    commit_capsule(feature, store=store, branch="feature")
    merge_branch(open_store(store=store), "svc", "feature")
    versions = [e["version"] for e in log_versions(open_store(store=store), "svc")]
    assert versions[0] == "1.1.0" and "1.0.1" in versions and versions[-1] == "1.0.0"
    assert (
        subprocess.run(
            ["git", "log", "--oneline", "refs/capsules/svc/heads/main"], cwd=store, capture_output=True
        ).returncode
        == 0
    )


def test_conflict_error_type() -> None:
    assert ConflictError("x", ["a"]).exit_code == 1


# -- conflicts that are not one file's lines ------------------------------------------


def _diverge(tmp_path: Path, store: Path, files: dict[str, str | bytes], ours: Any, theirs: Any) -> tuple[str, str]:
    """svc with ``files`` on main; ``ours(root)`` edits main, ``theirs(root)`` edits feature; both committed."""
    cap = write_capsule(tmp_path / "main", files, name="svc")
    commit_capsule(cap.root, store=store)
    create_branch(open_store(store=store), "svc", "feature")
    feature = tmp_path / "feature"
    import shutil

    shutil.copytree(cap.root, feature)
    ours(cap.root)
    theirs(feature)
    Capsule.load(cap.root).seal()
    Capsule.load(feature).seal()
    return commit_capsule(cap.root, store=store).commit, commit_capsule(feature, store=store, branch="feature").commit


def _merge_cli(qlcapsule_cli: Any, store: Path, work: Path) -> tuple[Any, dict[str, Any]]:
    res = qlcapsule_cli("merge", "svc", "feature", "--workdir", str(work), "--store", str(store))
    assert res.exit_code == 1, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    return res, json.loads((work / ".qlcapsule/merge.json").read_text())


def _rename(old: str, new: str | None) -> Any:
    def edit(root: Path) -> None:
        if new is None:
            (root / old).unlink()
        else:
            (root / old).rename(root / new)

    return edit


BODY = "".join(f"line {i}\n" for i in range(30))


def test_rename_rename_conflict_is_reported_and_resolvable(tmp_path: Path, store: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = _diverge(
        tmp_path, store, {"a.txt": BODY, "b.txt": "b\n"}, _rename("a.txt", "a-main.txt"), _rename("a.txt", "a-feat.txt")
    )
    work = tmp_path / "w"
    res, state = _merge_cli(qlcapsule_cli, store, work)
    assert "a-feat.txt, a-main.txt, a.txt" in res.stderr
    assert "a.txt (deleted or renamed on both main and feature)" in res.stderr
    assert (work / "a-main.txt").read_text() == BODY == (work / "a-feat.txt").read_text()
    assert not (work / "a.txt").exists()
    assert set(state["kinds"]) == {"a-feat.txt", "a-main.txt", "a.txt"}
    (work / "a-feat.txt").unlink()
    Capsule.load(work).seal()
    res = qlcapsule_cli("commit", str(work), "--store", str(store), "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["result"]["parents"] == [ours, theirs]


def test_rename_delete_conflict_is_reported(tmp_path: Path, store: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    _diverge(tmp_path, store, {"a.txt": BODY, "b.txt": "b\n"}, _rename("a.txt", "a-main.txt"), _rename("a.txt", None))
    res, state = _merge_cli(qlcapsule_cli, store, tmp_path / "w")
    assert "2 conflict(s)" in res.stderr and "a-main.txt, a.txt" in res.stderr
    assert (tmp_path / "w" / "a-main.txt").read_text() == BODY


@pytest.mark.parametrize("in_base", [False, True], ids=["added-both-ways", "file-became-directory"])
def test_file_directory_conflict_writes_everything_or_nothing(
    tmp_path: Path, store: Path, in_base: bool, qlcapsule_cli
) -> None:  # type: ignore[no-untyped-def]
    def as_file(root: Path) -> None:
        (root / "x").write_text("file on main\n")

    def as_dir(root: Path) -> None:
        (root / "x").unlink(missing_ok=True)
        (root / "x").mkdir()
        (root / "x" / "y.txt").write_text("dir on feature\n")

    ours, theirs = _diverge(tmp_path, store, {"a.txt": "a\n", **({"x": "base\n"} if in_base else {})}, as_file, as_dir)
    work = tmp_path / "w"
    res, state = _merge_cli(qlcapsule_cli, store, work)
    assert "x (a file on main (written as x~main), a directory on feature)" in res.stderr
    assert (work / "x~main").read_text() == "file on main\n" and (
        work / "x" / "y.txt"
    ).read_text() == "dir on feature\n"
    assert state["kinds"] == {"x": "a file on main (written as x~main), a directory on feature"}
    assert not list(tmp_path.glob(".w.*"))
    (work / "x~main").unlink()
    Capsule.load(work).seal()
    res = qlcapsule_cli("commit", str(work), "--store", str(store), "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["result"]["parents"] == [ours, theirs]


def test_a_failed_conflict_write_leaves_no_work_dir(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qlcapsule.store.merge as merge_mod

    _diverge(
        tmp_path,
        store,
        {"a.txt": "a\n"},
        lambda r: (r / "a.txt").write_text("m\n"),
        lambda r: (r / "a.txt").write_text("f\n"),
    )
    calls = []

    def failing(path: Path, data: bytes, *, mode: int = 0o644) -> bool:
        calls.append(path)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return True

    monkeypatch.setattr(merge_mod, "atomic_write", failing)
    with pytest.raises(OSError):
        merge_branch(open_store(store=store), "svc", "feature", workdir=tmp_path / "w")
    assert not (tmp_path / "w").exists() and not list(tmp_path.glob(".w.*"))


@pytest.mark.parametrize(
    ("main_side", "feature_side"),
    [(b"\0main\xff", b"\0feature\xff"), (b"caf\xe9 main\n", b"caf\xe9 feature\n")],
    ids=["nul-bytes", "latin-1"],
)
def test_binary_conflict_keeps_ours_and_puts_theirs_aside(
    tmp_path: Path, store: Path, main_side: bytes, feature_side: bytes, qlcapsule_cli
) -> None:  # type: ignore[no-untyped-def]
    def put(data: bytes) -> Any:
        return lambda root: (root / "f.bin").write_bytes(data)

    _diverge(tmp_path, store, {"a.txt": "a\n", "f.bin": b"base\xff\n"}, put(main_side), put(feature_side))
    work = tmp_path / "w"
    res, state = _merge_cli(qlcapsule_cli, store, work)
    assert "f.bin (binary: main's side kept; feature's is in .qlcapsule/theirs/f.bin)" in res.stderr
    assert (work / "f.bin").read_bytes() == main_side
    assert (work / ".qlcapsule/theirs/f.bin").read_bytes() == feature_side
    assert state["conflicts"] == ["f.bin"]
    lock = Capsule.load(work).seal().lock
    assert [e.path for e in lock.files] == ["a.txt", "capsule.yaml", "f.bin"]  # the aside copy is never sealed


def test_conflict_markers_name_the_branches(tmp_path: Path, store: Path) -> None:
    _diverge(
        tmp_path,
        store,
        {"a.txt": BODY},
        lambda r: (r / "a.txt").write_text(BODY.replace("line 3\n", "main 3\n")),
        lambda r: (r / "a.txt").write_text(BODY.replace("line 3\n", "feature 3\n")),
    )
    with pytest.raises(ConflictError):
        merge_branch(open_store(store=store), "svc", "feature", workdir=tmp_path / "w")
    lines = (tmp_path / "w" / "a.txt").read_text().splitlines()
    assert lines[3:8] == ["<<<<<<< svc@1.0.0 (main)", "main 3", "=======", "feature 3", ">>>>>>> svc@1.0.0 (feature)"]


def test_resolved_check_skips_conflict_paths_that_are_no_longer_files(tmp_path: Path) -> None:
    """A conflicted path turned into a directory crashed commit with IsADirectoryError (exit 70)."""
    from qlcapsule.errors import StoreError
    from qlcapsule.store.commit import _check_resolved

    (tmp_path / "was-a-file").mkdir()
    (tmp_path / "x.txt").write_text("<<<<<<< main\na\n=======\nb\n>>>>>>> feature\n")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
    _check_resolved(tmp_path, {"conflicts": ["was-a-file", "gone", "pipe", "../x.txt"]})
    with pytest.raises(StoreError, match="conflict markers remain in x.txt"):
        _check_resolved(tmp_path, {"conflicts": ["was-a-file", "x.txt"]})
