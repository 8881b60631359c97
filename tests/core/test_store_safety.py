"""Store safety under load and faults: concurrent writers and kill -9 mid-commit.

Bounded: 8 writer processes once; at most 50 kill trials within a time budget.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

from qlcapsule import Capsule
from qlcapsule.store.merge import checkout_version
from qlcapsule.store.statcache import StatCache
from qlcapsule.store.versions import commit_capsule, log_versions, open_store, parse_trailers
from qlcapsule.testing import write_capsule

CHILD = """
import sys
import pygit2  # noqa: F401  (everything is imported and warm before 'ready', so the kill lands inside the commit)
from qlcapsule import Capsule
from qlcapsule.store.versions import commit_capsule
Capsule.load(sys.argv[1])
print("ready", flush=True)
message = sys.stdin.readline().strip()
r = commit_capsule(sys.argv[1], store=sys.argv[2], message=message)
print(r.commit, flush=True)
"""

KILL_TRIALS = 50
KILL_BUDGET_S = 20.0


def _fsck(store: Path) -> None:
    out = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling", "--no-progress"], cwd=store, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "error" not in out.stderr.lower() and "missing" not in out.stdout.lower(), out.stdout + out.stderr


def _start(script: Path, root: Path, store: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), str(root), str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _ready(proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "ready", proc.communicate()[1]
    return proc


def _go(proc: subprocess.Popen[str], message: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(message + "\n")
    proc.stdin.flush()


def _set_version(root: Path, version: str) -> None:
    text = (root / "capsule.yaml").read_text()
    old = Capsule.load(root).version
    (root / "capsule.yaml").write_text(text.replace(f"version: {old}", f"version: {version}"))


def test_eight_concurrent_writers_lose_no_version(tmp_path: Path) -> None:
    """Half the writers start from a stat cache that recorded the head (its file list and blob ids), half from
    the head's capsule.lock; all race for the same branch, and every version lands in one lineage."""
    store = tmp_path / "store.git"
    base = write_capsule(tmp_path / "base", {f"f{i}.txt": f"{i}\n" for i in range(40)}, name="race")
    first = commit_capsule(base.root, store=store)
    recorded = StatCache.for_root(store / "qlcapsule" / "statcache", base.root)
    assert recorded.commit == first.commit
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    procs = []
    for n in range(8):
        root = tmp_path / f"w{n}"
        write_capsule(
            root,
            {**{f"f{i}.txt": f"{i}\n" for i in range(40)}, f"writer{n}.txt": f"writer {n}\n"},
            name="race",
            version=f"1.0.{n + 1}",
        )
        if n % 2:
            StatCache.for_root(store / "qlcapsule" / "statcache", root).save(dict(recorded.records), first.commit, 0)
        procs.append(_start(script, root, store))
    for p in procs:
        _ready(p)
    for n, p in enumerate(procs):  # release them together
        _go(p, f"writer {n}")
    commits = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        commits.append(out.strip())
    log = log_versions(open_store(store=store), "race")
    assert len(log) == 9
    assert sorted(e["version"] for e in log) == ["1.0.0"] + [f"1.0.{n}" for n in range(1, 9)]
    assert set(commits) == {e["commit"] for e in log[:-1]} and log[-1]["commit"] == first.commit
    for newer, older in zip(
        log, log[1:], strict=False
    ):  # one linear lineage: every version's parent is the previous one
        assert newer["parents"] == [older["commit"]]
    _fsck(store)


def _commit_in_fork(root: Path, store: Path, message: str) -> int:
    """Fork a child that commits (modules already warm, so the kill lands inside the commit)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            commit_capsule(root, store=store, message=message)
            code = 0
        except BaseException as exc:  # the parent asserts on the exit code; say why here
            sys.stderr.write(f"child commit failed: {type(exc).__name__}: {exc}\n")
        finally:
            os._exit(code)
    return pid


# The fork is the point: a warm child killed mid-commit. It runs only commit_capsule
# and leaves by os._exit; Python 3.12+ warns about forking a threaded process (pytest-xdist
# and the hashing pool start threads), which is harmless for this child.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_kill_9_at_random_points_leaves_store_consistent(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("QLCAPSULE_KILL_SEED", "6")))
    store = tmp_path / "store.git"
    files = {f"d{i % 5}/f{i}.txt": f"file {i}\n" for i in range(150)}
    cap = write_capsule(tmp_path / "victim", files, name="victim")
    head = pygit2.Oid(hex=commit_capsule(cap.root, store=store).commit)
    refname = "refs/capsules/victim/heads/main"
    started = time.monotonic()
    trials = killed = moved = 0
    window = 0.05  # adapts to this machine's commit time so both outcomes happen
    while trials < KILL_TRIALS and time.monotonic() - started < KILL_BUDGET_S:
        trials += 1
        version = f"1.0.{trials}"
        _set_version(cap.root, version)
        many = trials % 2 == 0  # half the trials write a packfile, half loose objects
        for i in range(150) if many else [trials % 150]:
            (cap.root / f"d{i % 5}/f{i}.txt").write_text(f"file {i} trial {trials}\n")
        Capsule.load(cap.root).seal()
        pid = _commit_in_fork(cap.root, store, f"trial {trials}")
        time.sleep(rng.uniform(0.0, window))
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            killed += 1
            window *= 1.2
        else:
            assert os.waitstatus_to_exitcode(status) == 0, f"trial {trials}: the commit failed"
            window *= 0.8
        _fsck(store)
        repo = pygit2.Repository(str(store))
        now = repo.references[refname].target
        if now != head:
            commit = repo[now]
            assert commit.parent_ids == [head], (
                f"trial {trials}: ref moved to a commit that is not a child of the old head"
            )
            assert parse_trailers(commit.message)["version"] == version
            moved += 1
            head = now
    print(f"kill trials: {trials}, killed mid-commit: {killed}, ref moved: {moved}")
    assert trials >= 10 and killed >= 1 and moved >= 1
    # the store still works: a new commit succeeds and the head checks out and verifies
    _set_version(cap.root, "9.9.9")
    Capsule.load(cap.root).seal()
    final = commit_capsule(cap.root, store=store)
    assert final.parents == [str(head)]
    checkout_version(open_store(store=store), "victim", "main", tmp_path / "check")
    _fsck(store)
