"""Walking refuses what cannot be sealed honestly; hashing is streamed and parallel."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from qlcapsule import Capsule, InputError, IntegrityError, UnsafePathError
from qlcapsule.format.globs import GlobSet
from qlcapsule.format.tree import CHUNK, Found, check_relative, hash_files, walk


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


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _big_tree(root: Path) -> None:
    (root / "d").mkdir()
    (root / "big0.bin").write_bytes(os.urandom(3 * CHUNK + 5))
    (root / "d" / "big1.bin").write_bytes(os.urandom(2 * CHUNK + 1))
    for i in range(40):
        (root / "d" / f"s{i}.txt").write_text(f"small {i}\n" * i)


def test_scan_matches_walk_then_hash(tmp_path: Path) -> None:
    from qlcapsule.format.tree import scan

    _big_tree(tmp_path)
    globs = GlobSet(["**"], [])
    expected = hash_files(tmp_path, walk(tmp_path, globs, stat_files=False), workers=3)
    got = scan(tmp_path, globs, workers=3)
    assert got == expected
    assert [e.path for e in got] == sorted((e.path for e in got), key=lambda p: p.encode())
    assert got[0].sha256 == hashlib.sha256((tmp_path / "big0.bin").read_bytes()).hexdigest()


def test_scan_runs_alongside_and_stops_cleanly_when_it_fails(tmp_path: Path) -> None:
    """An error from the work done alongside the hashing stops the scan and leaks no descriptor."""
    from qlcapsule.format.tree import scan

    _big_tree(tmp_path)
    ran: list[bool] = []
    assert scan(tmp_path, GlobSet(["**"], []), workers=2, alongside=lambda: ran.append(True))
    assert ran == [True]
    before = _open_fds()

    def boom() -> None:
        raise InputError("capsule.yaml: bad")

    with pytest.raises(InputError, match="capsule.yaml: bad"):
        scan(tmp_path, GlobSet(["**"], []), workers=2, alongside=boom)
    assert _open_fds() == before


def test_scan_error_mid_walk_leaks_no_descriptor(tmp_path: Path) -> None:
    from qlcapsule.format.tree import scan

    _big_tree(tmp_path)
    os.symlink("big0.bin", tmp_path / "d" / "zz.lnk")
    before = _open_fds()
    with pytest.raises(UnsafePathError, match="zz.lnk: is a symlink"):
        scan(tmp_path, GlobSet(["**"], []), workers=2)
    assert _open_fds() == before


def test_verify_accepts_a_lock_that_is_equivalent_but_not_byte_identical(make_capsule) -> None:
    """The byte-compare fast path is only a shortcut: a re-indented lock still verifies, an edited one does not."""
    import json

    capsule = make_capsule({"a.txt": "a", "b/c.txt": "c"})
    data = json.loads(capsule.lock_path.read_bytes())
    capsule.lock_path.write_text(json.dumps(data, indent=4))
    assert capsule.verify_integrity().digest == data["digest"]
    data["files"][0]["size"] += 1
    capsule.lock_path.write_text(json.dumps(data, indent=4))
    with pytest.raises(IntegrityError, match="digest does not match|modified"):
        capsule.verify_integrity()


def test_seal_refuses_a_bad_definition_and_writes_no_lock(make_capsule) -> None:
    """capsule.yaml is validated alongside the hashing: still before anything is written."""
    from qlcapsule import DefinitionError
    from qlcapsule.pipeline import seal_capsule

    capsule = make_capsule({"a.txt": "a"}, seal=False)
    (capsule.root / "big.bin").write_bytes(b"\0" * (2 * CHUNK))
    (capsule.root / "capsule.yaml").write_text("name: demo\nversion: 1.0.0\nlabels: {a: 1}\n")
    with pytest.raises(DefinitionError, match=r"capsule.yaml:3: labels.a"):
        seal_capsule(capsule.root)
    assert not capsule.lock_path.exists()


def test_large_files_hash_the_same_through_the_mapping(tmp_path: Path) -> None:
    from qlcapsule.format.tree import MAP_MIN, MAP_WINDOW, _hash_fd, _open

    data = os.urandom(MAP_MIN + MAP_WINDOW + 12345)  # two full windows and a partial one
    (tmp_path / "big.bin").write_bytes(data)
    fd, st = _open(str(tmp_path), "big.bin")
    entry = _hash_fd("big.bin", fd, st)
    assert (entry.sha256, entry.size) == (hashlib.sha256(data).hexdigest(), len(data))


def test_a_truncation_during_a_mapped_hash_waits_then_is_seen(tmp_path: Path) -> None:
    """A writer truncating a file being hashed through mmap must not crash us (SIGBUS).

    The read lease makes the truncating process wait; at the next window the
    hasher sees the waiting writer, releases the lease and reads the rest, so
    the truncation shows as a short (modified) file.
    """
    import fcntl
    import subprocess
    import sys
    import time

    from qlcapsule.format.tree import MAP_MIN, MAP_WINDOW, _hash_fd, _open

    path = tmp_path / "big.bin"
    data = os.urandom(MAP_MIN + 2 * MAP_WINDOW)
    path.write_bytes(data)
    probe = os.open(path, os.O_RDONLY)
    try:
        fcntl.fcntl(probe, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        fcntl.fcntl(probe, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except OSError as exc:
        pytest.skip(f"no read leases here ({exc.strerror}): large files are read, never mapped")
    finally:
        os.close(probe)
    writers: list[subprocess.Popen[bytes]] = []
    still_waiting: list[bool] = []

    def after_each_window() -> bool:
        if not writers:  # after the first window: a blocking open for writing, then truncate
            code = f"open({str(path)!r}, 'r+b').truncate(0)"
            writers.append(subprocess.Popen([sys.executable, "-c", code]))
            time.sleep(0.5)  # ample for the writer to reach open(); bounded
            still_waiting.append(writers[0].poll() is None and os.path.getsize(path) == len(data))
        return False

    fd, st = _open(str(tmp_path), "big.bin")
    entry = _hash_fd("big.bin", fd, st, after_each_window)
    assert writers[0].wait(timeout=10) == 0
    assert still_waiting == [True]  # the lease held the truncation off while mapped
    assert MAP_WINDOW <= entry.size < len(data)  # one window mapped, then the truncation was seen
    assert os.path.getsize(path) == 0
