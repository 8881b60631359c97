"""The catalog's ``catalog sync`` rows: index a version store of 1,000 capsule versions, then again with nothing new.

The store is built first with qlcapsule's own functions, the ones ``seal``, ``sign`` and ``commit`` run
(``Capsule.seal``, ``sign_capsule``, ``commit_capsule``): 20 capsules (quick: 4) in one bare repository, each
committed 50 times (quick: 10), every version a changed file and a bumped version, signed with the key the
server trusts. Building it is timed apart (``setup_s``) and not counted. Then ``qlcapsule catalog sync`` (the
CLI, a process of its own) runs against process A of bench_server.py's PostgreSQL pair:

- full sync: every version published through ``POST /api/v1/publish`` (the server verifies each signature).
  Target (issue 20): < 10 s. Anchor: ``git log --all`` over the same repository (reading every commit).
- re-sync with nothing new: the server's per-ref record says every head is indexed. Target: < 1 s. Anchor:
  ``git for-each-ref`` (listing the refs, the least a re-sync has to do).

The catalog's version count of the synced capsules is checked afterwards, so a sync that skipped versions
cannot pass.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench_server import Serve  # type: ignore[import-not-found]
from run import qlcapsule_cmd, row, timed  # type: ignore[import-not-found]

GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def build_store(folder: Path, key_path: Path, capsules: int, versions: int) -> Path:
    """A bare version store with ``capsules`` x ``versions`` signed versions (refs/capsules/syncN/heads/main)."""
    from qlcapsule import Capsule
    from qlcapsule.signing.signatures import load_signing_key, sign_capsule
    from qlcapsule.store.versions import commit_capsule

    shutil.rmtree(folder, ignore_errors=True)
    store = folder / "store.git"
    key = load_signing_key(key_path)
    roots = [folder / "capsules" / f"sync{c}" for c in range(capsules)]
    for root in roots:
        (root / "lib").mkdir(parents=True)
        (root / "lib" / "shared.py").write_text("def shared():\n    return 42\n")
    for v in range(versions):
        for c, root in enumerate(roots):
            (root / "capsule.yaml").write_text(f"name: sync{c}\nversion: 1.{v}.0\n")
            (root / "app.py").write_text(f"print('sync{c}', {v})\n")
            Capsule.load(root).seal()
            sign_capsule(root, key)
            assert commit_capsule(root, store=store).created
    return store


def _total(server: Serve, secret: str, capsules: int) -> int:
    total = 0
    for c in range(capsules):
        req = urllib.request.Request(
            f"{server.url}/api/v1/capsules/sync{c}/versions?limit=1", headers={"Authorization": f"Bearer {secret}"}
        )
        with urllib.request.urlopen(req, timeout=60) as answer:
            total += int(json.loads(answer.read())["total"])
    return total


def sync_rows(folder: Path, server: Serve, secret: str, key_path: Path, quick: bool) -> list[dict[str, Any]]:
    capsules, versions = (4, 10) if quick else (20, 50)
    count = capsules * versions
    start = time.perf_counter()
    store = build_store(folder, key_path, capsules, versions)
    setup_s = time.perf_counter() - start
    env = {"QLCAPSULE_NO_PROGRESS": "1", "QLCAPSULE_BENCH_TOKEN": secret}
    sync = qlcapsule_cmd() + ["catalog", "sync", "--url", server.url, "--token-env", "QLCAPSULE_BENCH_TOKEN"]
    cpu = server.cpu_s()
    full_s, full_rss = timed([*sync, str(store)], env=env, repeat=1)
    cpu_ms = (server.cpu_s() - cpu) * 1000 / count
    synced = _total(server, secret, capsules)
    if synced != count:
        raise RuntimeError(f"catalog sync indexed {synced} of {count} versions")
    again_s, _ = timed([*sync, str(store)], env=env, repeat=3)
    git = ["git", f"--git-dir={store}"]
    log_s, _ = timed([*git, "log", "--all", "--format=%H %P %an"], env={**os.environ, **GIT_ENV}, repeat=3)
    refs_s, _ = timed([*git, "for-each-ref"], env={**os.environ, **GIT_ENV}, repeat=3)
    return [
        row(
            f"catalog sync, {count:,} versions in {capsules} capsules (PostgreSQL)",
            full_s,
            "git log --all",
            log_s,
            "< 10 s",
            ok=full_s < 10,
            setup_s=round(setup_s, 1),
            client_peak_rss_mb=round(full_rss, 1),
            server_cpu_ms=round(cpu_ms, 2),
        ),
        row(
            f"catalog re-sync, nothing new, {count:,} versions (PostgreSQL)",
            again_s,
            "git for-each-ref",
            refs_s,
            "< 1 s",
            ok=again_s < 1,
        ),
    ]
