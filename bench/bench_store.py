"""Version store benchmarks (issue 6), each against an anchor in the same run.

Rows:
- incremental commit, in process: one file of the bench capsule changed and
  re-sealed (not timed), then only ``commit_capsule`` is timed, warm (pygit2
  imported, stat cache written); best of 9 (target < 200 ms), ``median_s`` beside
  it. ``cpu_s`` is the best user+sys CPU of the same calls (steadier on a shared machine).
  Anchor: ``git add -A && git commit`` of the same one-file change in a plain
  git repository.
- incremental commit, CLI: the same edit, ``qlcapsule seal`` (not timed), then
  ``qlcapsule commit`` as a user runs it, a fresh process each time; best
  wall and CPU of 9 (target < 500 ms), ``median_s`` beside it. This includes interpreter start-up and
  imports (click, yaml, pygit2): ``import_floor_s`` is a process that only
  imports what the command imports, so ``ours - import_floor`` is the commit.
- first commit: ``qlcapsule commit`` (CLI) of the whole bench capsule into a new
  store vs ``git init && git add -A && git commit`` of the same tree (target:
  ratio >= 1, i.e. no slower).
- log of 1,000 versions: ``log_versions`` in process (target < 1 s); anchor
  ``git log`` of the same ref.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import bench_env, best_of, make_tree, qlcapsule_cmd, row, timed  # type: ignore[import-not-found]  # noqa: E402

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}
ENV = {"QLCAPSULE_NO_PROGRESS": "1", **GIT_ENV}


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def run(workdir: Path, quick: bool = False) -> list[dict[str, Any]]:
    from qlcapsule import Capsule
    from qlcapsule.store.versions import commit_capsule, log_versions, open_store

    os.environ.update(ENV)
    tree = make_tree(workdir / "tree", files=500 if quick else 5000, big=3, big_mb=5 if quick else 100)
    q = qlcapsule_cmd()
    subprocess.run(q + ["seal", str(tree)], check=True, capture_output=True, env={**os.environ, **ENV})
    repeat = 1 if quick else 3

    # -- first commit: CLI vs git add -A && git commit -----------------------------
    store = workdir / "store.git"
    gitcopy = workdir / "gitcopy"

    def reset() -> None:
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(gitcopy / ".git", ignore_errors=True)

    if not gitcopy.exists():
        shutil.copytree(tree, gitcopy)
    first_s = first_anchor = float("inf")
    for _ in range(repeat):
        reset()
        s, _ = timed(q + ["commit", str(tree), "--store", str(store)], env=ENV, repeat=1)
        first_s = min(first_s, s)
        a, _ = timed(
            "git init -q . && git add -A && git commit -qm bench", cwd=gitcopy, shell=True, env=GIT_ENV, repeat=1
        )
        first_anchor = min(first_anchor, a)

    # -- incremental commit: one file changed ------------------------------------------
    target = next((tree / "src").rglob("*.py"))
    target_git = gitcopy / target.relative_to(tree)
    commit_capsule(tree, store=store)  # warm: pygit2 imported, stat cache written
    incr: list[float] = []
    anchor_incr: list[float] = []
    incr_cpu: list[float] = []
    for i in range(3 if quick else 9):
        line = f"# edit {i}\n"
        with open(target, "a") as f:
            f.write(line)
        Capsule.load(tree).seal()
        cpu0, start = _cpu(), time.perf_counter()
        r = commit_capsule(tree, store=store)
        incr.append(time.perf_counter() - start)
        incr_cpu.append(_cpu() - cpu0)
        assert r.created and r.new_blobs <= 2, r
        with open(target_git, "a") as f:
            f.write(line)
        a, _ = timed("git add -A && git commit -qm edit", cwd=gitcopy, shell=True, env=GIT_ENV, repeat=1)
        anchor_incr.append(a)
    incr_s = min(incr)
    incr_anchor = min(anchor_incr)
    cli_walls, cli_cpus = _cli_incremental(q, tree, store, target, 3 if quick else 9)
    cli_wall, cli_cpu = min(cli_walls), min(cli_cpus)
    floor_s, _ = timed([sys.executable, "-c", "import qlcapsule.cli.store, qlcapsule.store.commit, pygit2"], repeat=9)

    # -- log of 1,000 versions --------------------------------------------------------------
    versions = 200 if quick else 1000
    log_store = workdir / "log-store.git"
    _history(tree, log_store, versions)
    st = open_store(store=log_store)
    log_s = best_of(lambda: log_versions(st, "bench"), 9)
    assert len(log_versions(st, "bench")) == versions
    log_anchor, _ = timed(
        ["git", "--git-dir", str(log_store), "log", "--format=%H %an %ad %s", "refs/capsules/bench/heads/main"],
        repeat=3,
    )
    cli_log, _ = timed(q + ["log", "bench", "--store", str(log_store), "--json"], env=ENV, repeat=3)

    return [
        row(
            "store: incremental commit, 1 file changed (in process, commit only)",
            incr_s,
            "git add -A && git commit",
            incr_anchor,
            "< 200 ms",
            ok=incr_s < 0.2,
            cpu_s=round(min(incr_cpu), 4),
            median_s=round(_median(incr), 4),
            files=r.files,
        ),
        row(
            "store: incremental commit, 1 file changed (CLI qlcapsule commit)",
            cli_wall,
            "git add -A && git commit",
            incr_anchor,
            "< 500 ms",
            ok=cli_wall < 0.5,
            cpu_s=round(cli_cpu, 4),
            median_s=round(_median(cli_walls), 4),
            import_floor_s=round(floor_s, 4),
        ),
        row(
            "store: first commit (CLI) vs git add -A && git commit",
            first_s,
            "git init+add -A+commit",
            first_anchor,
            "ratio >= 1 (no slower)",
            ok=first_anchor / first_s >= 1.0,
        ),
        row(
            f"store: log of {versions} versions (in process)",
            log_s,
            "git log",
            log_anchor,
            "< 1 s",
            ok=log_s < 1.0,
            cli_s=round(cli_log, 4),
        ),
    ]


def _cli_incremental(q: list[str], tree: Path, store: Path, target: Path, runs: int) -> tuple[list[float], list[float]]:
    """Wall and user+sys CPU of each ``qlcapsule commit`` after a one-file edit and ``qlcapsule seal``."""
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(runs):
        with open(target, "a") as f:
            f.write(f"# cli edit {i}\n")
        subprocess.run(q + ["seal", str(tree)], check=True, capture_output=True, env=bench_env(ENV))
        start = time.perf_counter()
        proc = subprocess.Popen(
            q + ["commit", str(tree), "--store", str(store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=bench_env(ENV),
        )
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - start)
        cpus.append(usage.ru_utime + usage.ru_stime)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"qlcapsule commit failed: {err.strip()[:300]}")
    return walls, cpus


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _history(tree: Path, store: Path, versions: int) -> None:
    """``versions`` commits of capsule 'bench' (setup, not measured): real version
    messages, parents and trees, written without per-object fsync to save time."""
    import pygit2

    from qlcapsule.store.versions import open_store, version_message

    if store.exists():
        shutil.rmtree(store)
    small = tree.parent / "small-capsule"
    shutil.rmtree(small, ignore_errors=True)
    small.mkdir()
    (small / "capsule.yaml").write_text("name: bench\nversion: 0.0.1\n")
    (small / "a.txt").write_text("a\n")
    from qlcapsule import Capsule
    from qlcapsule.store.versions import commit_capsule

    Capsule.load(small).seal()
    first = commit_capsule(small, store=store)
    pygit2.option(pygit2.GIT_OPT_ENABLE_FSYNC_GITDIR, 0)
    repo = open_store(store=store).repo
    parent = pygit2.Oid(hex=first.commit)
    tree_id = repo[parent].tree_id
    sig = pygit2.Signature("bench", "bench@example.invalid")
    for i in range(1, versions):
        msg = version_message("bench", f"0.{i // 100}.{i % 100}", first.digest, f"change {i}")
        parent = repo.create_commit(None, sig, sig, msg, tree_id, [parent])
    repo.references["refs/capsules/bench/heads/main"].set_target(parent)
    pygit2.option(pygit2.GIT_OPT_ENABLE_FSYNC_GITDIR, 1)


if __name__ == "__main__":
    import json

    out = run(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/qlcapsule-bench-store"), quick="--quick" in sys.argv
    )
    print(json.dumps(out, indent=2))
