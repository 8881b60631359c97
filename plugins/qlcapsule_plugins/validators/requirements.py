"""The ``requirements`` validator: pip requirements files hold valid PEP 508 lines.

Handled like pip reads them: comments (`` #``), line continuations (``\\``),
options (``-r``, ``-c``, ``-e``, ``--index-url`` ...) and direct URLs are
accepted; every other line is a requirement, which ``packaging`` (the reference
implementation of PEP 508 and PEP 440) must accept, followed by pip's
per-requirement options (``--hash=ALGO:HEX``, ``--config-settings``,
``--global-option``), split off as pip does.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
from typing import Iterable, Iterator

from qlcapsule import Capsule, Finding, Register, Rule, Severity, Validator, clip, hookimpl, quote

_COMMENT = re.compile(r"(^|\s+)#.*$")
_OPTION = re.compile(r"^(-[a-zA-Z]|--[a-z][a-z-]*)(\s|=|$)")
_KNOWN_OPTIONS = {
    "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url", "--extra-index-url",
    "--no-index", "-f", "--find-links", "--pre", "--prefer-binary", "--only-binary", "--no-binary",
    "--require-hashes", "--trusted-host", "--use-feature", "--hash", "--config-settings", "--global-option",
}  # fmt: skip
#: the options that take no value; pip refuses a file where any other one lacks its value
_FLAGS = {"--no-index", "--pre", "--prefer-binary", "--require-hashes"}
#: the options pip accepts after a requirement on its line, and the algorithms its --hash takes
_PER_REQUIREMENT = {"--hash", "--config-settings", "--global-option"}
_STRONG_HASHES = ("sha256", "sha384", "sha512")
_HEX_DIGITS = {"sha256": 64, "sha384": 96, "sha512": 128}
#: how deep ``-r``/``-c`` includes are followed, and the largest included file read
#: the rules' help pages (SARIF ``helpUri``): the specification packaging implements, pip's file format
PEP508 = "https://packaging.python.org/en/latest/specifications/dependency-specifiers/"
PIP_FORMAT = "https://pip.pypa.io/en/stable/reference/requirements-file-format/"
MAX_INCLUDE_DEPTH = 8
MAX_INCLUDE_BYTES = 1024 * 1024


def split_requirement(line: str) -> tuple[str, str]:
    """pip's ``break_args_options``: the requirement is the words before the first that starts with "-"."""
    words = line.split(" ")
    for i, word in enumerate(words):
        if word.startswith("-"):
            return " ".join(words[:i]).strip(), " ".join(words[i:])
    return line.strip(), ""


def option_problems(options: str) -> Iterator[str]:
    """What pip would refuse in the options after a requirement."""
    try:
        words = shlex.split(options)
    except ValueError as exc:
        yield f"options {quote(options)}: {exc}"
        return
    i = 0
    while i < len(words):
        name, eq, value = words[i].partition("=")
        i += 1
        if not name.startswith("-"):
            continue  # pip ignores stray words here
        if name not in _PER_REQUIREMENT:
            yield f"pip option {clip(name)} is not allowed after a requirement"
            continue
        if not eq:
            value = words[i] if i < len(words) else ""
            i += 1
        if not value:
            yield f"pip option {name} needs a value"
        elif name == "--hash":
            algo, colon, digest = value.partition(":")
            if not colon or not digest:
                yield f"--hash {clip(value)}: expected a hash name and a value, like sha256:abcde..."
            elif algo not in _STRONG_HASHES:
                yield f"--hash {clip(value)}: pip allows {', '.join(_STRONG_HASHES)}"
            elif not re.fullmatch(f"[0-9a-fA-F]{{{_HEX_DIGITS[algo]}}}", digest):
                yield f"--hash {clip(value)}: a {algo} digest is {_HEX_DIGITS[algo]} hex digits"


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(first line number, text)`` with comments dropped and continuations joined."""
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.sub("", raw)
        if not buf:
            start = number
        if line.endswith("\\"):
            buf.append(line[:-1])
            continue
        buf.append(line)
        joined = " ".join(part.strip() for part in buf).strip()
        buf = []
        if joined:
            yield start, joined
    if buf:
        joined = " ".join(part.strip() for part in buf).strip()
        if joined:
            yield start, joined


class RequirementsValidator(Validator):
    name = "requirements"
    description = "pip requirements files hold valid PEP 508 requirements"
    patterns = ("requirements*.txt", "requirements/*.txt", "constraints*.txt")
    rules = (
        Rule("requirements.syntax", "a line is not a valid PEP 508 requirement or pip option", Severity.ERROR, PEP508),
        Rule("requirements.duplicate", "the same project is listed twice", Severity.WARNING, PIP_FORMAT),
        Rule(
            "requirements.include",
            "a referenced requirements file is missing from the capsule",
            Severity.WARNING,
            PIP_FORMAT,
        ),
    )

    def __init__(self) -> None:
        super().__init__()
        #: included files already checked in this run, by (capsule root, path): each is reported once
        self._followed: set[tuple[str, str]] = set()

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        self._followed.add((str(capsule.root), path))
        yield from self._check(capsule, path, data, 0)

    def _follow(self, capsule: Capsule, rel: str, depth: int) -> Iterable[Finding]:
        """An included file inside the capsule that the patterns do not select (``base.in``): checked too."""
        key = (str(capsule.root), rel)
        if key in self._followed or depth > MAX_INCLUDE_DEPTH:
            return
        self._followed.add(key)
        if any(_selected(rel, p) for p in self.patterns):
            return  # validated on its own
        root = capsule.root.resolve()
        target = (capsule.root / rel).resolve()
        if not target.is_relative_to(root) or target.stat().st_size > MAX_INCLUDE_BYTES:
            return  # a link out of the capsule is never read; a huge include is not a requirements file
        yield from self._check(capsule, rel, target.read_bytes(), depth)

    def _check(self, capsule: Capsule, path: str, data: bytes, depth: int) -> Iterable[Finding]:  # noqa: C901 - one branch per kind of requirements line
        if b"\x00" in data:  # a binary file under a text file's name: one finding, not one per "line"
            yield Finding("requirements.syntax", Severity.ERROR, "not a text file (NUL byte)", path, 1, 1)
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:  # pip reads requirements files as UTF-8
            lineno = data.count(b"\n", 0, exc.start) + 1
            yield Finding("requirements.syntax", Severity.ERROR, f"not UTF-8 (byte {exc.start})", path, lineno, 1)
            return
        from packaging.requirements import InvalidRequirement, Requirement  # noqa: PLC0415 -- start-up: packaging loads only when a requirements file is checked

        seen: dict[str, int] = {}
        for number, line in logical_lines(text):
            opt = _OPTION.match(line)
            if opt:
                name = opt.group(1)
                if name not in _KNOWN_OPTIONS:
                    yield Finding(
                        "requirements.syntax", Severity.ERROR, f"unknown pip option {clip(name)}", path, number, 1
                    )
                elif name not in _FLAGS and not line[len(name) :].lstrip(" =").strip():
                    yield Finding(
                        "requirements.syntax", Severity.ERROR, f"pip option {name} needs a value", path, number, 1
                    )
                elif name in ("-r", "--requirement", "-c", "--constraint"):
                    target = line[len(name) :].lstrip(" =").strip()
                    if target and "://" not in target:
                        base = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
                        rel = posixpath.normpath(base + target)
                        problem = None
                        if target.startswith("/") or rel == ".." or rel.startswith("../"):
                            problem = "points outside the capsule"  # never looked at: the capsule must hold it
                        elif rel == path:
                            problem = "includes itself"
                        elif not (capsule.root / rel).is_file():
                            problem = "no such file"
                        if problem is not None:
                            yield Finding(
                                "requirements.include",
                                Severity.WARNING,
                                f"{name} {clip(target)}: {problem}",
                                path,
                                number,
                                1,
                            )
                        else:
                            yield from self._follow(capsule, rel, depth + 1)
                continue
            if re.match(r"^[a-z][a-z0-9+.-]*://", line, re.I) or line.startswith((".", "/")):
                continue  # a direct URL or a local path, as pip accepts them
            spec, options = split_requirement(line)
            for problem in option_problems(options):
                yield Finding("requirements.syntax", Severity.ERROR, problem, path, number, 1)
            try:
                name = Requirement(spec).name
            except InvalidRequirement as exc:
                reason = str(exc).splitlines()[0]
                yield Finding(
                    "requirements.syntax",
                    Severity.ERROR,
                    f"invalid requirement {quote(spec)}: {reason}",
                    path,
                    number,
                    1,
                )
                continue
            key = re.sub(r"[-_.]+", "-", name).lower()  # PEP 503 normalisation
            if key in seen:
                yield Finding(
                    "requirements.duplicate",
                    Severity.WARNING,
                    f"{name} is listed twice (first at line {seen[key]})",
                    path,
                    number,
                    1,
                )
            else:
                seen[key] = number


def _selected(path: str, pattern: str) -> bool:
    """Whether the validator's own ``patterns`` select ``path`` (a name pattern at any depth, as capsule globs)."""
    name = path.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(path, pattern) or ("/" not in pattern and fnmatch.fnmatchcase(name, pattern))


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(RequirementsValidator)
