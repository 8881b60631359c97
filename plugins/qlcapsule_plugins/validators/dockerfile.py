"""The ``dockerfile`` validator: Dockerfiles parse the way BuildKit reads them.

Handled: parser directives (``# syntax=``, ``# escape=``), comments, line
continuations with the escape character, heredocs (``RUN <<EOF``). Checked:
every instruction is one Docker knows, the first instruction is ``FROM``
(``ARG`` may come before it), exec-form JSON arrays are well formed, and base
images name a tag or digest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable

from qlcapsule import Capsule, Finding, Register, Rule, Severity, Validator, hookimpl, quote

#: Docker's Dockerfile reference: every rule's help page (SARIF ``helpUri``)
REFERENCE = "https://docs.docker.com/reference/dockerfile/"
INSTRUCTIONS = frozenset(
    "ADD ARG CMD COPY ENTRYPOINT ENV EXPOSE FROM HEALTHCHECK LABEL MAINTAINER ONBUILD RUN SHELL STOPSIGNAL USER VOLUME WORKDIR".split()
)
_EXEC_FORM = frozenset({"CMD", "ENTRYPOINT", "RUN", "SHELL", "VOLUME", "ADD", "COPY"})
#: instructions whose BuildKit parser takes no flag at all: a leading --word is "unknown flag"
_NO_FLAGS = frozenset(
    {"ENV", "MAINTAINER", "LABEL", "ONBUILD", "CMD", "ENTRYPOINT", "EXPOSE", "USER", "VOLUME", "SHELL"}
)
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_HEREDOC = re.compile(r"<<-?\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int
    column: int


def parse(text: str) -> tuple[list[Instruction], list[tuple[int, str]]]:
    """Instructions and ``(line, problem)`` syntax errors."""
    lines = text.splitlines()
    escape = "\\"
    i = 0
    # parser directives: only at the very top, before any comment, blank line or instruction
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if not m:
            break
        if m.group(1).lower() == "escape":
            escape = m.group(2) or "\\"
        i += 1
    out: list[Instruction] = []
    errors: list[tuple[int, str]] = []
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start, column = i + 1, len(raw) - len(raw.lstrip()) + 1
        parts: list[str] = []
        line = raw
        while True:
            body = line.rstrip()
            if body.endswith(escape) and not body.strip().startswith("#"):
                parts.append(body[: -len(escape)])
                i += 1
                while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                    i += 1  # comments and blank lines inside a continuation are skipped
                if i >= len(lines):
                    break  # BuildKit ends the instruction at the end of the file (its testfile continue-at-eof)
                line = lines[i]
                continue
            parts.append(line)
            break
        i += 1
        logical = " ".join(p.strip() for p in parts).strip()
        keyword, _, args = logical.replace("\t", " ").partition(" ")  # a tab separates words too (FROM\tubuntu)
        for tag in _HEREDOC.findall(args) if keyword.upper() in ("RUN", "COPY", "ADD") else []:
            while i < len(lines) and lines[i].strip() != tag:
                i += 1
            if i >= len(lines):
                errors.append((start, f"heredoc <<{tag} is never closed"))
            i += 1
        out.append(Instruction(keyword.upper(), args.strip(), start, column))
    return out, errors


class DockerfileValidator(Validator):
    name = "dockerfile"
    description = "Dockerfiles parse; FROM first; known instructions; exec-form JSON; tagged base images"
    patterns = ("Dockerfile", "*.Dockerfile", "Dockerfile.*", "Containerfile")
    rules = (
        Rule("dockerfile.syntax", "the Dockerfile cannot be parsed", Severity.ERROR, REFERENCE),
        Rule("dockerfile.unknown-instruction", "an instruction Docker does not know", Severity.ERROR, REFERENCE),
        Rule(
            "dockerfile.from-first",
            "the first instruction is not FROM (only ARG may precede it)",
            Severity.ERROR,
            REFERENCE,
        ),
        Rule("dockerfile.missing-args", "an instruction has no arguments", Severity.ERROR, REFERENCE),
        Rule(
            "dockerfile.exec-form",
            "an exec-form list holds more than strings (error), or is not JSON and runs as shell form (warning)",
            Severity.ERROR,
            REFERENCE,
        ),
        Rule(
            "dockerfile.untagged-image",
            "a base image without a tag or digest (or :latest)",
            Severity.WARNING,
            REFERENCE,
        ),
        Rule(
            "dockerfile.maintainer",
            "MAINTAINER is deprecated; use LABEL",
            Severity.NOTE,
            REFERENCE + "#maintainer-deprecated",
        ),
        Rule(
            "dockerfile.onbuild",
            "ONBUILD triggers ONBUILD, FROM or MAINTAINER, which BuildKit refuses",
            Severity.ERROR,
            REFERENCE + "#onbuild",
        ),
    )

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        if b"\x00" in data:  # a binary file under a text file's name: one finding, not one per "line"
            yield Finding("dockerfile.syntax", Severity.ERROR, "not a text file (NUL byte)", path, 1, 1)
            return
        text = data.decode("utf-8", "replace")
        instructions, errors = parse(text)
        for line, problem in errors:
            yield Finding("dockerfile.syntax", Severity.ERROR, problem, path, line, 1)
        if not instructions:
            yield Finding(
                "dockerfile.from-first", Severity.ERROR, "no instructions (a Dockerfile needs FROM)", path, 1, 1
            )
            return
        stages: set[str] = set()
        first = next((ins for ins in instructions if ins.keyword != "ARG"), None)
        if first is not None and first.keyword != "FROM" and first.keyword in INSTRUCTIONS:
            yield Finding(
                "dockerfile.from-first",
                Severity.ERROR,
                f"first instruction is {first.keyword}; a Dockerfile must start with FROM (ARG may precede it)",
                path,
                first.line,
                first.column,
            )
        for ins in instructions:
            if ins.keyword not in INSTRUCTIONS:
                yield Finding(
                    "dockerfile.unknown-instruction",
                    Severity.ERROR,
                    f"unknown instruction {quote(ins.keyword)}",
                    path,
                    ins.line,
                    ins.column,
                )
                continue
            if not ins.args:
                yield Finding(
                    "dockerfile.missing-args",
                    Severity.ERROR,
                    f"{ins.keyword} needs arguments",
                    path,
                    ins.line,
                    ins.column,
                )
                continue
            refused = _instruction_problem(ins.keyword, ins.args)
            if refused is not None:
                rule = (
                    "dockerfile.onbuild"
                    if "ONBUILD" in refused
                    else "dockerfile.unknown-flag"
                    if refused.startswith("unknown flag")
                    else "dockerfile.missing-args"
                )
                yield Finding(rule, Severity.ERROR, refused, path, ins.line, ins.column)
                continue
            if ins.keyword == "FROM":
                yield from _check_from(ins, stages, path)
            elif ins.keyword in _EXEC_FORM and ins.args.startswith("["):
                yield from _check_exec(ins, path)
            elif ins.keyword == "MAINTAINER":
                yield Finding(
                    "dockerfile.maintainer",
                    Severity.NOTE,
                    "MAINTAINER is deprecated; use LABEL",
                    path,
                    ins.line,
                    ins.column,
                )


def _instruction_problem(keyword: str, args: str) -> str | None:
    """What BuildKit's instruction parser (``instructions.Parse``) refuses that the line parser lets through.

    The messages are BuildKit's: ``COPY requires at least two arguments``, ``ENV must
    have two arguments``, ``Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed``.
    """
    words = args.split()
    if keyword in _NO_FLAGS and words and words[0].startswith("--") and len(words[0]) > 2:
        return f"unknown flag: {words[0].split('=', 1)[0]}"
    if keyword == "ONBUILD":
        trigger = args.split(None, 1)[0].upper() if args.split() else ""
        if trigger == "ONBUILD":
            return "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        if trigger in ("FROM", "MAINTAINER"):
            return f"{trigger} isn't allowed as an ONBUILD trigger"
        return _instruction_problem(trigger, args.split(None, 1)[1] if len(args.split(None, 1)) > 1 else "")
    if keyword in ("COPY", "ADD") and not args.startswith("["):
        words = [w for w in args.split() if not w.startswith("--")]
        if len(words) < 2 and not any(w.startswith("<<") for w in words):
            return f"{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
    if keyword in ("ENV", "LABEL"):
        first = args.split(None, 1)[0] if args.split() else ""
        if first and "=" not in first and len(args.split(None, 1)) < 2:
            return f"{keyword} must have two arguments"
    return None


def _check_from(ins: Instruction, stages: set[str], path: str) -> Iterable[Finding]:
    words = [w for w in ins.args.split() if not w.startswith("--")]
    if not words:
        yield Finding("dockerfile.missing-args", Severity.ERROR, "FROM needs an image", path, ins.line, ins.column)
        return
    image = words[0]
    if len(words) >= 3 and words[1].lower() == "as":
        stages.add(words[2].lower())
    if image.lower() in stages or image == "scratch" or "$" in image or "@" in image:
        return
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        yield Finding(
            "dockerfile.untagged-image",
            Severity.WARNING,
            f"base image {quote(image)} has no tag; pin one",
            path,
            ins.line,
            ins.column,
        )
    elif last.endswith(":latest"):
        yield Finding(
            "dockerfile.untagged-image",
            Severity.WARNING,
            f"base image {quote(image)} uses :latest; pin a version",
            path,
            ins.line,
            ins.column,
        )


def _check_exec(ins: Instruction, path: str) -> Iterable[Finding]:
    args = ins.args
    if ins.keyword in ("ADD", "COPY"):
        args = " ".join(w for w in args.split() if not w.startswith("--"))
        if not args.startswith("["):
            return
    try:
        value = json.loads(args)
    except json.JSONDecodeError as exc:
        if not args.rstrip().endswith("]"):
            return  # shell form that starts with a test: RUN [ "$X" = 1 ] && exit 0
        # BuildKit accepts it as shell form, which is almost never what was meant: a warning
        yield Finding(
            "dockerfile.exec-form",
            Severity.WARNING,
            f"{ins.keyword} exec form is not valid JSON ({exc.msg}), so it runs as shell form; use double quotes",
            path,
            ins.line,
            ins.column,
        )
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        yield Finding(
            "dockerfile.exec-form",
            Severity.ERROR,
            f"{ins.keyword} exec form must be a JSON array of strings",
            path,
            ins.line,
            ins.column,
        )


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(DockerfileValidator)
