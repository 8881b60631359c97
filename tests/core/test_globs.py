from __future__ import annotations

import pytest

from qlcapsule.format.globs import GlobSet, compile_glob


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.py", "a.py", True),
        ("*.py", "pkg/sub/a.py", True),  # no slash: any depth
        ("*.py", "a.pyc", False),
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/x/a.py", False),  # '*' stays within a segment
        ("src/**", "src/x/y/z.txt", True),
        ("**/test_*.py", "test_a.py", True),
        ("**/test_*.py", "a/b/test_a.py", True),
        ("a/**/b.txt", "a/b.txt", True),
        ("a/**/b.txt", "a/x/y/b.txt", True),
        ("build/", "build/out/x.o", True),  # a directory matches everything below it
        ("build/", "build", False),  # trailing slash: directories only
        ("/top.txt", "top.txt", True),
        ("/top.txt", "sub/top.txt", False),
        ("file?.txt", "file1.txt", True),
        ("[!a]*.md", "b.md", True),
        ("[!a]*.md", "a.md", False),
        ("*.py[cod]", "m.pyc", True),
    ],
)
def test_glob_semantics(pattern: str, path: str, matches: bool) -> None:
    assert compile_glob(pattern).match_file(path) is matches


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "empty"),
        ("a/../b", "'..'"),
        ("[abc", "unclosed"),
        ("a\\b", "backslash"),
        ("a**b", "whole path segment"),
        ("a//b", "empty path segment"),
        ("[z-a].txt", "bad character class"),
    ],
)
def test_bad_globs_say_why(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        compile_glob(pattern)


def test_globset_exclude_wins_and_prunes() -> None:
    gs = GlobSet(["**"], [".git", "*.log"])
    assert gs.wants("src/a.py")
    assert not gs.wants("logs/x.log")
    assert gs.prune_dir(".git")
    assert gs.prune_dir("sub/.git")
    assert not gs.wants("sub/.git")  # a .git *file* (worktree/submodule) is excluded too
