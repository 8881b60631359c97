"""Validation speed: one generated fastapi-service capsule, and 1,000 of them in one command.

Targets (issue 5, revised by issue 18): ``qlcapsule validate`` on the generated capsule < 400 ms wall
(a fresh process, as a user runs it); 1,000 such capsules in one command < 30 s,
using both cores (worker processes).

Anchors, run on the same files in the same run:

- single: ``check-jsonschema --builtin-schema vendor.github-workflows`` on the
  capsule's one workflow file (a single-purpose validator of one file);
- many: a Python process that ``yaml.safe_load``s every YAML file of the 1,000
  capsules (PyYAML with libyaml when available) — parsing only, no checks.

Bytecode caching is allowed for the measured processes (an installed wheel has
its ``.pyc`` files); ``PYTHONDONTWRITEBYTECODE`` is dropped from their
environment and one warm-up run precedes the timed ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent


def _qlcapsule() -> list[str]:
    exe = Path(sys.executable).with_name("qlcapsule")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "qlcapsule"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["QLCAPSULE_NO_PROGRESS"] = "1"
    return env


def _best(cmd: Sequence[str], *, cwd: Path, repeat: int, ok_codes: Sequence[int] = (0,)) -> float:
    subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, check=False)  # warm-up (bytecode, page cache)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode not in ok_codes:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
        best = min(best, elapsed)
    return best


def _cpu_of_children(cmd: Sequence[str], cwd: Path) -> tuple[float, float]:
    """Wall time and CPU time (user+sys, all children) of one run."""
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu


def run(workdir: Path, quick: bool = False) -> list[dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "validate"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    q = _qlcapsule()
    subprocess.run(
        [*q, "new", "fastapi-service", "orders", "--no-input"], cwd=root, env=_env(), check=True, capture_output=True
    )
    rows: list[dict[str, Any]] = []

    ours = _best([*q, "validate", "orders"], cwd=root, repeat=3 if quick else 7)
    checker = Path(sys.executable).with_name("check-jsonschema")
    anchor_cmd = [str(checker), "--builtin-schema", "vendor.github-workflows", "orders/.github/workflows/ci.yml"]
    anchor = _best(anchor_cmd, cwd=root, repeat=3 if quick else 7) if checker.exists() else None
    rows.append(
        {
            "name": "validate one fastapi-service capsule (process wall)",
            "ours_s": round(ours, 4),
            "anchor": "check-jsonschema on its one workflow file",
            "anchor_s": round(anchor, 4) if anchor else None,
            "ratio": round(ours / anchor, 2) if anchor else None,
            "target": "< 0.400 s",
            "ok": ours < 0.400,
        }
    )

    count = 100 if quick else 1000
    many = root / "many"
    many.mkdir()
    for i in range(count):
        shutil.copytree(root / "orders", many / f"svc{i:04d}")
    dirs = sorted(str(p.relative_to(root)) for p in many.iterdir())
    subprocess.run([*q, "validate", *dirs[:4]], cwd=root, env=_env(), capture_output=True, check=False)  # warm-up
    wall, cpu = _cpu_of_children([*q, "validate", "--format", "json", *dirs], cwd=root)
    yaml_files = sorted(str(p) for p in many.rglob("*.y*ml"))
    script = (
        "import sys, yaml\n"
        "L = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)\n"
        "for p in sys.argv[1:]:\n"
        "    list(yaml.load_all(open(p, 'rb').read(), Loader=L))\n"
    )
    anchor_many = _best([sys.executable, "-c", script, *yaml_files], cwd=root, repeat=1 if quick else 3)
    rows.append(
        {
            "name": f"validate {count} capsules in one command",
            "ours_s": round(wall, 3),
            "anchor": f"PyYAML load of their {len(yaml_files)} YAML files (parse only, one core)",
            "anchor_s": round(anchor_many, 3),
            "ratio": round(wall / anchor_many, 2),
            "target": "< 30 s for 1,000, both cores",
            "ok": wall < 30.0 * count / 1000,
            "cpu_s": round(cpu, 3),
            "cores_used": round(cpu / wall, 2),
        }
    )
    shutil.rmtree(many, ignore_errors=True)
    return rows


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for row in run(Path(tmp), quick="--quick" in sys.argv):
            print(json.dumps(row))
