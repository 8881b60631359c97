"""capsule.lock: deterministic, atomic, and a digest another tool can recompute."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from qlcapsule import Capsule, DefinitionError
from qlcapsule.lock import parse_lock


def _independent_digest(lock: dict) -> str:
    # Written from the spec in docs/format.md, not from lock.py: RFC 8785 (JCS)
    # over the list of {mode, path, sha256, size} objects, keys sorted.
    def jcs_string(s: str) -> str:
        out = ['"']
        for ch in s:
            o = ord(ch)
            if ch == '"':
                out.append('\\"')
            elif ch == "\\":
                out.append("\\\\")
            elif ch in "\b\f\n\r\t":
                out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
            elif o < 0x20:
                out.append(f"\\u{o:04x}")
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)

    items = []
    for f in lock["files"]:
        items.append(
            "{"
            + f'"mode":{jcs_string(f["mode"])},"path":{jcs_string(f["path"])},'
            + f'"sha256":{jcs_string(f["sha256"])},"size":{f["size"]}'
            + "}"
        )
    return hashlib.sha256(("[" + ",".join(items) + "]").encode("utf-8")).hexdigest()


def test_lock_content_and_independent_digest(make_capsule) -> None:
    files = {"b.txt": "b\n", "a/z.py": "print('z')\n", "ü.txt": "umlaut\n", "tab\tname.txt": "t", "B.txt": b"\x00\xff"}
    capsule = make_capsule(files)
    lock = json.loads(capsule.lock_path.read_bytes())
    assert lock["lockVersion"] == 1 and lock["algorithm"] == "sha256"
    paths = [f["path"] for f in lock["files"]]
    assert paths == sorted(paths, key=lambda p: p.encode("utf-8"))
    assert "capsule.yaml" in paths and "capsule.lock" not in paths
    for f in lock["files"]:
        data = (capsule.root / f["path"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest()
        assert f["size"] == len(data)
    assert lock["digest"] == _independent_digest(lock)


def test_reseal_unchanged_leaves_file_untouched(make_capsule) -> None:
    capsule = make_capsule({"x.txt": "x"})
    before = os.stat(capsule.lock_path)
    result = capsule.seal()
    after = os.stat(capsule.lock_path)
    assert result.written is False
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_seal_is_atomic_no_temp_left(make_capsule) -> None:
    capsule = make_capsule({"x.txt": "x"})
    (capsule.root / "x.txt").write_text("changed")
    assert capsule.seal().written is True
    leftovers = [p.name for p in capsule.root.iterdir() if p.name.startswith(".capsule.lock")]
    assert leftovers == []


def test_line_endings_are_hashed_as_they_are(make_capsule) -> None:
    a = make_capsule({"f.txt": b"a\nb\n"}, name="a")
    b = make_capsule({"f.txt": b"a\r\nb\r\n"}, name="a")
    assert a.read_lock().files[1].sha256 != b.read_lock().files[1].sha256


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(lockVersion=2), "lockVersion"),
        (lambda d: d.update(extra=1), "extra: unknown key"),
        (lambda d: d["files"][0].update(path="../etc/passwd"), "escapes the capsule"),
        (lambda d: d["files"][0].update(path="/abs"), "not a safe relative POSIX path"),
        (lambda d: d["files"][0].update(mode="777"), "files.0.mode"),
        (lambda d: d["files"][0].update(sha256="XYZ"), "files.0.sha256"),
        (lambda d: d["files"].reverse(), "not sorted"),
    ],
)
def test_malformed_locks_are_named(make_capsule, mutate, expected: str) -> None:
    capsule = make_capsule({"a.txt": "a", "b.txt": "b"})
    data = json.loads(capsule.lock_path.read_bytes())
    mutate(data)
    with pytest.raises(DefinitionError, match=expected.replace(".", r"\.")):
        parse_lock(json.dumps(data).encode())


def test_invalid_json_lock_names_line(make_capsule) -> None:
    with pytest.raises(DefinitionError, match=r"capsule.lock:1: invalid JSON"):
        parse_lock(b"{not json")


def test_loaded_capsule_root_is_absolute(make_capsule, monkeypatch) -> None:
    capsule = make_capsule({"x": "y"})
    monkeypatch.chdir(capsule.root.parent)
    assert Capsule.load(capsule.root.name).root.is_absolute()
