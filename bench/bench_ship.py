"""Hooks on a big repository, and ``ship`` of a generated service.

Rows (best of N wall times of the whole command, interpreter start-up included):

- ``hook validate, 200 capsules, 1 changed``: what pre-commit runs for a commit
  touching one capsule of 200 (target < 1 s). Anchor: the same hook over every
  capsule (``--all``), i.e. what a tool without the file-to-capsule mapping does.
- ``hook verify, 200 capsules, 1 changed``: the same for the verify hook
  (target < 1 s); anchor ``git diff --cached --name-only``, the floor any git
  hook pays to learn what changed. It has no Python start-up, so the ratio is
  large by construction; the target is what matters.
- ``ship fastapi-service``: ``qlcapsule ship`` of a freshly generated
  fastapi-service capsule (validate, seal, sign, commit, export, deliver).
  Anchor ``tar czf`` of the same directory. Figure only (no target).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CAPSULE_FILES = {
    "app/main.py": "from fastapi import FastAPI\n\napp = FastAPI()\n\n\n@app.get('/health')\ndef health():\n    return {'ok': True}\n",
    "app/__init__.py": "",
    "tests/test_main.py": "def test_ok():\n    assert True\n",
    "requirements.txt": "fastapi==0.110.0\nuvicorn==0.29.0\n",
    "config.yaml": "port: 8080\nworkers: 2\n",
    "README.md": "# service\n",
}


def _qlcapsule() -> str:
    exe = Path(sys.executable).with_name("qlcapsule")
    return str(exe) if exe.exists() else "qlcapsule"


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        QLCAPSULE_HOME=str(home),
        CI="1",
        QLCAPSULE_NO_PROGRESS="1",
        GIT_AUTHOR_NAME="b",
        GIT_AUTHOR_EMAIL="b@example.com",
        GIT_COMMITTER_NAME="b",
        GIT_COMMITTER_EMAIL="b@example.com",
    )
    env.pop("QLCAPSULE_STORE", None)
    return env


def _best(
    cmd: list[str] | str, cwd: Path, env: dict[str, str], repeat: int, *, ok_codes: tuple[int, ...] = (0,)
) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, shell=isinstance(cmd, str), timeout=900)
        elapsed = time.perf_counter() - start
        if proc.returncode not in ok_codes:
            raise RuntimeError(f"{cmd!r} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-400:]}")
        best = min(best, elapsed)
    return best


def _repo(root: Path, n: int, env: dict[str, str]) -> Path:
    """A git repository with ``n`` sealed capsules, all committed; one file then edited and staged."""
    from qlcapsule.testing import write_capsule

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    for i in range(n):
        write_capsule(
            root / "capsules" / f"svc{i:03d}",
            CAPSULE_FILES,
            definition=f"name: svc{i:03d}\nversion: 1.0.{i}\ndescription: bench\nlicense: Apache-2.0\n",
        )
    subprocess.run(["git", "add", "."], cwd=root, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "capsules"], cwd=root, check=True, env=env)
    changed = root / "capsules" / "svc007" / "app" / "main.py"
    changed.write_text(changed.read_text() + "# edited\n")
    subprocess.run([_qlcapsule(), "seal", str(changed.parents[1])], check=True, env=env, capture_output=True)
    subprocess.run(["git", "add", "."], cwd=root, check=True, env=env)
    return root


def run(workdir: Path, quick: bool = False) -> list[dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    env = _env(workdir / "home")
    repeat = 1 if quick else 5
    n = 50 if quick else 200
    repo = _repo(workdir / "hooks-repo", n, env)
    q = _qlcapsule()
    changed = "capsules/svc007/app/main.py"
    rows = []

    ours = _best([q, "hook", "validate", "--", changed, "capsules/svc007/capsule.lock"], repo, env, repeat)
    anchor = _best([q, "hook", "validate", "--all", "--"], repo, env, 1)
    rows.append(
        {
            "name": f"hook validate, {n} capsules, 1 changed",
            "ours_s": round(ours, 3),
            "anchor": f"hook validate --all ({n} capsules)",
            "anchor_s": round(anchor, 3),
            "ratio": round(ours / anchor, 3),
            "target": "< 1 s",
            "ok": ours < 1.0,
        }
    )

    ours = _best([q, "hook", "verify", "--", changed, "capsules/svc007/capsule.lock"], repo, env, repeat)
    anchor = _best(["git", "diff", "--cached", "--name-only"], repo, env, repeat)
    rows.append(
        {
            "name": f"hook verify, {n} capsules, 1 changed",
            "ours_s": round(ours, 3),
            "anchor": "git diff --cached --name-only",
            "anchor_s": round(anchor, 3),
            "ratio": round(ours / anchor, 3),
            "target": "< 1 s",
            "ok": ours < 1.0,
        }
    )

    ship_dir = workdir / "ship"
    if ship_dir.exists():
        shutil.rmtree(ship_dir)
    ship_dir.mkdir()
    ship_env = {**env, "GIT_CEILING_DIRECTORIES": str(workdir)}
    subprocess.run(
        [q, "new", "fastapi-service", "orders", "--no-input"],
        cwd=ship_dir,
        env=ship_env,
        check=True,
        capture_output=True,
    )
    ship_s = _best(f"rm -rf dist .qlcapsule && {q} ship orders -q", ship_dir, ship_env, 1 if quick else 3)
    tar_s = _best("tar czf /dev/null orders", ship_dir, ship_env, repeat)
    rows.append(
        {
            "name": "ship generated fastapi-service",
            "ours_s": round(ship_s, 3),
            "anchor": "tar czf",
            "anchor_s": round(tar_s, 3),
            "ratio": round(ship_s / tar_s, 3),
            "target": "figure only",
        }
    )
    return rows


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for row in run(Path(d), quick="--quick" in sys.argv):
            print(json.dumps(row))
