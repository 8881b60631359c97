#!/usr/bin/env python3
"""qlcapsule benchmarks, each measured against a named anchor in the same run.

    python bench/run.py                 # full run: 5,000 source files + three 100 MB binaries
    python bench/run.py --quick         # small tree, for CI to keep the harness working
    python bench/run.py --only core,export --json out.json

Prints a table (ours, anchor, ratio, target) and writes JSON
(default: bench/results/latest.json). Wall times are the best of N runs with a
warm page cache; peak RSS comes from wait4() on the measured process. Other
areas add ``bench/bench_<area>.py`` modules exposing
``run(workdir: Path, quick: bool = False) -> list[dict]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

HERE = Path(__file__).resolve().parent
AREAS = ["core", "signing", "validate", "store", "export", "deliver", "ship", "server", "pages"]


def qlcapsule_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("qlcapsule")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "qlcapsule"]


def timed(
    cmd: Sequence[str] | str,
    *,
    cwd: Path | None = None,
    repeat: int = 3,
    shell: bool = False,
    env: dict[str, str] | None = None,
    check: bool = True,
    before: Callable[[], object] | None = None,
) -> tuple[float, float]:
    """Best wall time (s) over ``repeat`` runs and the peak RSS (MB) of the measured process tree's largest child.

    ``before`` runs ahead of every run, untimed (to reset state a run changes)."""
    best, peak = float("inf"), 0.0
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=bench_env(env)
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        if check and proc.returncode != 0:
            raise RuntimeError(f"{cmd!r} exited {proc.returncode}: {err.strip()[:300]}")
        best = min(best, elapsed)
        peak = max(peak, usage.ru_maxrss / 1024)
    return best, peak


def best_of(fn: Callable[[], object], repeat: int, before: Callable[[], object] | None = None) -> float:
    """Best wall time (s) of ``fn()`` in this process over ``repeat`` runs; ``before`` runs untimed ahead of each."""
    best = float("inf")
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of measured commands: bytecode caching on, as for an installed wheel."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra or {})
    return env


def make_tree(root: Path, *, files: int = 5000, big: int = 3, big_mb: int = 100, seed: int = 1) -> Path:
    """A deterministic capsule-like tree: source files in nested dirs plus large random binaries."""
    marker = root / ".bench-tree"
    spec = f"{files}:{big}:{big_mb}:{seed}"
    if marker.exists() and marker.read_text() == spec:
        return root
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(seed)
    words = ["def", "class", "return", "import", "value", "capsule", "orders", "self", "async", "yield", "None"]
    for i in range(files):
        d = root / "src" / f"pkg{i % 50:02d}" / f"mod{(i // 50) % 10}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.choice([200, 800, 2000, 6000, 16000])
        text = " ".join(rng.choice(words) for _ in range(size // 6))
        (d / f"file{i:05d}.py").write_text(f"# file {i}\n{text}\n")
    for j in range(big):
        with open(root / f"blob{j}.bin", "wb") as f:
            brng = random.Random(seed * 100 + j)
            for _ in range(big_mb):
                f.write(brng.randbytes(1 << 20))
    (root / "capsule.yaml").write_text("name: bench\nversion: 1.0.0\n")
    marker.write_text(spec)
    return root


def row(
    name: str, ours: float, anchor: str, anchor_s: float | None, target: str, ok: bool | None = None, **extra: Any
) -> dict[str, Any]:
    ratio = (anchor_s / ours) if anchor_s and ours else None
    return {
        "name": name,
        "ours_s": round(ours, 4),
        "anchor": anchor,
        "anchor_s": round(anchor_s, 4) if anchor_s is not None else None,
        "ratio": round(ratio, 2) if ratio else None,
        "target": target,
        "ok": ok,
        **extra,
    }


def bench_core(workdir: Path, quick: bool) -> list[dict[str, Any]]:
    tree = make_tree(workdir / "tree", files=500 if quick else 5000, big=3, big_mb=5 if quick else 100)
    q = qlcapsule_cmd()
    env = {"QLCAPSULE_NO_PROGRESS": "1"}
    # Warm the page cache and take the anchor.
    anchor_cmd = "find . -type f ! -name capsule.lock ! -name .bench-tree -print0 | xargs -0 sha256sum > /dev/null"
    subprocess.run(anchor_cmd, shell=True, cwd=tree, check=True)
    anchor, anchor_rss = timed(anchor_cmd, cwd=tree, shell=True)
    # "first": no capsule.lock yet, so the lock is written (with fsync); best of 3 like every row.
    seal_s, seal_rss = timed(
        q + ["seal", str(tree)], env=env, before=lambda: (tree / "capsule.lock").unlink(missing_ok=True)
    )
    reseal_s, _ = timed(q + ["seal", str(tree)], env=env)
    verify_s, verify_rss = timed(q + ["verify", str(tree)], env=env)
    rows = [
        row(
            "seal (first) vs find|xargs sha256sum",
            seal_s,
            "sha256sum",
            anchor,
            ">= 4x faster",
            ok=anchor / seal_s >= 4,
            peak_rss_mb=round(seal_rss, 1),
        ),
        row(
            "seal (unchanged) vs find|xargs sha256sum",
            reseal_s,
            "sha256sum",
            anchor,
            ">= 4x faster",
            ok=anchor / reseal_s >= 4,
        ),
        row(
            "verify vs find|xargs sha256sum",
            verify_s,
            "sha256sum",
            anchor,
            ">= 4x faster",
            ok=anchor / verify_s >= 4,
            peak_rss_mb=round(verify_rss, 1),
        ),
        row("seal peak RSS (MB)", seal_rss, "100 MB", None, "< 100 MB", ok=seal_rss < 100),
        row("verify peak RSS (MB)", verify_rss, "100 MB", None, "< 100 MB", ok=verify_rss < 100),
    ]
    small = workdir / "small"
    if small.exists():
        shutil.rmtree(small)
    small.mkdir()
    (small / "capsule.yaml").write_text("name: small\nversion: 1.0.0\n")
    for i in range(7):
        (small / f"f{i}.py").write_text(f"print({i})\n")
    subprocess.run(q + ["seal", str(small)], check=True, capture_output=True, env=bench_env())
    subprocess.run(q + ["verify", str(small)], check=True, capture_output=True, env=bench_env())  # warm .pyc
    py_s, _ = timed([sys.executable, "-c", "pass"], repeat=5)
    v8, _ = timed(q + ["verify", str(small)], repeat=7)
    rows.append(row("verify 8-file capsule (wall)", v8, "python -c pass", py_s, "< 150 ms", ok=v8 < 0.150))
    return rows


def load_area(area: str) -> Any | None:
    path = HERE / f"bench_{area}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"bench_{area}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HERE))
    spec.loader.exec_module(mod)
    return mod


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = ["benchmark", "ours", "anchor", "anchor time", "ratio", "target", "ok"]
    body = []
    for r in rows:
        body.append(
            [
                r["name"],
                f"{r['ours_s']:.3f}s" if "RSS" not in r["name"] else f"{r.get('peak_rss_mb') or r['ours_s']:.1f} MB",
                str(r.get("anchor") or ""),
                f"{r['anchor_s']:.3f}s" if r.get("anchor_s") is not None else "",
                f"{r['ratio']:.2f}x" if r.get("ratio") else "",
                str(r.get("target") or ""),
                {True: "yes", False: "NO", None: ""}[r.get("ok")],
            ]
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small inputs (CI smoke run)")
    parser.add_argument("--only", default=",".join(AREAS), help=f"comma-separated areas ({','.join(AREAS)})")
    parser.add_argument(
        "--workdir", type=Path, default=Path(os.environ.get("QLCAPSULE_BENCH_DIR", "/tmp/qlcapsule-bench"))
    )
    parser.add_argument("--json", dest="json_out", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for area in [a.strip() for a in args.only.split(",") if a.strip()]:
        try:
            if area == "core":
                got = bench_core(args.workdir / "core", args.quick)
            else:
                mod = load_area(area)
                if mod is None:
                    print(f"(no bench/bench_{area}.py; skipped)", file=sys.stderr)
                    continue
                area_dir = args.workdir / area
                area_dir.mkdir(parents=True, exist_ok=True)
                got = mod.run(area_dir, quick=args.quick)
            for r in got:
                r.setdefault("area", area)
            rows.extend(got)
        except Exception as exc:  # noqa: BLE001  (one area failing must not hide the others' figures)
            errors.append(f"{area}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
    print_table(rows)
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "quick": args.quick,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": rows,
        "errors": errors,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json_out}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    missed = [r["name"] for r in rows if r.get("ok") is False]
    if errors or (args.strict and missed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
