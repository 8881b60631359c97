"""The pygit2-free incremental commit writes what the full (pygit2) commit writes, and steps aside when it must."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pygit2
import pytest

from qlcapsule import Capsule, storequick
from qlcapsule.statcache import StatCache
from qlcapsule.store import CommitResult, log_versions, open_store
from qlcapsule.storecommit import commit_tree
from qlcapsule.testing import write_capsule

FILES = {f"src/pkg{i % 4}/m{i}.py": f"x = {i}\n" for i in range(24)} | {"README.md": "hello\n"}


@pytest.fixture(autouse=True)
def _own_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Identity from a global config this test writes (so both paths read the same files)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Quick Tester\n\temail = quick@example.org\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    # libgit2 read HOME when pygit2 was imported: point it at the same files
    levels = pygit2.enums.ConfigLevel
    saved = {level: pygit2.settings.search_path[level] for level in (levels.GLOBAL, levels.XDG)}
    pygit2.settings.search_path[levels.GLOBAL] = str(home)
    pygit2.settings.search_path[levels.XDG] = str(home / ".config" / "git")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", storequick.ENV_OFF):
        monkeypatch.delenv(var, raising=False)
    yield
    for level, value in saved.items():
        pygit2.settings.search_path[level] = value


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[CommitResult | None]:
    """What each try_commit returned (None: the full path took over)."""
    seen: list[CommitResult | None] = []
    real = storequick.try_commit

    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        seen.append(result)
        return result

    monkeypatch.setattr(storequick, "try_commit", wrapped)
    return seen


def _commit(
    root: Path, store: Path, *, quick: bool = True, branch: str = "main", message: str | None = None
) -> CommitResult:
    return commit_tree(root, message=message, store=store, branch=branch, rehash=False, quick=quick)


def _seal(root: Path) -> None:
    Capsule.load(root).seal()


def _fsck(store: Path) -> None:
    out = subprocess.run(
        ["git", "fsck", "--strict", "--no-progress"], cwd=store, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "error" not in out.stderr.lower() and "missing" not in out.stdout.lower(), out.stdout + out.stderr


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
    p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _rename(root: Path) -> None:
    (root / "src/pkg2/m2.py").rename(root / "src/pkg2/renamed.py")


def _copy_content(root: Path) -> None:  # content the parent already holds, under a new name
    (root / "copy.md").write_text("hello\n")


def _bump(root: Path) -> None:
    text = (root / "capsule.yaml").read_text().replace("version: 1.0.0", "version: 1.1.0")
    (root / "capsule.yaml").write_text(text)


def _sign(root: Path) -> None:
    from qlcapsule.signing import keygen, sign_capsule

    key = root.parent / "k.key"
    if not key.exists():
        keygen("ed25519", str(key))
    sign_capsule(root, str(key))


def _many(root: Path) -> None:  # more new blobs than the loose-object threshold: a packfile
    for i in range(40):
        (root / f"bulk/b{i}.txt").parent.mkdir(exist_ok=True)
        (root / f"bulk/b{i}.txt").write_text(f"bulk {i}\n")


STEPS: list[Callable[[Path], None]] = [
    _edit,
    _add_nested,
    _remove_a_whole_dir,
    _make_executable,
    _rename,
    _copy_content,
    _bump,
    _sign,
    _many,
]


def test_quick_and_full_commits_write_the_same_trees(tmp_path: Path, spy: list[CommitResult | None]) -> None:
    roots = {kind: write_capsule(tmp_path / kind / "cap", FILES).root for kind in ("quick", "full")}
    stores = {kind: tmp_path / kind / "store.git" for kind in roots}
    for kind in roots:
        _commit(roots[kind], stores[kind], quick=kind == "quick")
    assert spy == [None]  # the first commit is always the full one
    for step in STEPS:
        spy.clear()
        results = {}
        for kind in ("quick", "full"):
            if step is _sign and kind == "full":  # the same signature bytes (they hold a time)
                (roots["full"] / "capsule.sig").write_bytes((roots["quick"] / "capsule.sig").read_bytes())
            else:
                step(roots[kind])
            if step is not _sign:
                _seal(roots[kind])
            results[kind] = _commit(roots[kind], stores[kind], quick=kind == "quick", message=step.__name__)
        assert spy and spy[0] is not None, f"{step.__name__}: the quick path stepped aside"
        repos = {kind: pygit2.Repository(str(stores[kind])) for kind in roots}
        commits = {kind: repos[kind][results[kind].commit] for kind in roots}
        assert str(commits["quick"].tree_id) == str(commits["full"].tree_id), step.__name__
        assert commits["quick"].message == commits["full"].message
        for who in ("author", "committer"):
            a, b = getattr(commits["quick"], who), getattr(commits["full"], who)
            assert (a.name, a.email, a.offset) == (b.name, b.email, b.offset) == (a.name, "quick@example.org", a.offset)
        assert len(commits["quick"].parent_ids) == 1
        assert results["quick"].to_dict().keys() == results["full"].to_dict().keys()
        q, f = results["quick"].to_dict(), results["full"].to_dict()
        for key in ("capsule", "version", "digest", "branch", "ref", "created", "files", "new_blobs"):
            assert q[key] == f[key], (step.__name__, key)
    for kind in roots:
        _fsck(stores[kind])
        assert len(log_versions(open_store(store=stores[kind]), "demo")) == len(STEPS) + 1
    reflog = subprocess.run(
        ["git", "reflog", "show", "refs/capsules/demo/heads/main"],
        cwd=stores["quick"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(reflog) == len(STEPS) + 1 and "qlcapsule commit: demo@" in reflog[0]


def test_an_unchanged_capsule_is_not_committed_again(tmp_path: Path, spy: list[CommitResult | None]) -> None:
    root = write_capsule(tmp_path / "cap", FILES).root
    store = tmp_path / "store.git"
    _commit(root, store)
    _edit(root)
    _seal(root)
    second = _commit(root, store)
    again = _commit(root, store)
    assert spy[1] is not None and spy[2] is not None
    assert not again.created and again.commit == second.commit and again.parents == second.parents


def test_tampered_files_are_refused_on_the_quick_path(tmp_path: Path, spy: list[CommitResult | None]) -> None:
    from qlcapsule.errors import IntegrityError

    root = write_capsule(tmp_path / "cap", FILES).root
    store = tmp_path / "store.git"
    first = _commit(root, store)
    _edit(root)
    _seal(root)
    (root / "src/pkg1/m1.py").write_text("x = 'EDITED'\n")  # same size, not what was sealed
    with pytest.raises(IntegrityError, match="modified: src/pkg1/m1.py"):
        _commit(root, store)
    assert open_store(store=store).head("demo") == pygit2.Oid(hex=first.commit)


def _gc(store: Path) -> None:
    subprocess.run(["git", "gc", "-q", "--prune=now"], cwd=store, check=True, timeout=120)


def _pack_refs(store: Path) -> None:
    subprocess.run(["git", "pack-refs", "--all"], cwd=store, check=True, timeout=60)
    assert not (store / "refs/capsules/demo/heads/main").exists()


def _include(store: Path) -> None:
    with open(store / "config", "a") as f:
        f.write("[include]\n\tpath = other.conf\n")


@pytest.mark.parametrize(
    ("setup", "quick"),
    [
        (_gc, False),  # the head commit is packed: libgit2 reads it
        (_pack_refs, True),  # the ref is in packed-refs: read there, written loose
        (_include, False),  # config includes: libgit2 resolves them
    ],
)
def test_the_full_path_takes_over_when_it_must(
    setup: Callable[[Path], None], quick: bool, tmp_path: Path, spy: list[CommitResult | None]
) -> None:
    root = write_capsule(tmp_path / "cap", FILES).root
    store = tmp_path / "store.git"
    first = _commit(root, store)
    setup(store)
    _edit(root)
    _seal(root)
    r = _commit(root, store)
    assert (spy[-1] is not None) is quick
    assert r.created and r.parents == [first.commit]
    _fsck(store)
    assert [e["commit"] for e in log_versions(open_store(store=store), "demo")] == [r.commit, first.commit]


def _recommit(root: Path, store: Path, readme: str, branch: str = "dev") -> None:
    (root / "README.md").write_text(readme)
    _seal(root)
    _commit(root, store, branch=branch)


def test_a_new_branch_and_the_switches_step_aside(
    tmp_path: Path, spy: list[CommitResult | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_capsule(tmp_path / "cap", FILES).root
    store = tmp_path / "store.git"
    _commit(root, store)
    _recommit(root, store, "first on dev\n")  # no head on dev yet
    assert spy[-1] is None
    monkeypatch.setenv(storequick.ENV_OFF, "1")
    _recommit(root, store, "again\n")
    assert spy[-1] is None
    monkeypatch.delenv(storequick.ENV_OFF)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "home" / ".gitconfig"))
    _recommit(root, store, "third\n")
    assert spy[-1] is None
    monkeypatch.delenv("GIT_CONFIG_GLOBAL")
    _recommit(root, store, "fourth\n")
    assert spy[-1] is not None
    _fsck(store)


def test_identity_from_the_environment_and_the_store_config(
    tmp_path: Path, spy: list[CommitResult | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_capsule(tmp_path / "cap", FILES).root
    store = tmp_path / "store.git"
    _commit(root, store)
    with open(store / "config", "a") as f:
        f.write("[user]\n\tname = Store Owner\n\temail = owner@example.org\n")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Env Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "env@example.org")
    _edit(root)
    _seal(root)
    r = _commit(root, store)
    assert spy[-1] is not None
    commit = pygit2.Repository(str(store))[r.commit]
    assert (commit.author.name, commit.author.email) == ("Env Author", "env@example.org")
    assert (commit.committer.name, commit.committer.email) == ("Store Owner", "owner@example.org")


CHILD = """
import sys
from pathlib import Path
from qlcapsule.storecommit import commit_tree
print("ready", flush=True)
sys.stdin.readline()
r = commit_tree(Path(sys.argv[1]), message=None, store=sys.argv[2], branch="main", rehash=False)
print(r.commit, "pygit2" in sys.modules, flush=True)
"""


def test_eight_concurrent_quick_writers_lose_no_version(tmp_path: Path) -> None:
    """Eight processes whose stat caches all describe the head commit at once: every version lands, in one lineage."""
    store = tmp_path / "store.git"
    base = write_capsule(tmp_path / "base", FILES, name="race")
    first = _commit(base.root, store)
    recorded = StatCache.for_root(store / "qlcapsule" / "statcache", base.root)
    assert recorded.commit == first.commit
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    procs = []
    env = {k: v for k, v in os.environ.items() if k != storequick.ENV_OFF}
    for n in range(8):
        root = write_capsule(
            tmp_path / f"w{n}", {**FILES, f"writer{n}.txt": f"writer {n}\n"}, name="race", version=f"1.0.{n + 1}"
        ).root
        StatCache.for_root(store / "qlcapsule" / "statcache", root).save(dict(recorded.records), first.commit, 0)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(root), str(store)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    quick = 0
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        quick += out.split()[-1] == "False"  # committed without importing pygit2
    assert quick >= 1
    log = log_versions(open_store(store=store), "race")
    assert sorted(e["version"] for e in log) == ["1.0.0"] + [f"1.0.{n}" for n in range(1, 9)]
    for newer, older in zip(log, log[1:], strict=False):
        assert newer["parents"] == [older["commit"]]
    _fsck(store)


@pytest.mark.parametrize("damage", ["ref", "object"])
def test_a_damaged_store_is_one_line_and_exit_2(damage: str, tmp_path: Path) -> None:
    """Both paths step aside for a damaged head; libgit2's error is then bad input, not an internal error."""
    root = write_capsule(tmp_path / "cap", FILES).root
    store = tmp_path / "store.git"
    head = _commit(root, store).commit
    if damage == "ref":
        (store / "refs/capsules/demo/heads/main").write_text("garbage\n")
    else:
        obj = store / "objects" / head[:2] / head[2:]
        obj.chmod(0o644)
        obj.write_bytes(b"junk")
    _edit(root)
    _seal(root)
    proc = subprocess.run(
        [sys.executable, "-m", "qlcapsule", "commit", str(root), "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: git store: ") and "Traceback" not in proc.stderr
