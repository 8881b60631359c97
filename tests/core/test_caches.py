"""No cache decides anything: plugins are discovered and capsule.yaml parsed on every run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# -- no cache decides a verification -------------------------------------------------
#
# capsule.yaml used to be parsed once and remembered by content hash under the cache
# directory; an edited entry made verify pass on a tampered capsule. Definitions are now
# parsed and validated on every run: whatever sits in the cache directory changes nothing.


def _poison(cache: Path) -> None:
    """Garbage and plausible-looking entries everywhere a cache of definitions ever lived."""
    (cache / "definitions").mkdir(parents=True, exist_ok=True)
    crafted = '{"result": {"name": "demo", "version": "1.0.0", "include": ["capsule.yaml"]}}'
    for i in range(4):
        (cache / "definitions" / f"{i:040x}.json").write_text(crafted)
        (cache / f"junk-{i}.json").write_bytes(b"\xff{not json")
    (cache / "definitions" / "garbage.json").write_bytes(b"\0" * 64)


def _snapshot(*roots: Path) -> dict[str, bytes]:
    return {str(f): f.read_bytes() for root in roots if root.exists() for f in sorted(root.rglob("*")) if f.is_file()}


def test_a_poisoned_cache_directory_changes_no_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli
) -> None:
    from qlcapsule.testing import write_capsule

    cache = tmp_path / "cache"
    monkeypatch.setenv("QLCAPSULE_CACHE_DIR", str(cache))
    capsule = write_capsule(tmp_path / "c", {"a.txt": "a\n"}, definition="name: demo\nversion: 1.0.0\n")
    assert qlcapsule_cli("seal", str(capsule.root)).exit_code == 0
    assert qlcapsule_cli("verify", str(capsule.root)).exit_code == 0
    (capsule.root / "added.txt").write_text("not in the lock\n")
    _poison(cache)
    for path in list(cache.rglob("*.json")):  # and every file there rewritten as a crafted entry
        path.write_text('{"result": {"name": "demo", "version": "1.0.0", "include": ["capsule.yaml", "a.txt"]}}')
    res = qlcapsule_cli("verify", str(capsule.root))
    assert res.exit_code == 1, res.stderr
    assert "added.txt" in res.stderr


@pytest.mark.parametrize("command", ["seal", "verify", "validate"])
def test_seal_verify_and_validate_write_nothing_under_the_cache_directories(tmp_path: Path, command: str) -> None:
    """A fresh process each time (plugin discovery included), under either cache variable."""
    import subprocess

    from qlcapsule.testing import write_capsule

    capsule = write_capsule(tmp_path / "c", {"a.txt": "a\n", "app.py": "print(1)\n"})
    cache, xdg = tmp_path / "cache", tmp_path / "xdg"
    base = {k: v for k, v in os.environ.items() if k not in ("QLCAPSULE_NO_CACHE", "QLCAPSULE_CACHE_DIR")}
    for env in (
        {**base, "QLCAPSULE_CACHE_DIR": str(cache), "XDG_CACHE_HOME": str(xdg)},
        {**base, "XDG_CACHE_HOME": str(xdg)},
    ):
        res = subprocess.run(
            [sys.executable, "-m", "qlcapsule", command, str(capsule.root)], env=env, capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr
        assert _snapshot(cache, xdg) == {}, f"{command} wrote under the cache directory"
