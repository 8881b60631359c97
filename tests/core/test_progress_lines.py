"""Progress where there is no terminal: quiet lines on stderr, nothing on stdout, nothing when switched off."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qlcapsule.testing import write_capsule


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("QLCAPSULE_NO_PROGRESS", "QLCAPSULE_PROGRESS_INTERVAL")}
    return subprocess.run(
        [sys.executable, "-m", "qlcapsule", *args], capture_output=True, text=True, env={**base, **env}, timeout=120
    )


@pytest.fixture
def big(tmp_path: Path) -> Path:
    """A capsule of a little over 3 MiB: several chunks of the export's reads."""
    root = tmp_path / "cap"
    write_capsule(root, {"blob.bin": os.urandom(3 << 20), "README.md": "# big\n"}, name="big", version="1.0.0")
    return root


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst", "zip"])
def test_a_compressed_export_reports_progress_in_ci(big: Path, tmp_path: Path, fmt: str) -> None:
    proc = _run(["export", str(big), "-f", fmt, "-o", str(tmp_path)], CI="true", QLCAPSULE_PROGRESS_INTERVAL="0")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    pattern = re.compile(rf"exporting big@1\.0\.0 as {re.escape(fmt)}: [\d.]+ (B|KiB|MiB) of 3\.0 MiB \((\d+)%\)")
    matches = [pattern.fullmatch(line) for line in lines]
    assert lines and all(matches), lines
    percents = [int(m.group(2)) for m in matches if m]
    assert percents == sorted(percents) and percents[-1] == 100
    assert proc.stdout.startswith("exported big@1.0.0")  # stdout keeps only the result


def test_progress_lines_wait_for_their_interval_and_can_be_switched_off(big: Path, tmp_path: Path) -> None:
    quiet = _run(
        ["export", str(big), "-f", "tar.gz", "-o", str(tmp_path)], CI="true", QLCAPSULE_PROGRESS_INTERVAL="3600"
    )
    assert quiet.returncode == 0 and quiet.stderr == ""  # ended before the first interval: not a line
    off = _run(
        ["export", str(big), "-f", "zip", "-o", str(tmp_path)],
        CI="true",
        QLCAPSULE_PROGRESS_INTERVAL="0",
        QLCAPSULE_NO_PROGRESS="1",
    )
    assert off.returncode == 0 and off.stderr == ""


def test_sealing_reports_bytes_without_sizing_the_work_first(big: Path) -> None:
    (big / "more.bin").write_bytes(os.urandom(2 << 20))
    proc = _run(["seal", str(big)], CI="true", QLCAPSULE_PROGRESS_INTERVAL="0")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(re.fullmatch(r"sealing big@1\.0\.0: [\d.]+ (B|KiB|MiB)", line) for line in lines), lines
