"""Walking refuses what cannot be sealed honestly; hashing is streamed and parallel."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from qlcapsule import Capsule, InputError, UnsafePathError
from qlcapsule.globs import GlobSet
from qlcapsule.tree import CHUNK, Found, check_relative, hash_files, walk


def test_fifo_is_refused(make_capsule) -> None:
    capsule = make_capsule({"a": "a"}, seal=False)
    os.mkfifo(capsule.root / "pipe")
    with pytest.raises(UnsafePathError, match="pipe: is not a regular file"):
        capsule.seal()


def test_non_utf8_name_is_refused(make_capsule) -> None:
    capsule = make_capsule({"a": "a"}, seal=False)
    with open(os.path.join(os.fsencode(capsule.root), b"bad\xff.txt"), "wb") as f:
        f.write(b"x")
    with pytest.raises(UnsafePathError, match=r"bad\\xff.txt: file name is not valid UTF-8"):
        capsule.seal()


def test_excluded_symlinks_are_ignored(make_capsule) -> None:
    capsule = make_capsule({"a": "a"}, seal=False)
    venv = capsule.root / ".venv" / "bin"
    venv.mkdir(parents=True)
    os.symlink("/usr/bin/python3", venv / "python")
    os.symlink("/nowhere", capsule.root / "dangling.lnk")
    (capsule.root / "capsule.yaml").write_text("name: demo\nversion: 1.0.0\nexclude: ['*.lnk']\n")
    result = Capsule.load(capsule.root).seal()
    paths = [f.path for f in result.lock.files]
    assert paths == ["a", "capsule.yaml"]


def test_symlinked_directory_is_refused(make_capsule, tmp_path: Path) -> None:
    capsule = make_capsule({"a": "a"}, seal=False)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(outside, capsule.root / "linkdir")
    with pytest.raises(UnsafePathError, match="linkdir: is a symlink"):
        capsule.seal()


def test_definition_must_be_included(make_capsule) -> None:
    capsule = make_capsule({"a": "a"}, seal=False, definition="name: demo\nversion: 1.0.0\ninclude: ['a']\n")
    with pytest.raises(InputError, match="must be included"):
        capsule.seal()


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "a//b", "a\\b", "./a", ""])
def test_check_relative_refuses_escapes(bad: str) -> None:
    with pytest.raises(UnsafePathError):
        check_relative(bad)


def test_parallel_hash_matches_hashlib_and_keeps_order(tmp_path: Path) -> None:
    sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] + [100] * 40
    found = []
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        (tmp_path / f"f{i:03}").write_bytes(data)
        found.append(Found(f"f{i:03}", size, "644"))
    entries = hash_files(tmp_path, found, workers=4)
    assert [e.path for e in entries] == [f.path for f in found]
    for e in entries:
        assert e.sha256 == hashlib.sha256((tmp_path / e.path).read_bytes()).hexdigest()


def test_walk_is_sorted_by_utf8_bytes(tmp_path: Path) -> None:
    for name in ["b", "a", "Z", "é", "a-b", "d/b", "d-"]:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_text(name)
    paths = [f.path for f in walk(tmp_path, GlobSet(["**"], []))]
    assert paths == sorted(paths, key=lambda p: p.encode())
    assert paths[0] == "Z"


def test_backslash_name_is_refused(make_capsule) -> None:
    capsule = make_capsule({"a": "a"}, seal=False)
    (capsule.root / "win\\path.txt").write_text("x")
    with pytest.raises(UnsafePathError, match="contains a backslash"):
        capsule.seal()
