"""The entry-point cache: reused while no install could have changed it, rebuilt otherwise."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from qlcapsule import caches as epcache  # the entry-point half of caches.py
from qlcapsule.caches import PluginEntry, discover

GROUP = "qlcapsule-epcache-test"


def _dist(site: Path, name: str, entries: dict[str, str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    body = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{body}\n")


def _age(path: Path, seconds: float = 3600) -> None:
    """Make ``path`` look modified ``seconds`` ago (a fresh directory is never cached)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    _dist(site, "alpha", {"a": "json:dumps"})
    _age(site)
    monkeypatch.setattr(sys, "path", [str(site)])
    monkeypatch.setenv("QLCAPSULE_CACHE_DIR", str(tmp_path / "cache"))
    return site


def _cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("entry-points-*.json"))


def test_second_discovery_comes_from_the_cache(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = discover(GROUP)
    assert first == [PluginEntry("a", "json:dumps", "alpha", "1.0")]
    assert len(_cache_files(tmp_path)) == 1

    def no_scan(group: str) -> list[PluginEntry]:
        raise AssertionError("scanned although the cache is valid")

    monkeypatch.setattr(epcache, "_scan", no_scan)
    assert discover(GROUP) == first


def test_an_install_invalidates_the_cache(site: Path, tmp_path: Path) -> None:
    discover(GROUP)
    _dist(site, "beta", {"b": "json:loads"})
    _age(site, 1800)  # a different (old) mtime: the install is seen, and the result is cacheable
    assert [e.name for e in discover(GROUP)] == ["a", "b"]
    gone = site / "beta-1.0.dist-info"
    for f in gone.iterdir():
        f.unlink()
    gone.rmdir()  # an uninstall
    _age(site, 900)
    assert [e.name for e in discover(GROUP)] == ["a"]


def test_a_directory_changed_just_now_is_not_cached(site: Path, tmp_path: Path) -> None:
    os.utime(site)  # modified now: a change in the same tick could go unseen
    assert discover(GROUP)[0].name == "a"
    assert _cache_files(tmp_path) == []


def test_a_damaged_cache_is_ignored(site: Path, tmp_path: Path) -> None:
    discover(GROUP)
    (file,) = _cache_files(tmp_path)
    for junk in (b"{not json", b"[]", b'{"stamp": 1, "entries": 2}', b"\xff\xfe"):
        file.write_bytes(junk)
        assert discover(GROUP) == [PluginEntry("a", "json:dumps", "alpha", "1.0")]


def test_cache_can_be_turned_off(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QLCAPSULE_NO_CACHE", "1")
    assert discover(GROUP)[0].name == "a"
    assert _cache_files(tmp_path) == []


def test_an_unwritable_cache_directory_is_ignored(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("QLCAPSULE_CACHE_DIR", str(blocker / "cache"))
    assert discover(GROUP)[0].name == "a"


def test_entry_load_follows_the_entry_point_syntax() -> None:
    import json

    assert PluginEntry("x", "json:dumps", None, None).load() is json.dumps
    assert PluginEntry("x", "json", None, None).load() is json
    assert PluginEntry("x", "json.decoder:JSONDecoder.decode [extra]", None, None).load() is json.decoder.JSONDecoder.decode
    with pytest.raises(ValueError, match="malformed entry point"):
        PluginEntry("x", "not a module!", None, None).load()


# -- parsed capsule.yaml ---------------------------------------------------------


def test_light_read_is_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qlcapsule import capsule as capsule_mod

    monkeypatch.setenv("QLCAPSULE_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "capsule.yaml"
    path.write_text("name: demo\nversion: 1.0.0\nlabels: {team: a}\n")
    first = capsule_mod._light_read(path)
    assert first == {"name": "demo", "version": "1.0.0", "labels": {"team": "a"}}

    def no_parse(raw: bytes) -> None:
        raise AssertionError("parsed although cached")

    monkeypatch.setattr(capsule_mod, "_light_parse", no_parse)
    assert capsule_mod._light_read(path) == first
    path.write_text("name: demo\nversion: 1.0.1\nlabels: {team: a}\n")  # new bytes: parsed again
    with pytest.raises(AssertionError, match="parsed although cached"):
        capsule_mod._light_read(path)


@pytest.mark.parametrize(
    "text",
    [
        "name: demo\nversion: 1.0.0\nlabels: {1: a}\n",  # an integer key would come back a string
        "name: demo\nversion: 1.0.0\ndescription: 2024-01-01\n",  # a date is not JSON
    ],
)
def test_results_json_cannot_carry_are_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    from qlcapsule import capsule as capsule_mod

    monkeypatch.setenv("QLCAPSULE_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "capsule.yaml"
    path.write_text(text)
    assert capsule_mod._light_read(path) is not None
    assert not list((tmp_path / "cache").glob("definitions/*.json"))


def test_a_damaged_definition_cache_entry_is_reparsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qlcapsule import capsule as capsule_mod

    monkeypatch.setenv("QLCAPSULE_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "capsule.yaml"
    path.write_text("name: demo\nversion: 1.0.0\n")
    capsule_mod._light_read(path)
    (entry,) = (tmp_path / "cache").glob("definitions/*.json")
    for junk in (b"{", b"[1]", b'{"other": 1}'):
        entry.write_bytes(junk)
        assert capsule_mod._light_read(path) == {"name": "demo", "version": "1.0.0"}


def test_the_definition_cache_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QLCAPSULE_CACHE_DIR", str(tmp_path / "cache"))
    for i in range(epcache._DEF_KEEP + 5):
        epcache.cached_definition(f"name: n{i}\n".encode(), lambda raw, i=i: {"name": f"n{i}"})
    assert len(list((tmp_path / "cache" / "definitions").iterdir())) <= epcache._DEF_KEEP
