"""Export benchmarks on the bench capsule (5,000 source files + three 100 MB random binaries).

Rows, each against an anchor run on the same tree in the same run (page cache warm):

- ``qlcapsule export -f tar -o - | cat`` vs ``tar cf - . | cat``: target <= 1.5x the anchor's time.
  Ours includes process start-up, verifying every file against the lock (each
  file hashed as it is read into the archive) and the archive's own SHA-256;
  tar does none of that.
  The row also gives one SHA-256 pass over the payload (in process, OpenSSL):
  it alone is about 0.9x the anchor's whole time on the 2-core CI machine, so
  an export that both verifies and digests cannot reach 1.5x there.
- the same export vs the same work done with the anchor tools
  (``sha256sum -c`` of the lock, ``tar cf -``, ``sha256sum`` of the archive); figure only.
- ``qlcapsule export -f zip -o FILE`` vs ``zip -qr FILE .``: target faster. Info-ZIP
  deflates the random binaries; we store them (trial compression) and deflate the
  sources on every core.
- ``qlcapsule export -f tar.zst -o - | cat`` vs ``tar cf - . | zstd -3 | cat``: target <= 1.5x.
- peak RSS of each streaming export (``-o -``): target < 100 MB.

``quick=True`` uses 500 files and three 5 MB binaries.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from run import make_tree, qlcapsule_cmd, row, timed  # type: ignore[import-not-found]

ENV = {"QLCAPSULE_NO_PROGRESS": "1"}


def run(workdir: Path, quick: bool = False) -> list[dict[str, Any]]:
    tree = make_tree(workdir / "tree", files=500 if quick else 5000, big=3, big_mb=5 if quick else 100)
    out = workdir / "export-out"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    q = qlcapsule_cmd()
    subprocess.run(q + ["seal", str(tree)], check=True, capture_output=True, env=None)
    qs = " ".join(shlex.quote(p) for p in q)
    t = shlex.quote(str(tree))
    repeat = 2 if quick else 7  # best of 7: the shared 2-core VM is noisy
    # warm the page cache
    subprocess.run("tar cf - . > /dev/null", shell=True, cwd=tree, check=True)

    rows: list[dict[str, Any]] = []
    rss: dict[str, float] = {}

    ours, rss["tar"] = timed(f"{qs} export {t} -f tar -o - | cat > /dev/null", shell=True, repeat=repeat, env=ENV)
    anchor, _ = timed("tar cf - . | cat > /dev/null", cwd=tree, shell=True, repeat=repeat)
    one_pass = _sha256_pass(tree)
    rows.append(
        row(
            "export tar -o - (pipe)",
            ours,
            "tar cf - | cat",
            anchor,
            "<= 1.5x anchor",
            ok=ours <= 1.5 * anchor,
            sha256_one_pass_s=round(one_pass, 4),
            sha256_one_pass_vs_anchor=round(one_pass / anchor, 2),
        )
    )
    # The same work done with the anchor tools: check every file against the lock, archive, digest the archive.
    sums = out / "SHA256SUMS"
    sums.write_text("".join(f"{e['sha256']}  {e['path']}\n" for e in _lock_files(tree)))
    same = (
        f"sha256sum --quiet --strict -c {shlex.quote(str(sums))} && "
        "tar cf - . | tee >(sha256sum > /dev/null) | cat > /dev/null"
    )
    same_s, _ = timed(["bash", "-c", same], cwd=tree, repeat=repeat)
    rows.append(
        row(
            "export tar -o - vs the same work (sha256sum -c + tar + sha256sum of the archive)",
            ours,
            "sha256sum -c && tar cf - | tee >(sha256sum) | cat",
            same_s,
            "figure only",
        )
    )

    # the same export in-process, without interpreter start-up and plugin loading
    inproc, check_s = _in_process(tree)
    rows.append(
        row(
            "export tar in-process (pipe, incl. verification)",
            inproc,
            "tar cf - | cat",
            anchor,
            "<= 1.5x anchor",
            ok=inproc <= 1.5 * anchor,
            checks_before_first_byte_s=round(check_s, 3),
        )
    )

    zip_ours = out / "ours.zip"
    zip_anchor = out / "anchor.zip"
    ours, _ = timed(q + ["export", str(tree), "-f", "zip", "-o", str(zip_ours)], repeat=repeat, env=ENV)
    if shutil.which("zip"):
        anchor, _ = timed(
            f"rm -f {shlex.quote(str(zip_anchor))}; zip -qr {shlex.quote(str(zip_anchor))} .",
            cwd=tree,
            shell=True,
            repeat=1,
        )
        rows.append(
            row(
                "export zip -o FILE",
                ours,
                "zip -qr",
                anchor,
                "faster than anchor",
                ok=ours < anchor,
                size_mb=round(zip_ours.stat().st_size / 1e6, 1),
                anchor_size_mb=round(zip_anchor.stat().st_size / 1e6, 1),
            )
        )
    else:
        rows.append(row("export zip -o FILE", ours, "zip -qr (not installed)", None, "faster than anchor"))
    _, rss["zip"] = timed(f"{qs} export {t} -f zip -o - | cat > /dev/null", shell=True, repeat=1, env=ENV)

    ours, rss["tar.zst"] = timed(
        f"{qs} export {t} -f tar.zst -o - | cat > /dev/null", shell=True, repeat=repeat, env=ENV
    )
    if shutil.which("zstd"):
        anchor, _ = timed("tar cf - . | zstd -3 -q -c | cat > /dev/null", cwd=tree, shell=True, repeat=repeat)
        rows.append(
            row(
                "export tar.zst -o - (pipe)",
                ours,
                "tar cf - | zstd -3",
                anchor,
                "<= 1.5x anchor",
                ok=ours <= 1.5 * anchor,
            )
        )
    else:
        rows.append(row("export tar.zst -o - (pipe)", ours, "zstd (not installed)", None, "<= 1.5x anchor"))

    for fmt, peak in rss.items():
        rows.append(
            row(
                f"peak RSS, streaming {fmt} export",
                0.0,
                "-",
                None,
                "< 100 MB",
                ok=peak < 100,
                peak_rss_mb=round(peak, 1),
            )
        )
    return rows


def _lock_files(tree: Path) -> list[dict[str, Any]]:
    import json

    files: list[dict[str, Any]] = json.loads((tree / "capsule.lock").read_text())["files"]
    return files


def _sha256_pass(tree: Path) -> float:
    """Best time of one SHA-256 pass over every payload file, in process (OpenSSL through hashlib).

    Any export that prints the archive's digest pays at least this; ours pays it
    twice (each file against the lock, and the archive), on two threads.
    """
    import hashlib
    import time

    paths = [tree / e["path"] for e in _lock_files(tree)]
    buf = bytearray(1 << 20)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for path in paths:
            h = hashlib.sha256()
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    h.update(memoryview(buf)[:n])
        best = min(best, time.perf_counter() - start)
    return best


def _in_process(tree: Path) -> tuple[float, float]:
    """Best time of export_capsule(tar, "-") into a pipe drained by cat, and of the checks before its first byte.

    The export verifies each file as it reads it; what it checks before writing
    (lock, identity, the set of files) is timed alone as the second figure.
    """
    import time

    from qlcapsule import Capsule, PayloadReader
    from qlcapsule.steps.exporting import export_capsule

    best, check = float("inf"), float("inf")
    for _ in range(3):
        cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        start = time.perf_counter()
        export_capsule(tree, "tar", "-", stdout=cat.stdin)  # type: ignore[arg-type]
        cat.stdin.close()  # type: ignore[union-attr]
        cat.wait()
        best = min(best, time.perf_counter() - start)
        start = time.perf_counter()
        PayloadReader(Capsule.load(tree, strict=False)).close()
        check = min(check, time.perf_counter() - start)
    return best, check


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(prefix="bench-export-") as d:
        print(json.dumps(run(Path(d), quick=quick), indent=2))
