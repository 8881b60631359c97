"""capsule.lock: deterministic, atomic, and a digest another tool can recompute."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from qlcapsule import Capsule, DefinitionError, InputError
from qlcapsule.format.lock import capsule_digest, parse_lock


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
            f'"mode":{jcs_string(f["mode"])},"path":{jcs_string(f["path"])},'
            f'"sha256":{jcs_string(f["sha256"])},"size":{f["size"]}'
            "}"
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
        (lambda d: d["files"].insert(1, dict(d["files"][0])), "files: not sorted by path or repeat a path"),
        (lambda d: d["files"][0].update(path="a\ud800"), "files.0.path: not valid Unicode"),
        (lambda d: d.update(name="\udfff"), "name: not valid Unicode"),
        (lambda d: d["files"][0].update(size=2**53), "files.0.size: expected a non-negative integer below 2**53"),
        (lambda d: d["files"].__setitem__(0, "a.txt"), "files.0: expected an object"),
        (lambda d: d["files"][1].pop("mode"), "files.1.mode: required key is missing"),
        (lambda d: d.update(version=1), "version: expected a string"),
    ],
)
def test_malformed_locks_are_named(make_capsule, mutate, expected: str) -> None:
    capsule = make_capsule({"a.txt": "a", "b.txt": "b"})
    data = json.loads(capsule.lock_path.read_bytes())
    mutate(data)
    with pytest.raises(DefinitionError, match=re.escape(expected)):
        parse_lock(json.dumps(data).encode())


def test_an_oversized_lock_is_refused_before_parsing(tmp_path: Path, monkeypatch) -> None:
    from qlcapsule.format import lock as lock_module

    monkeypatch.setattr(lock_module, "MAX_LOCK_BYTES", 1024 * 1024)
    huge = b"[" * (1024 * 1024 + 1)  # parsing would take long and fail on depth; the size says no first
    with pytest.raises(DefinitionError, match=r"^capsule.lock: 1048577 bytes; a capsule.lock is at most 1 MiB$"):
        parse_lock(huge)
    (tmp_path / "capsule.lock").write_bytes(huge)
    with pytest.raises(InputError, match="a capsule.lock is at most 1024 KiB"):  # read_lock stops reading there
        lock_module.read_lock(tmp_path / "capsule.lock")


def test_invalid_json_lock_names_line(make_capsule) -> None:
    with pytest.raises(DefinitionError, match=r"capsule.lock:1: invalid JSON"):
        parse_lock(b"{not json")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "capsule.lock: invalid JSON: nested too deeply"),
        (b'{"files": [' + b"9" * 5000 + b"]}", "capsule.lock: invalid JSON: a number longer than 4300 digits"),
    ],
    ids=["deep", "long integer"],
)
def test_hostile_json_lock_is_one_line(raw: bytes, expected: str) -> None:
    """Deep nesting or a 5,000-digit integer: a DefinitionError (exit 2), never RecursionError/ValueError (70)."""
    with pytest.raises(DefinitionError) as info:
        parse_lock(raw)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


@pytest.mark.parametrize("where", ["digest", "sha256"])
def test_a_hex_digest_with_a_final_newline_is_refused(where: str) -> None:
    data = _valid_lock()
    if where == "digest":
        data["digest"] += "\n"
    else:
        data["files"][0]["sha256"] += "\n"
    with pytest.raises(DefinitionError, match="expected 64 lowercase hex digits"):
        parse_lock(json.dumps(data).encode())


def test_loaded_capsule_root_is_absolute(make_capsule, monkeypatch) -> None:
    capsule = make_capsule({"x": "y"})
    monkeypatch.chdir(capsule.root.parent)
    assert Capsule.load(capsule.root.name).root.is_absolute()


def _valid_lock() -> dict:
    files = [{"path": "a.txt", "sha256": "a" * 64, "size": 1, "mode": "644"}]
    return {
        "lockVersion": 1,
        "algorithm": "sha256",
        "name": "x",
        "version": "1.0.0",
        "digest": "b" * 64,
        "files": files,
    }


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: None,
        lambda d: d.update(lockVersion=2),
        lambda d: d.update(lockVersion=True),
        lambda d: d.update(algorithm="md5"),
        lambda d: d.update(digest="B" * 64),
        lambda d: d.pop("name"),
        lambda d: d.update(surprise=1),
        lambda d: d["files"][0].update(size=-1),
        lambda d: d["files"][0].update(size=1.5),
        lambda d: d["files"][0].update(mode=644),
        lambda d: d["files"][0].update(extra="x"),
        lambda d: d["files"][0].pop("sha256"),
        lambda d: d.update(files={}),
        lambda d: d.update(files=[]),
        lambda d: d.update(name=7),
        lambda d: d.update(digest="b" * 64 + "\n"),  # Python's re (jsonschema's) lets "$" match before it
        lambda d: d["files"][0].update(sha256="a" * 64 + "\n"),
        lambda d: d["files"][0].update(size=2**53 - 1),
        lambda d: d["files"][0].update(size=2**53),
        lambda d: d["files"][0].update(mode="755"),
        lambda d: d["files"][0].update(path=""),
        lambda d: d["files"].__setitem__(0, ["a.txt"]),
    ],
)
def test_parser_agrees_with_published_schema(mutate) -> None:
    """``qlcapsule schema lock`` is generated from the model parse_lock checks; a JSON Schema validator
    must say the same about every document. (What JSON Schema cannot state is left out here: path
    safety and order, and integers written as 1.0, which JSON Schema counts as integers.)"""
    import jsonschema

    from qlcapsule.format.lock import lock_schema

    data = _valid_lock()
    mutate(data)
    schema_ok = jsonschema.Draft202012Validator(lock_schema()).is_valid(data)
    try:
        parse_lock(json.dumps(data).encode())
        parser_ok = True
    except DefinitionError:
        parser_ok = False
    assert parser_ok == schema_ok


def test_schema_command_prints_the_models_schema(qlcapsule_cli) -> None:
    from qlcapsule.format.lock import lock_schema

    result = qlcapsule_cli("schema", "lock")
    assert result.exit_code == 0 and json.loads(result.stdout) == lock_schema()
    assert lock_schema()["required"] == ["lockVersion", "algorithm", "name", "version", "digest", "files"]


def test_the_digest_is_the_documented_json_dumps() -> None:
    """docs/format.md tells other tools to compute the digest with json.dumps(sort_keys=True, ...)."""
    data = _valid_lock()
    data["files"] = [
        {"path": p, "sha256": "c" * 64, "size": n, "mode": m}
        for p, n, m in (('q"uote', 0, "644"), ("tab\tü/\x7f\u2028", 2**53 - 1, "755"), ("z", 3, "644"))
    ]
    data["digest"] = _independent_digest(data)
    lock = parse_lock(json.dumps(data).encode())
    documented = json.dumps(data["files"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert capsule_digest(lock.files) == hashlib.sha256(documented.encode()).hexdigest() == data["digest"]
    assert not lock.edited
    data["files"][1]["size"] -= 1
    assert parse_lock(json.dumps(data).encode()).edited


def test_light_load_defers_validation_but_seal_enforces_it(tmp_path: Path) -> None:
    """``strict=False`` reads capsule.yaml on first use; the model still validates it then."""
    from qlcapsule.testing import write_capsule

    capsule = write_capsule(tmp_path / "c", {"a": "a"})
    (capsule.root / "capsule.yaml").write_text("name: demo\nversion: 1.0.0\nvalidate:\n  fail_on: sometimes\n")
    light = Capsule.load(capsule.root, strict=False)
    with pytest.raises(DefinitionError, match=":4: validate.fail_on"):
        light.seal()
    (capsule.root / "capsule.yaml").write_text("name: demo\nversion: 1.0.0\nfoo: 1\n")
    with pytest.raises(DefinitionError, match=":3: foo: unknown key"):
        Capsule.load(capsule.root, strict=False).name  # noqa: B018


def test_verify_does_not_import_the_heavy_modules(make_capsule) -> None:
    import subprocess
    import sys

    capsule = make_capsule({"a.py": "print(1)\n"})
    code = (
        "import sys; from qlcapsule.cli import main\n"
        f"try:\n    main(['verify', {str(capsule.root)!r}])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('pygit2', 'jinja2', 'boto3', 'cryptography', 'rich') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "heavy: []" in out.stdout, out.stdout + out.stderr


def test_render_lock_rows_are_exactly_json_dumps() -> None:
    """render_lock formats plain names itself; every row must still be json.dumps of the entry."""
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from qlcapsule.format.lock import Lock, LockEntry, render_lock

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=6, unique=True))
    def prop(paths: list[str]) -> None:
        entries = [LockEntry(p, "ab" * 32, i, "755" if i % 2 else "644") for i, p in enumerate(paths)]
        lines = render_lock(Lock("n", "1.0.0", "cd" * 32, entries)).decode("utf-8").split("\n")
        for e in entries:
            row = "    " + json.dumps(
                {"path": e.path, "sha256": e.sha256, "size": e.size, "mode": e.mode}, ensure_ascii=False
            )
            assert row in lines or row + "," in lines

    prop()
