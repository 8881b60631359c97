"""Capsule globs: the include/exclude patterns of capsule.yaml.

Semantics (documented in docs/format.md), close to .gitignore:

- ``*`` matches within one path segment, ``?`` one character, ``[abc]`` / ``[!abc]`` a class;
- ``**`` matches any number of segments (``**/x``, ``a/**``, ``a/**/b``);
- a pattern with no ``/`` (other than a trailing one) matches a name at any depth;
  a pattern with a ``/`` is anchored at the capsule root (a leading ``/`` is allowed);
- a trailing ``/`` matches directories only; a pattern that matches a directory
  matches everything below it.

Bad patterns (empty, ``..`` segments, NUL, a backslash, an unclosed ``[``) raise
``ValueError`` with the reason.
"""

from __future__ import annotations

import re
from functools import lru_cache


class Glob:
    """A compiled capsule glob. ``source`` is its regular expression; ``regex``
    is compiled on first use (a walk only needs the unions built from the sources)."""

    __slots__ = ("pattern", "source", "dir_only", "_regex")

    def __init__(self, pattern: str, source: str, dir_only: bool) -> None:
        self.pattern = pattern
        self.source = source
        self.dir_only = dir_only
        self._regex: re.Pattern[str] | None = None

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"

    @property
    def regex(self) -> re.Pattern[str]:
        if self._regex is None:
            self._regex = re.compile(self.source, re.DOTALL)
        return self._regex

    def match_file(self, path: str) -> bool:
        """True when ``path`` (a file) or one of its parent directories matches."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            if self.regex.fullmatch("/".join(parts[:i])):
                return True
        return not self.dir_only and bool(self.regex.fullmatch(path))


@lru_cache(maxsize=512)
def compile_glob(pattern: str) -> Glob:
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError("empty pattern")
    if "\x00" in pattern:
        raise ValueError("NUL in pattern")
    if "\\" in pattern:
        raise ValueError("backslash in pattern (use '/' as the separator)")
    dir_only = pattern.endswith("/")
    body = pattern.rstrip("/")
    anchored = "/" in body
    body = body.lstrip("/")
    if not body:
        raise ValueError("pattern matches nothing")
    segments = body.split("/")
    if any(s in ("..", ".") for s in segments):
        raise ValueError("'.' and '..' segments are not allowed")
    if any(s == "" for s in segments):
        raise ValueError("empty path segment ('//')")
    out = [] if anchored else ["(?:.*/)?"]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            out.append(".*" if last else "(?:.*/)?")
            continue
        if "**" in seg:
            raise ValueError("'**' must be a whole path segment")
        out.append(_segment(seg))
        if not last:
            out.append("/")
    glob = Glob(pattern, "".join(out), dir_only)
    if "[" in body:  # a character class is the one part that can be a bad regex ('[z-a]')
        try:
            glob.regex  # noqa: B018
        except re.error as exc:
            raise ValueError(f"bad character class: {exc.msg}") from None
    return glob


def _segment(seg: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < len(seg) and seg[j] in "!^":
                j += 1
            if j < len(seg) and seg[j] == "]":
                j += 1
            while j < len(seg) and seg[j] != "]":
                j += 1
            if j >= len(seg):
                raise ValueError("unclosed '[' character class")
            inner = seg[i + 1 : j]
            if inner[:1] in ("!", "^"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def check_glob(pattern: str) -> str:
    """Validate and return ``pattern`` (for pydantic validators)."""
    compile_glob(pattern)
    return pattern


def _union(globs: list[Glob]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("|".join(f"(?:{g.source})" for g in globs), re.DOTALL)


class GlobSet:
    """Include/exclude decision for capsule paths."""

    def __init__(self, include: list[str], exclude: list[str]) -> None:
        self.include = [compile_glob(p) for p in include]
        self.exclude = [compile_glob(p) for p in exclude]
        # One regex per question keeps the walk at one match per entry.
        self._include_all = any(g.pattern in ("**", "/**") for g in self.include)
        self._exclude_any = _union(self.exclude)
        self._exclude_files = _union([g for g in self.exclude if not g.dir_only])

    def prune_dir(self, path: str) -> bool:
        return bool(self._exclude_any and self._exclude_any.fullmatch(path))

    def wants_in_walk(self, path: str) -> bool:
        """Like :meth:`wants` for a walk that already pruned excluded parent directories."""
        if self._exclude_files and self._exclude_files.fullmatch(path):
            return False
        if self._include_all:
            return True
        return any(g.match_file(path) for g in self.include)

    def wants(self, path: str) -> bool:
        if any(g.match_file(path) for g in self.exclude):
            return False
        return any(g.match_file(path) for g in self.include)
