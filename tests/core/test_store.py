"""The version store: commits, lineage, tags, branches, diff, checkout, notes, store resolution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

from qlcapsule import Capsule, DefinitionError, IntegrityError, StoreError
from qlcapsule.store import statcache as statcache_mod
from qlcapsule.store.merge import checkout_version, diff_versions
from qlcapsule.store.versions import (
    add_note,
    commit_capsule,
    create_branch,
    latest_version,
    log_versions,
    open_store,
    semver_key,
    tag_version,
)
from qlcapsule.testing import write_capsule


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def fsck(path: Path) -> None:
    out = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "error" not in out.stderr.lower(), out.stderr


def bump(root: Path, version: str, files: dict[str, str] | None = None) -> Capsule:
    text = (root / "capsule.yaml").read_text()
    old = Capsule.load(root).version
    (root / "capsule.yaml").write_text(text.replace(f"version: {old}", f"version: {version}"))
    for path, content in (files or {}).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    cap = Capsule.load(root)
    cap.seal()
    return cap


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store.git"


@pytest.fixture
def cap(tmp_path: Path) -> Capsule:
    return write_capsule(
        tmp_path / "orders", {"a.txt": "one\ntwo\nthree\n", "src/app.py": "print('hi')\n"}, name="orders"
    )


def test_commit_records_tree_lineage_and_message(cap: Capsule, store: Path) -> None:
    first = commit_capsule(cap.root, store=store, message="first cut")
    assert first.created and first.parents == [] and first.version == "1.0.0"
    bump(cap.root, "1.1.0", {"a.txt": "one\ntwo\nthree\nfour\n"})
    second = commit_capsule(cap.root, store=store)
    bump(cap.root, "1.2.0", {"src/new.py": "x = 1\n"})
    third = commit_capsule(cap.root, store=store)
    assert second.parents == [first.commit] and third.parents == [second.commit]
    repo = pygit2.Repository(str(store))
    tip = repo[third.commit]
    names = {e.name for e in tip.tree}
    assert {"capsule.yaml", "capsule.lock", "a.txt", "src"} <= names
    assert repo[tip.tree["src/new.py"].id].data == b"x = 1\n"
    assert f"Qlcapsule-Digest: sha256:{third.digest}" in tip.message and "Qlcapsule-Version: 1.2.0" in tip.message
    log = log_versions(open_store(store=store), "orders")
    assert [e["version"] for e in log] == ["1.2.0", "1.1.0", "1.0.0"]
    assert log[-1]["message"] == "first cut" and log[0]["digest"] == third.digest
    assert str(repo.references.get("refs/capsules/orders/heads/main").target) == third.commit
    fsck(store)


def test_unchanged_commit_is_a_noop(cap: Capsule, store: Path) -> None:
    first = commit_capsule(cap.root, store=store)
    again = commit_capsule(cap.root, store=store)
    assert not again.created and again.commit == first.commit


def test_refuses_unsealed_and_tampered(tmp_path: Path, store: Path) -> None:
    raw = write_capsule(tmp_path / "raw", {"a.txt": "x\n"}, seal=False)
    with pytest.raises(IntegrityError, match="not sealed"):
        commit_capsule(raw.root, store=store)
    cap = write_capsule(tmp_path / "c", {"a.txt": "x\n", "b.txt": "y\n"})
    (cap.root / "a.txt").write_text("X\n")
    with pytest.raises(IntegrityError, match="modified: a.txt"):
        commit_capsule(cap.root, store=store)
    (cap.root / "a.txt").write_text("x\n")
    (cap.root / "extra.txt").write_text("new\n")
    with pytest.raises(IntegrityError, match="added: extra.txt"):
        commit_capsule(cap.root, store=store)
    (cap.root / "extra.txt").unlink()
    lock = json.loads(cap.lock_path.read_text())
    lock["files"][0]["size"] = 99
    cap.lock_path.write_text(json.dumps(lock))
    with pytest.raises(IntegrityError, match="digest does not match"):
        commit_capsule(cap.root, store=store)
    assert not store.exists() or not pygit2.Repository(str(store)).listall_references()


def test_stat_cache_reuses_blobs_but_still_catches_same_size_edits(
    cap: Capsule, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statcache_mod, "RACY_NS", 0)  # files written a moment ago count as settled
    for i in range(50):
        (cap.root / f"many/f{i}.txt").parent.mkdir(exist_ok=True)
        (cap.root / f"many/f{i}.txt").write_text(f"file {i}\n")
    Capsule.load(cap.root).seal()
    commit_capsule(cap.root, store=store)
    bump(cap.root, "1.0.1", {"many/f7.txt": "file 7 changed\n"})
    r = commit_capsule(cap.root, store=store)
    assert r.new_blobs == 2 and r.hashed == 2  # the edited file and capsule.yaml; nothing else re-read
    # same size, mtime put back: ctime still changes, so the cache does not hide it
    target = cap.root / "many/f8.txt"
    st = target.stat()
    target.write_text("file X\n")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(IntegrityError, match="modified: many/f8.txt"):
        commit_capsule(cap.root, store=store)
    assert str(open_store(store=store).head("orders")) == r.commit  # refused: the branch did not move


def test_many_new_files_go_to_a_pack_and_check_out_identically(tmp_path: Path, store: Path) -> None:
    files = {f"d{i % 7}/f{i}.txt": f"content {i}\n" * (i % 5 + 1) for i in range(120)}
    files["bin/blob.bin"] = os.urandom(3 << 20)
    files["bin/dup.bin"] = files["bin/blob.bin"]
    cap = write_capsule(tmp_path / "big", files)
    r = commit_capsule(cap.root, store=store)
    assert r.new_blobs == 123  # 122 files + capsule.yaml; the duplicate shares one blob
    assert list((store / "objects" / "pack").glob("pack-*.idx"))
    fsck(store)
    out = checkout_version(open_store(store=store), "demo", "1.0.0", tmp_path / "copy")
    assert out["verified"] and (tmp_path / "copy/bin/dup.bin").read_bytes() == files["bin/blob.bin"]


def test_tags_are_annotated_and_never_move(cap: Capsule, store: Path) -> None:
    first = commit_capsule(cap.root, store=store)
    st = open_store(store=store)
    t = tag_version(st, "orders", "1.0.0", message="release")
    assert t["created"] and t["commit"] == first.commit
    tag_obj = st.repo[st.repo.references["refs/capsules/orders/tags/1.0.0"].target]
    assert isinstance(tag_obj, pygit2.Tag) and tag_obj.message.strip() == "release"
    assert not tag_version(st, "orders", "1.0.0")["created"]
    (cap.root / "a.txt").write_text("edited without a version bump\n")
    Capsule.load(cap.root).seal()
    commit_capsule(cap.root, store=store)
    with pytest.raises(StoreError, match="never moves"):
        tag_version(st, "orders", "1.0.0")
    with pytest.raises(StoreError, match="no version 9.9.9 committed on main"):
        tag_version(st, "orders", "9.9.9")
    assert str(st.resolve("orders", "1.0.0").id) == first.commit  # the tag wins over the newer commit
    fsck(store)


def test_branches_keep_their_own_lineage(cap: Capsule, store: Path, tmp_path: Path) -> None:
    base = commit_capsule(cap.root, store=store)
    st = open_store(store=store)
    create_branch(st, "orders", "feature")
    with pytest.raises(StoreError, match="already exists"):
        create_branch(st, "orders", "feature")
    bump(cap.root, "1.1.0-rc.1", {"a.txt": "feature\n"})
    on_feature = commit_capsule(cap.root, store=store, branch="feature")
    assert on_feature.parents == [base.commit]
    assert st.head("orders", "main") == pygit2.Oid(hex=base.commit)
    assert set(st.branches("orders")) == {"main", "feature"}
    assert [e["version"] for e in log_versions(st, "orders", branch="feature")] == ["1.1.0-rc.1", "1.0.0"]
    create_branch(st, "orders", "hotfix", rev="1.0.0")
    with pytest.raises(StoreError, match="no branch 'nope'"):
        log_versions(st, "orders", branch="nope")
    with pytest.raises(StoreError, match="not a valid branch name"):
        create_branch(st, "orders", "../evil")


def test_diff_lists_files_with_stats_and_patch(cap: Capsule, store: Path) -> None:
    commit_capsule(cap.root, store=store)
    bump(cap.root, "1.1.0", {"a.txt": "one\nTWO\nthree\n", "added.txt": "new\n"})
    (cap.root / "src/app.py").unlink()
    Capsule.load(cap.root).seal()
    commit_capsule(cap.root, store=store)
    d = diff_versions(open_store(store=store), "orders", "1.0.0", "main")
    by_path = {f["path"]: f for f in d["files"]}
    assert by_path["a.txt"]["status"] == "modified" and (
        by_path["a.txt"]["additions"],
        by_path["a.txt"]["deletions"],
    ) == (1, 1)
    assert by_path["added.txt"]["status"] == "added" and by_path["src/app.py"]["status"] == "deleted"
    assert "-two\n+TWO\n" in d["patch"] and d["from"]["version"] == "1.0.0" and d["to"]["version"] == "1.1.0"
    assert "patch" not in diff_versions(open_store(store=store), "orders", "main~1", "main", patch=False)


def test_checkout_rematerialises_and_verifies(cap: Capsule, store: Path, tmp_path: Path) -> None:
    commit_capsule(cap.root, store=store)
    os.chmod(cap.root / "src/app.py", 0o755)
    bump(cap.root, "2.0.0")
    commit_capsule(cap.root, store=store)
    st = open_store(store=store)
    out = checkout_version(st, "orders", "1.0.0", tmp_path / "old")
    assert out["version"] == "1.0.0" and Capsule.load(tmp_path / "old").version == "1.0.0"
    checkout_version(st, "orders", "main", tmp_path / "new")
    assert os.stat(tmp_path / "new/src/app.py").st_mode & 0o111
    Capsule.load(tmp_path / "new").verify_integrity()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/x").write_text("x")
    with pytest.raises(Exception, match="not empty"):
        checkout_version(st, "orders", "1.0.0", tmp_path / "busy")
    with pytest.raises(StoreError, match="no version 7.7.7 on branch 'main' and no tag 7.7.7"):
        checkout_version(st, "orders", "7.7.7", tmp_path / "never")
    with pytest.raises(StoreError, match="unknown revision"):
        checkout_version(st, "orders", "nosuchbranch", tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_in_repo_store_leaves_user_branches_index_and_worktree_alone(tmp_path: Path) -> None:
    repo_dir = tmp_path / "work"
    repo_dir.mkdir()
    _git(repo_dir, "init", "-q", "-b", "trunk")
    (repo_dir / "README").write_text("user file\n")
    _git(repo_dir, "add", "README")
    _git(repo_dir, "commit", "-qm", "user commit")
    (repo_dir / "README").write_text("user edit, unstaged\n")
    (repo_dir / "staged.txt").write_text("staged\n")
    _git(repo_dir, "add", "staged.txt")
    cap = write_capsule(repo_dir / "svc", {"a.txt": "a\n"}, name="svc")
    before = {
        "head": (repo_dir / ".git/HEAD").read_bytes(),
        "index": (repo_dir / ".git/index").read_bytes(),
        "branches": _git(repo_dir, "for-each-ref", "refs/heads", "refs/tags"),
        "status": _git(repo_dir, "status", "--porcelain"),
    }
    r = commit_capsule(cap.root)
    assert r.ref == "refs/capsules/svc/heads/main"
    assert (repo_dir / ".git/HEAD").read_bytes() == before["head"]
    assert (repo_dir / ".git/index").read_bytes() == before["index"]
    assert _git(repo_dir, "for-each-ref", "refs/heads", "refs/tags") == before["branches"]
    assert _git(repo_dir, "status", "--porcelain") == before["status"]
    assert (repo_dir / "README").read_text() == "user edit, unstaged\n"
    assert _git(repo_dir, "rev-parse", "refs/capsules/svc/heads/main").strip() == r.commit
    assert latest_version(cap.root, "svc") == "1.0.0"
    fsck(repo_dir)


def test_outside_a_repository_without_store_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("QLCAPSULE_STORE", raising=False)
    cap = write_capsule(tmp_path / "lonely", {"a.txt": "a\n"})
    res = qlcapsule_cli("commit", str(cap.root))
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "not inside a git repository" in res.stderr and "--store" in res.stderr
    assert latest_version(cap.root, "demo") is None


def test_store_from_environment_and_bad_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    cap = write_capsule(tmp_path / "c", {"a.txt": "a\n"})
    monkeypatch.setenv("QLCAPSULE_STORE", str(tmp_path / "env-store"))
    res = qlcapsule_cli("commit", str(cap.root), "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["result"]["store"].startswith(str(tmp_path / "env-store"))
    res = qlcapsule_cli("log", "demo", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["result"]["versions"][0]["version"] == "1.0.0"
    (tmp_path / "file").write_text("not a repo")
    res = qlcapsule_cli("log", "demo", "--store", str(tmp_path / "file"))
    assert res.exit_code == 2 and "not a git repository" in res.stderr
    res = qlcapsule_cli("log", "nosuch", "--json")
    assert res.exit_code == 2 and "nosuch: no versions" in res.stderr


def test_notes_append_receipts(cap: Capsule, store: Path) -> None:
    first = commit_capsule(cap.root, store=store)
    add_note(cap.root, "1.0.0", {"target": "s3", "url": "s3://b/k"}, store=store)
    records = add_note(cap.root, first.commit, {"target": "local"}, store=store)
    assert [r["target"] for r in records] == ["s3", "local"]
    log = log_versions(open_store(store=store), "orders")
    assert [r["target"] for r in log[0]["notes"]] == ["s3", "local"]
    assert _git(store, "notes", "--ref", "refs/notes/qlcapsule", "show", first.commit).count('"target"') == 2
    with pytest.raises(StoreError):
        add_note(cap.root, "3.0.0", {}, store=store)


def test_latest_version_uses_semver_precedence(cap: Capsule, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QLCAPSULE_STORE", str(store))
    assert latest_version(cap.root, "orders") is None
    commit_capsule(cap.root)
    for v in ("1.10.0-rc.1", "1.9.0", "1.10.0-alpha"):
        bump(cap.root, v)
        commit_capsule(cap.root)
    assert latest_version(cap.root, "orders") == "1.10.0-rc.1"
    assert sorted(["1.0.0-rc.10", "1.0.0-rc.2", "1.0.0", "1.0.0-beta"], key=semver_key) == [
        "1.0.0-beta",
        "1.0.0-rc.2",
        "1.0.0-rc.10",
        "1.0.0",
    ]


def test_cli_commands_json_and_errors(cap: Capsule, store: Path, tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    s = ["--store", str(store)]
    assert qlcapsule_cli("commit", str(cap.root), "-m", "hello", *s).exit_code == 0
    bump(cap.root, "1.1.0", {"a.txt": "changed\n"})
    assert qlcapsule_cli("commit", str(cap.root), *s).exit_code == 0
    res = qlcapsule_cli("tag", "orders", "1.0.0", *s, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["result"]["created"] is True
    res = qlcapsule_cli("tag", "orders", "1.0.0", "--rev", "main", *s)
    assert res.exit_code == 2 and "is version 1.1.0" in res.stderr
    res = qlcapsule_cli("log", "orders", *s)
    assert "1.1.0" in res.stdout and "tag: 1.0.0" in res.stdout and "hello" in res.stdout
    res = qlcapsule_cli("diff", "orders", "1.0.0", "1.1.0", "--stat", *s)
    assert res.exit_code == 0 and "a.txt" in res.stdout and "files changed" in res.stdout and "@@" not in res.stdout
    res = qlcapsule_cli("diff", "orders", "1.0.0", "1.1.0", "--json", *s)
    assert {f["path"] for f in json.loads(res.stdout)["result"]["files"]} >= {"a.txt", "capsule.yaml", "capsule.lock"}
    res = qlcapsule_cli("branch", "orders", "exp", "--from", "1.0.0", *s, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["result"]["branch"] == "exp"
    res = qlcapsule_cli("branch", "orders", *s, "--json")
    assert set(json.loads(res.stdout)["result"]["branches"]) == {"main", "exp"}
    res = qlcapsule_cli("checkout", "orders", "1.0.0", str(tmp_path / "out"), *s, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["result"]["verified"] is True
    res = qlcapsule_cli("diff", "orders", "1.0.0", "no-such-rev", *s)
    assert res.exit_code == 2 and res.stderr.startswith("error: orders: unknown revision 'no-such-rev'")
    (cap.root / "a.txt").write_text("tampered\n")
    res = qlcapsule_cli("commit", str(cap.root), *s)
    assert res.exit_code == 1 and "modified: a.txt" in res.stderr and "Traceback" not in res.stderr


# -- the stat cache and the fast disk check -------------------------------------------


def _cache(store: Path, root: Path) -> statcache_mod.StatCache:
    return statcache_mod.StatCache.for_root(store / "qlcapsule" / "statcache", root)


def test_stat_cache_records_the_commit_and_survives_damage(
    cap: Capsule, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statcache_mod, "RACY_NS", 0)
    first = commit_capsule(cap.root, store=store)
    cache = _cache(store, cap.root)
    assert cache.commit == first.commit and set(cache.records) == {"a.txt", "capsule.yaml", "src/app.py"}
    repo = pygit2.Repository(str(store))
    for path, rec in cache.records.items():  # the recorded blob ids are the commit's
        assert rec[statcache_mod.OID] == repo[first.commit].tree[path].id.raw
        assert rec[statcache_mod.FLAGS] & statcache_mod.TRUSTED
    # an unchanged commit leaves the file alone
    assert not cache.save(dict(cache.records), first.commit, 2**62)
    bump(cap.root, "1.0.1", {"a.txt": "edited\n"})
    r = commit_capsule(cap.root, store=store)
    assert r.hashed == 2 and r.new_blobs == 2
    # a damaged cache is ignored: everything is hashed, the result is the same
    raw = bytearray(cache.file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    cache.file.write_bytes(bytes(raw))
    assert _cache(store, cap.root).records == {}
    again = commit_capsule(cap.root, store=store)
    assert not again.created and again.commit == r.commit and again.hashed == 3
    cache.file.write_bytes(b"qlcapsule-statcache")  # truncated
    assert _cache(store, cap.root).records == {}
    fsck(store)


def test_racy_files_are_hashed_on_the_next_commit(cap: Capsule, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statcache_mod, "RACY_NS", 10**18)  # as if every file had been written just now
    commit_capsule(cap.root, store=store)
    cache = _cache(store, cap.root)
    assert not any(rec[statcache_mod.FLAGS] & statcache_mod.TRUSTED for rec in cache.records.values())
    again = commit_capsule(cap.root, store=store)
    assert not again.created and again.hashed == 3  # re-read, because the cache could not vouch for them


def test_cache_of_another_commit_falls_back_to_the_parent_lock(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statcache_mod, "RACY_NS", 0)
    files = {"a.txt": "a\n", "d/b.txt": "b\n", "d/e/c.txt": "c\n", "gone.txt": "x\n"}
    one = write_capsule(tmp_path / "one", files, name="two-dirs")
    two = write_capsule(tmp_path / "two", files, name="two-dirs")
    commit_capsule(one.root, store=store)
    bump(two.root, "1.1.0", {"d/b.txt": "b from two\n"})
    from_two = commit_capsule(two.root, store=store)  # the head moves past what one's cache recorded
    (one.root / "gone.txt").unlink()
    bump(one.root, "1.2.0", {"d/e/c.txt": "c from one\n"})
    # one's base is 1.0.0 and it lacks two's d/b.txt: refused as stale unless forced (tested in test_stale_base.py)
    r = commit_capsule(one.root, store=store, force=True)
    assert r.parents == [from_two.commit]
    repo = pygit2.Repository(str(store))
    tree = repo[r.commit].tree
    got = {p: repo[tree[p].id].data for p in ("a.txt", "d/b.txt", "d/e/c.txt")}
    assert got == {"a.txt": b"a\n", "d/b.txt": b"b\n", "d/e/c.txt": b"c from one\n"}  # one's files, not two's
    assert "gone.txt" not in tree
    assert _cache(store, one.root).commit == r.commit
    checkout_version(open_store(store=store), "two-dirs", "1.2.0", tmp_path / "check")
    fsck(store)


def test_mode_change_and_unchanged_directories(tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statcache_mod, "RACY_NS", 0)
    cap = write_capsule(tmp_path / "m", {"bin/run.sh": "echo hi\n", "lib/x.py": "x\n", "lib/deep/y.py": "y\n"})
    first = commit_capsule(cap.root, store=store)
    (cap.root / "bin/run.sh").chmod(0o755)
    bump(cap.root, "1.0.1")
    r = commit_capsule(cap.root, store=store)
    repo = pygit2.Repository(str(store))
    old, new = repo[first.commit].tree, repo[r.commit].tree
    assert new["bin/run.sh"].filemode == 0o100755 and new["bin/run.sh"].id == old["bin/run.sh"].id
    assert new["lib"].id == old["lib"].id  # an unchanged directory keeps its tree object
    assert r.hashed == 2 and r.new_blobs == 1  # capsule.yaml, and run.sh (its ctime changed) read but not stored again
    fsck(store)


@pytest.mark.parametrize(
    "names",
    [
        ['quote".txt', "back space.txt", "é/ü.txt"],
        ["tab\there.txt", "a.txt"],
    ],
)
def test_fast_lock_reader_matches_lock_digest(tmp_path: Path, store: Path, names: list[str]) -> None:
    cap = write_capsule(tmp_path / "n", {n: f"{n}\n" for n in names})
    r = commit_capsule(cap.root, store=store)
    assert r.created and r.digest == json.loads(cap.lock_path.read_text())["digest"]


def test_fast_lock_reader_refuses_edited_locks(cap: Capsule, store: Path) -> None:
    lock = json.loads(cap.lock_path.read_text())
    from qlcapsule.format.lock import LockEntry, capsule_digest

    def write(files: list[dict[str, object]]) -> None:
        entries = [LockEntry(str(f["path"]), str(f["sha256"]), int(f["size"]), str(f["mode"])) for f in files]  # type: ignore[call-overload]
        cap.lock_path.write_text(json.dumps({**lock, "files": files, "digest": capsule_digest(entries)}))

    files = lock["files"]
    write(list(reversed(files)))
    with pytest.raises(DefinitionError, match="not sorted"):  # the one lock reader: bad input, as verify says
        commit_capsule(cap.root, store=store)
    write([files[0], *files])
    with pytest.raises(DefinitionError, match="not sorted by path or repeat a path"):
        commit_capsule(cap.root, store=store)
    spaced = dict(files[0], sha256=files[0]["sha256"][:62] + " 0")
    write([spaced, *files[1:]])
    with pytest.raises(DefinitionError, match="64 lowercase hex digits"):  # the precise error, not a crash
        commit_capsule(cap.root, store=store)
    write([dict(files[0], sha256=files[0]["sha256"].upper()), *files[1:]])
    with pytest.raises(DefinitionError, match="64 lowercase hex digits"):
        commit_capsule(cap.root, store=store)


def test_commit_refuses_a_symlink_like_the_walk(cap: Capsule, store: Path) -> None:
    from qlcapsule import UnsafePathError

    (cap.root / "link.txt").symlink_to(cap.root / "a.txt")
    with pytest.raises(UnsafePathError, match="link.txt: is a symlink"):
        commit_capsule(cap.root, store=store)


def test_commit_from_a_linked_worktree_writes_to_the_common_repository(tmp_path: Path) -> None:
    """Objects went into .git/worktrees/NAME/objects, so the commit's blobs were missing in the repository."""
    main = tmp_path / "main"
    subprocess.run(["git", "init", "-q", str(main)], check=True)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    subprocess.run(["git", "-C", str(main), "commit", "-q", "--allow-empty", "-m", "init"], check=True, env=env)
    linked = tmp_path / "linked"
    subprocess.run(["git", "-C", str(main), "worktree", "add", "-q", str(linked)], check=True, env=env)
    cap = write_capsule(linked / "svc", {"app.py": "print('hi')\n", "data/x.txt": "x\n"}, name="svc")
    result = commit_capsule(cap.root)
    assert result.created
    fsck = subprocess.run(["git", "-C", str(main), "fsck", "--strict", "--no-dangling"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    refs = subprocess.run(["git", "-C", str(main), "for-each-ref", "refs/capsules/"], capture_output=True, text=True)
    assert result.commit in refs.stdout
    shown = subprocess.run(
        ["git", "-C", str(main), "show", f"{result.commit}:data/x.txt"], capture_output=True, text=True
    )
    assert shown.stdout == "x\n", shown.stderr
    assert not (main / ".git" / "worktrees" / "linked" / "objects").exists()


def test_store_option_naming_a_subdirectory_of_a_repository_is_refused(tmp_path: Path) -> None:
    """libgit2 searched upwards from --store DIR, so versions went into the enclosing repository."""
    outer = tmp_path / "outer"
    pygit2.init_repository(str(outer))
    (outer / "sub").mkdir()
    (outer / "sub" / "notes.txt").write_text("not empty: an empty directory becomes a new store\n")
    cap = write_capsule(tmp_path / "svc", {"app.py": "print('hi')\n"}, name="svc")
    with pytest.raises(StoreError, match=r"sub: not a git repository but a directory inside .*outer"):
        commit_capsule(cap.root, store=outer / "sub")
    assert list(pygit2.Repository(str(outer)).references) == []


# -- a sequence of edits, each committed incrementally (stat cache on) -----------------

STEP_FILES = {f"src/pkg{i % 4}/m{i}.py": f"x = {i}\n" for i in range(24)} | {"README.md": "hello\n"}


def _edit(root: Path) -> None:
    (root / "src/pkg1/m1.py").write_text("x = 'edited'\n")


def _add_nested(root: Path) -> None:
    (root / "new/deep/dir").mkdir(parents=True)
    (root / "new/deep/dir/n.txt").write_text("new\n")


def _remove_a_whole_dir(root: Path) -> None:
    for p in (root / "src/pkg3").iterdir():
        p.unlink()
    (root / "src/pkg3").rmdir()


def _make_executable(root: Path) -> None:
    p = root / "src/pkg0/m0.py"
    p.chmod(p.stat().st_mode | 0o111)


def _rename(root: Path) -> None:
    (root / "src/pkg2/m2.py").rename(root / "src/pkg2/renamed.py")


def _copy_content(root: Path) -> None:  # content the parent already holds, under a new name
    (root / "copy.md").write_text("hello\n")


def _bump(root: Path) -> None:
    text = (root / "capsule.yaml").read_text().replace("version: 1.0.0", "version: 1.1.0")
    (root / "capsule.yaml").write_text(text)


def _sign(root: Path) -> None:
    from qlcapsule.signing.signatures import keygen, sign_capsule

    key = root.parent / "k.key"
    keygen("ed25519", str(key))
    sign_capsule(root, str(key))


def _many(root: Path) -> None:  # more new blobs than the loose-object threshold: a packfile
    (root / "bulk").mkdir()
    for i in range(40):
        (root / f"bulk/b{i}.txt").write_text(f"bulk {i}\n")


STEPS = [_edit, _add_nested, _remove_a_whole_dir, _make_executable, _rename, _copy_content, _bump, _sign, _many]


def _git_tree_of(root: Path, scratch: Path) -> str:
    """The tree git itself builds of the directory (``git add -A && git write-tree``): the expected tree."""
    env = {**os.environ, "GIT_DIR": str(scratch), "GIT_WORK_TREE": str(root), "GIT_INDEX_FILE": str(scratch / "index")}
    if not scratch.exists():
        subprocess.run(["git", "init", "-q", "--bare", str(scratch)], check=True, env={**os.environ})
    (scratch / "index").unlink(missing_ok=True)
    subprocess.run(["git", "add", "-A", "."], cwd=root, check=True, env=env, capture_output=True)
    return subprocess.run(
        ["git", "write-tree"], cwd=root, check=True, env=env, capture_output=True, text=True
    ).stdout.strip()


def test_nine_edit_steps_give_the_trees_git_builds(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each incremental commit's tree is the one git writes for the same directory; identities, lineage, reflog."""
    monkeypatch.setattr(statcache_mod, "RACY_NS", 0)  # the stat cache vouches for untouched files
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Env Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "env@example.org")
    monkeypatch.delenv("GIT_COMMITTER_NAME", raising=False)
    monkeypatch.delenv("GIT_COMMITTER_EMAIL", raising=False)
    root = write_capsule(tmp_path / "cap", STEP_FILES).root
    first = commit_capsule(root, store=store)
    with open(store / "config", "a") as f:  # the committer comes from the store's own config
        f.write("[user]\n\tname = Store Owner\n\temail = owner@example.org\n")
    repo = pygit2.Repository(str(store))
    head = first.commit
    for step in STEPS:
        step(root)
        if step is not _sign:
            Capsule.load(root).seal()
        if step is _rename:
            _git(store, "gc", "-q", "--prune=now")  # a store git has packed (objects and refs) is written as before
        r = commit_capsule(root, store=store, message=step.__name__)
        assert r.created and r.parents == [head], step.__name__
        commit = repo[r.commit]
        assert str(commit.tree_id) == _git_tree_of(root, tmp_path / "oracle.git"), step.__name__
        assert (commit.author.name, commit.author.email) == ("Env Author", "env@example.org")
        assert (commit.committer.name, commit.committer.email) == ("Store Owner", "owner@example.org")
        head = r.commit
    assert r.new_blobs > 32  # the last step wrote a packfile
    again = commit_capsule(root, store=store)
    assert not again.created and again.commit == head and again.parents == [str(p) for p in repo[head].parent_ids]
    assert len(log_versions(open_store(store=store), "demo")) == len(STEPS) + 1
    reflog = _git(store, "reflog", "show", "refs/capsules/demo/heads/main").splitlines()
    assert len(reflog) == len(STEPS) + 1 and "qlcapsule commit: demo@" in reflog[0]
    fsck(store)


@pytest.mark.parametrize("damage", ["ref", "object"])
def test_a_damaged_store_is_one_line_and_exit_2(damage: str, tmp_path: Path, store: Path) -> None:
    """libgit2's error about a damaged head is bad input, not an internal error."""
    root = write_capsule(tmp_path / "cap", STEP_FILES).root
    head = commit_capsule(root, store=store).commit
    if damage == "ref":
        (store / "refs/capsules/demo/heads/main").write_text("garbage\n")
    else:
        obj = store / "objects" / head[:2] / head[2:]
        obj.chmod(0o644)
        obj.write_bytes(b"junk")
    _edit(root)
    Capsule.load(root).seal()
    proc = subprocess.run(
        [sys.executable, "-m", "qlcapsule", "commit", str(root), "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: git store: ") and "Traceback" not in proc.stderr
