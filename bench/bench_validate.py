"""Validation speed: one generated fastapi-service capsule, and 1,000 of them in one command.

Targets (issue 5, revised by issue 18): ``qlcapsule validate`` on the generated capsule < 400 ms wall
(a fresh process, as a user runs it) with every engine on (issue 19: zizmor, hadolint when the extra
is installed, the SchemaStore schemas, kubernetes-validate); 1,000 such capsules in one command
< 30 s, using both cores (worker processes).

Beside them, each engine alone (issue 19) on the same capsule: ``qlcapsule validate`` with every
other validator switched off in capsule.yaml (``validate.rules``), against the engine's own command
on the same file (``check-jsonschema``, ``zizmor``, ``hadolint``; the ``dockerfile`` validator has no
engine of its own, so its anchor is hadolint on the same Dockerfile). What the engine costs on top
of qlcapsule's start is the difference between its row and the ``dockerfile`` row.

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

import json
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


def _best(
    cmd: Sequence[str], *, cwd: Path, repeat: int, ok_codes: Sequence[int] = (0,), stdin: bytes | None = None
) -> float:
    # warm-up (bytecode, page cache)
    subprocess.run(cmd, cwd=cwd, env=_env(), input=stdin, capture_output=True, check=False)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=_env(), input=stdin, capture_output=True, check=False)
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


#: each engine alone: the validators it is, and its own command on the capsule's files (the anchor)
_ENGINES: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "schema": (
        ("github-workflow", "compose"),
        ["check-jsonschema", "--builtin-schema", "vendor.github-workflows", ".github/workflows/ci.yml"],
    ),
    "zizmor": (
        ("zizmor",),
        ["zizmor", "--offline", "--no-config", "--no-exit-codes", "--no-progress", "--format", "json-v1", "-"],
    ),
    "hadolint": (("hadolint",), ["hadolint", "--no-fail", "-"]),
    "dockerfile": (("dockerfile",), ["hadolint", "--no-fail", "-"]),
}
_STDIN = {"zizmor": ".github/workflows/ci.yml", "hadolint": "Dockerfile", "dockerfile": "Dockerfile"}


def _engines_present(q: Sequence[str], cwd: Path) -> list[str]:
    out = subprocess.run([*q, "validate", "--engines", "--json"], cwd=cwd, env=_env(), capture_output=True).stdout
    return sorted(e["engine"] for e in json.loads(out)["result"] if e["present"])


def _validator_names(q: Sequence[str], cwd: Path) -> list[str]:
    out = subprocess.run([*q, "plugins", "--json"], cwd=cwd, env=_env(), capture_output=True, check=True).stdout
    plugins = json.loads(out)["result"]
    return sorted(c["name"] for p in plugins for c in p["components"] if c["kind"] == "validator")


def _engine_rows(root: Path, q: Sequence[str], repeat: int) -> list[dict[str, Any]]:
    names = _validator_names(q, root)
    rows: list[dict[str, Any]] = []
    for engine, (validators, anchor_cmd) in _ENGINES.items():
        alone = root / f"alone-{engine}"
        shutil.copytree(root / "orders", alone)
        off = "".join(f"    {n}: false\n" for n in names if n not in validators and n != "schema")
        with (alone / "capsule.yaml").open("a") as f:
            f.write(f"validate:\n  fail_on: never\n  rules:\n{off}")
        ours = _best([*q, "validate", alone.name], cwd=root, repeat=repeat)
        exe = Path(sys.executable).with_name(anchor_cmd[0])
        anchor = None
        if exe.exists():
            cmd = [str(exe), *anchor_cmd[1:]]
            stdin = (alone / _STDIN[engine]).read_bytes() if engine in _STDIN else None
            anchor = _best(cmd, cwd=alone, repeat=repeat, stdin=stdin)
        rows.append(
            {
                "name": f"validate one capsule, {engine} alone (process wall)",
                "ours_s": round(ours, 4),
                "anchor": f"{anchor_cmd[0]} on the same file" if anchor is not None else f"{anchor_cmd[0]} missing",
                "anchor_s": round(anchor, 4) if anchor is not None else None,
                "ratio": round(ours / anchor, 2) if anchor else None,
                "target": "(no target: where the time goes)",
                "ok": None,
            }
        )
        shutil.rmtree(alone, ignore_errors=True)
    return rows


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
            "name": "validate one fastapi-service capsule, every engine on (process wall)",
            "ours_s": round(ours, 4),
            "anchor": "check-jsonschema on its one workflow file",
            "anchor_s": round(anchor, 4) if anchor else None,
            "ratio": round(ours / anchor, 2) if anchor else None,
            "target": "< 0.400 s",
            "ok": ours < 0.400,
            "engines": _engines_present(q, root),
        }
    )
    rows.extend(_engine_rows(root, q, repeat=3 if quick else 7))

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
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for row in run(Path(tmp), quick="--quick" in sys.argv):
            print(json.dumps(row))
