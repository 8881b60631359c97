"""Property: seal then verify holds for arbitrary file trees and names; any byte flip is caught."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qlcapsule import Capsule, IntegrityError
from qlcapsule.format.tree import display_path

# Names valid on Linux filesystems: no '/', no NUL, not '.' or '..', not our reserved names,
# and no surrogates (file names must be valid UTF-8).
_name_chars = st.characters(
    blacklist_categories=("Cs",), blacklist_characters="/\x00\\"
)  # backslash names are refused by design
names = st.text(_name_chars, min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..", "capsule.yaml", "capsule.lock", "capsule.sig") and len(s.encode("utf-8")) <= 200
)
paths = st.lists(names, min_size=1, max_size=3).map(tuple)
trees = st.dictionaries(paths, st.binary(max_size=300), min_size=1, max_size=12)


def _materialise(root: Path, tree: dict[tuple[str, ...], bytes]) -> dict[str, bytes]:
    written: dict[str, bytes] = {}
    for parts, data in tree.items():
        target = root.joinpath(*parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                continue
            target.write_bytes(data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue  # a prefix of another path is a file: skip the clash
        written["/".join(parts)] = data
    return written


def _excluded_by_default(path: str) -> bool:
    from qlcapsule.format.globs import GlobSet
    from qlcapsule.format.model import DEFAULT_EXCLUDE

    return not GlobSet(["**"], DEFAULT_EXCLUDE).wants(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, flip=st.integers(min_value=0))
def test_seal_verify_roundtrip_and_tamper(tree: dict[tuple[str, ...], bytes], flip: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="qlc-prop-"))
    try:
        (root / "capsule.yaml").write_text("name: prop\nversion: 1.0.0\n")
        written = _materialise(root, tree)
        capsule = Capsule.load(root)
        lock = capsule.seal().lock
        expected = {p for p in written if not _excluded_by_default(p)} | {"capsule.yaml"}
        assert {f.path for f in lock.files} == expected
        capsule.verify_integrity()
        victims = sorted(p for p in expected if p != "capsule.yaml")
        if victims:
            victim = victims[flip % len(victims)]
            target = root / victim
            data = target.read_bytes()
            target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if data else b"!")
            try:
                capsule.verify_integrity()
            except IntegrityError as exc:
                message = str(exc)
                assert f"modified: {display_path(victim)}" in message
                assert "\n" not in message
            else:
                raise AssertionError(f"tampering with {victim!r} went unnoticed")
    finally:
        shutil.rmtree(root)


@settings(max_examples=200, deadline=None)
@given(
    files=st.dictionaries(
        paths.map("/".join),
        st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 2**53 - 1), st.sampled_from(["644", "755"])),
        max_size=8,
    )
)
def test_lock_round_trips_and_its_digest_is_the_documented_json(files: dict[str, tuple[bytes, int, str]]) -> None:
    """What seal writes, parse_lock reads back unchanged; the digest is the one docs/format.md gives other tools."""
    import hashlib
    import json

    from qlcapsule.format.lock import build_lock, parse_lock, render_lock
    from qlcapsule.format.tree import FileEntry

    entries = [FileEntry(p, h.hex(), n, m) for p, (h, n, m) in files.items()]
    lock = build_lock("prop", "1.0.0", entries)
    back = parse_lock(render_lock(lock))
    assert back == lock and not back.edited
    documented = json.dumps(
        [e._asdict() for e in back.files], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert back.digest == hashlib.sha256(documented.encode("utf-8")).hexdigest()
