"""Store errors name the store as the user gave it (--store or $QLCAPSULE_STORE), not libgit2's absolute path."""

from __future__ import annotations

from pathlib import Path

import pygit2


def test_a_relative_store_stays_relative_in_messages(qlcapsule_cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    pygit2.init_repository("st.git", bare=True)
    res = qlcapsule_cli("log", "nosuch", "--store", "st.git")
    assert res.exit_code == 2
    assert res.stderr.strip() == "error: nosuch: no versions in st.git (capsules there: none)"
    monkeypatch.setenv("QLCAPSULE_STORE", "st.git")
    res = qlcapsule_cli("checkout", "nosuch", "9.9.9", "out")
    assert res.exit_code == 2 and " st.git" in res.stderr and str(tmp_path) not in res.stderr, res.stderr
