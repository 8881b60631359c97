"""Shared by the release-loop tests: a working directory outside any git repository, and snapshots
of directories (every path with its bytes' SHA-256 and its mode) to prove that nothing was written."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

Snapshot = dict[str, tuple[str, int]]


def snapshot(*dirs: Path) -> Snapshot:
    """Every entry under ``dirs``: path -> (sha256 of a file's bytes, a link's target or "dir", mode)."""
    out: Snapshot = {}
    for top in dirs:
        if not top.exists():
            out[str(top)] = ("absent", 0)
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in [*dirnames, *sorted(filenames)]:
                p = Path(dirpath) / name
                st = p.lstat()
                if stat.S_ISLNK(st.st_mode):
                    what = "link:" + os.readlink(p)
                elif stat.S_ISDIR(st.st_mode):
                    what = "dir"
                else:
                    what = hashlib.sha256(p.read_bytes()).hexdigest()
                out[str(p)] = (what, st.st_mode)
    return out


@pytest.fixture
def snap() -> Callable[..., Snapshot]:
    return snapshot


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory outside any git repository (the default store goes beside the capsule)."""
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.chdir(d)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("QLCAPSULE_STORE", raising=False)
    monkeypatch.delenv("QLCAPSULE_SIGNING_KEY", raising=False)
    return d
