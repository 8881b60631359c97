"""Every exporter is on the one integrity path: a file changed after sealing fails the export, nothing is left.

The core hands each exporter a ``qlcapsule.PayloadReader`` and verifies every
locked file before the export is committed, whether the exporter carries the
files (tar, zip, docker, oci) or only generates files (helm, terraform, the
third-party example). Each case changes one file after sealing, keeping its
size, so only the digest can tell.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "qlcapsule-example-exporter" / "src"
BIG = 3 << 20  # past the 1 MiB read size: the large-file paths too

FORMATS = [
    "tar",
    "tar.gz",
    "tar.zst",
    "zip",
    "helm",
    "terraform",
    "terraform-dir",
    "docker",
    "oci",
    "oci-dir",
    "manifest.json",
]


@pytest.fixture
def example_registered(monkeypatch, qlcapsule_plugin):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import qlcapsule_example_exporter

    qlcapsule_plugin(qlcapsule_example_exporter, "example-manifest")
    yield
    sys.modules.pop("qlcapsule_example_exporter", None)


@pytest.mark.parametrize("tampered", ["b.txt", "big.bin"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_changed_after_sealing_fails_the_export_and_leaves_nothing(
    make_capsule, qlcapsule_cli, example_registered, tmp_path, fmt, tampered
) -> None:
    capsule = make_capsule({"a.txt": "a\n", "b.txt": "b\n", "big.bin": os.urandom(BIG)})
    out = tmp_path / "out"
    out.mkdir()
    ok = qlcapsule_cli("export", str(capsule.root), "-f", fmt, "-o", str(out))
    assert ok.exit_code == 0, ok.output  # the untouched capsule exports
    clean = sorted(p.name for p in out.iterdir())
    with open(capsule.root / tampered, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))  # same size, always a different byte (random data may end in b"X")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    res = qlcapsule_cli("export", str(capsule.root), "-f", fmt, "-o", str(fresh))
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith("error: ") and f"modified: {tampered}" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert list(fresh.iterdir()) == []  # no output file, no sidecar, no temp file
    assert sorted(p.name for p in out.iterdir()) == clean
