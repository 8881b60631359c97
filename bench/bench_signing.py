"""Signing benchmarks: what sign and signature verification add to seal/verify.

Rows (each against an anchor measured in the same run):

- ``sign`` and ``verify --key`` on the bench capsule against a plain ``verify`` of
  the same capsule (both are integrity + startup; the difference is what signing
  adds: plugin registry, cryptography, key loading, envelope work), best of 15
  interleaved rounds. Target: < 20 ms added.
- the same work in-process with everything imported (the inherent cost of the
  signature itself, without imports).
- ``verify --key`` of an 8-file signed capsule, wall time in a subprocess
  against ``python -c pass``. Target: < 150 ms.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from run import best_of, make_tree, qlcapsule_cmd, row, timed  # type: ignore[import-not-found]

ENV = {"QLCAPSULE_NO_PROGRESS": "1"}


def _small(workdir: Path) -> Path:
    small = workdir / "signing-small"
    if small.exists():
        shutil.rmtree(small)
    small.mkdir(parents=True)
    (small / "capsule.yaml").write_text("name: small\nversion: 1.0.0\n")
    for i in range(7):
        (small / f"f{i}.py").write_text(f"print({i})\n")
    return small


def run(workdir: Path, quick: bool = False) -> list[dict[str, Any]]:
    q = qlcapsule_cmd()
    keydir = workdir / "signing-keys"
    if keydir.exists():
        shutil.rmtree(keydir)
    key = keydir / "bench.key"
    keydir.mkdir(parents=True)  # keygen writes the key file, not its folder
    subprocess.run(q + ["keygen", "-o", str(key)], check=True, capture_output=True)
    pub = str(keydir / "bench.key.pub")

    tree = make_tree(workdir / "signing-tree", files=500 if quick else 5000, big=0)
    (tree / "capsule.sig").unlink(missing_ok=True)
    subprocess.run(q + ["seal", str(tree)], check=True, capture_output=True, env=None)
    repeat = 3 if quick else 5
    # interleaved rounds, best of each: a load change during the run shifts all three alike,
    # so the differences (what signing adds, ~10 ms) are not swamped by drift between blocks
    best = {"plain": float("inf"), "sign": float("inf"), "verify": float("inf")}
    commands = {
        "plain": q + ["verify", str(tree)],
        "sign": q + ["sign", str(tree), "--key", str(key)],
        "verify": q + ["verify", str(tree), "--key", pub],
    }
    for _ in range(3 * repeat):
        for name, cmd in commands.items():
            best[name] = min(best[name], timed(cmd, env=ENV, repeat=1)[0])
    plain, sign_s, verify_s = best["plain"], best["sign"], best["verify"]

    # in-process: imports and registry already loaded, integrity excluded
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
    from qlcapsule import Capsule
    from qlcapsule.signing.signatures import load_signing_key, sign_capsule, verify_signatures

    capsule = Capsule.load(tree)
    lock = capsule.verify_integrity()
    skey = load_signing_key(key)
    verify_signatures(capsule, lock, keys=[pub])  # warm: registry, cryptography
    integrity = best_of(lambda: capsule.verify_integrity(), repeat)
    sign_inproc = best_of(lambda: sign_capsule(tree, skey), repeat) - integrity
    verify_inproc = best_of(lambda: verify_signatures(capsule, lock, keys=[pub]), repeat)

    small = _small(workdir)
    subprocess.run(q + ["seal", str(small)], check=True, capture_output=True)
    subprocess.run(q + ["sign", str(small), "--key", str(key)], check=True, capture_output=True)
    py_s, _ = timed([sys.executable, "-c", "pass"], repeat=5)
    v8_plain, _ = timed(q + ["verify", str(small)], env=ENV, repeat=7)
    v8, _ = timed(q + ["verify", str(small), "--key", pub], env=ENV, repeat=7)

    files = 500 if quick else 5000
    return [
        row(
            f"sign {files}-file capsule (subprocess) vs plain verify",
            sign_s,
            "qlcapsule verify",
            plain,
            "adds < 20 ms",
            ok=sign_s - plain < 0.020,
            added_ms=round((sign_s - plain) * 1000, 1),
        ),
        row(
            f"verify --key {files}-file signed capsule vs plain verify",
            verify_s,
            "qlcapsule verify",
            plain,
            "adds < 20 ms",
            ok=verify_s - plain < 0.020,
            added_ms=round((verify_s - plain) * 1000, 1),
        ),
        row(
            "sign in-process, imports warm (excl. integrity)",
            max(sign_inproc, 0.0),
            "integrity check",
            integrity,
            "< 20 ms",
            ok=sign_inproc < 0.020,
        ),
        row(
            "verify signatures in-process, imports warm",
            verify_inproc,
            "integrity check",
            integrity,
            "< 20 ms",
            ok=verify_inproc < 0.020,
        ),
        row(
            "verify --key 8-file signed capsule (wall)",
            v8,
            "python -c pass",
            py_s,
            "< 150 ms",
            ok=v8 < 0.150,
            plain_verify_s=round(v8_plain, 4),
        ),
    ]


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(run(Path(d), quick="--quick" in sys.argv), indent=2))
