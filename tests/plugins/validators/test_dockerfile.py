"""The dockerfile validator: parsing (continuations, heredocs, directives) and its rules."""

from __future__ import annotations

from vcase import findings, rules

from qlcapsule_plugins.validators.dockerfile import parse

GOOD = """# syntax=docker/dockerfile:1
ARG PY=3.12
FROM python:${PY}-slim AS build
RUN apt-get update \\
    # a comment inside a continuation
    && apt-get install -y curl
RUN <<EOF
echo one
FOO this is heredoc content, not an instruction
EOF
FROM build
COPY --from=build /a /b
CMD ["python", "-m", "app"]
"""


def test_good_dockerfile(tmp_path):
    assert findings(tmp_path, {"Dockerfile": GOOD}, "dockerfile") == []


def test_parser_joins_continuations_and_skips_heredocs():
    instructions, errors = parse(GOOD)
    assert errors == []
    assert [i.keyword for i in instructions] == ["ARG", "FROM", "RUN", "RUN", "FROM", "COPY", "CMD"]
    assert instructions[2].line == 4 and "apt-get install" in instructions[2].args


def test_unknown_instruction(tmp_path):
    (f,) = findings(tmp_path, {"Dockerfile": "FROM alpine:3.20\nRUNN echo hi\n"}, "dockerfile")
    assert (f.rule, f.line, f.column) == ("dockerfile.unknown-instruction", 2, 1)
    assert "RUNN" in f.message


def test_from_must_come_first(tmp_path):
    found = findings(tmp_path, {"svc/Dockerfile": "ARG X=1\nRUN echo hi\nFROM alpine:3.20\n"}, "dockerfile")
    assert rules(found) == ["dockerfile.from-first"]
    assert found[0].path == "svc/Dockerfile" and found[0].line == 2


def test_exec_form_must_be_json(tmp_path):
    """Not JSON: BuildKit runs it as shell form (a warning); JSON that is not a list of strings it refuses."""
    text = "FROM alpine:3.20\nCMD ['sh', '-c', 'x']\nRUN [ \"$X\" = 1 ] && exit 0\nCMD [\"echo\", [\"nested\"]]\n"
    found = findings(tmp_path, {"Dockerfile": text}, "dockerfile")
    assert [(f.rule, f.line, f.severity.value) for f in found] == [
        ("dockerfile.exec-form", 2, "warning"),
        ("dockerfile.exec-form", 4, "error"),
    ]


def test_a_tab_separates_an_instruction_from_its_arguments(tmp_path):
    found = findings(tmp_path, {"Dockerfile": 'FROM\talpine:3.20\nCMD\t[\t"a",\t"b"\t]\n'}, "dockerfile")
    assert found == []


def test_untagged_and_latest_images_warn(tmp_path):
    found = findings(tmp_path, {"Dockerfile": "FROM python\nFROM node:latest\nFROM alpine@sha256:abc\n"}, "dockerfile")
    assert rules(found) == ["dockerfile.untagged-image"] * 2
    assert [f.line for f in found] == [1, 2]


def test_dangling_continuation_and_empty_file(tmp_path):
    """BuildKit ends an instruction continued past the end of the file there (its testfile continue-at-eof)."""
    assert findings(tmp_path, {"Dockerfile": "FROM alpine:3.20\nRUN echo \\\n"}, "dockerfile") == []
    assert rules(findings(tmp_path / "b", {"Containerfile": "# nothing\n"}, "dockerfile")) == ["dockerfile.from-first"]


def test_a_binary_file_named_dockerfile_is_one_finding(tmp_path):
    (f,) = findings(tmp_path, {"Dockerfile": b"FROM x\n\x00" + bytes(range(256)) * 100}, "dockerfile")
    assert (f.rule, f.message) == ("dockerfile.syntax", "not a text file (NUL byte)")


def test_what_buildkits_instruction_parser_refuses(tmp_path):
    """The cases an independent check found missed: ONBUILD chaining, COPY without destination, ENV without value."""
    text = (
        "FROM python:3.12\n"
        "ONBUILD ONBUILD RUN x\n"
        "ONBUILD FROM other:1\n"
        "ONBUILD MAINTAINER me\n"
        "COPY app.py\n"
        "ADD --chown=1 app.py\n"
        "ONBUILD COPY a\n"
        "ENV DEBUG\n"
        "LABEL team\n"
        "MAINTAINER --boo joe@example.com\n"
        # and what BuildKit accepts
        'ENV A B\nENV A=1 B=2\nLABEL a=b\nCOPY a b\nCOPY ["a", "b"]\nCOPY <<EOF /x\nhi\nEOF\nONBUILD RUN make\n'
    )
    found = findings(tmp_path, {"Dockerfile": text}, "dockerfile")
    assert [(f.line, f.rule) for f in found] == [
        (2, "dockerfile.onbuild"),
        (3, "dockerfile.onbuild"),
        (4, "dockerfile.onbuild"),
        (5, "dockerfile.missing-args"),
        (6, "dockerfile.missing-args"),
        (7, "dockerfile.missing-args"),
        (8, "dockerfile.missing-args"),
        (9, "dockerfile.missing-args"),
        (10, "dockerfile.unknown-flag"),
    ]
    assert found[-1].message == "unknown flag: --boo"
    assert found[0].message == "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    assert found[3].message.startswith("COPY requires at least two arguments")
    assert found[6].message == "ENV must have two arguments"
