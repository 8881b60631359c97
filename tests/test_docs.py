"""Every command shown in README.md and docs/*.md runs, and prints what the docs say.

The convention (also in docs/commands.md, "Documentation conventions"):

- Commands live in fenced ```console blocks. A line starting with ``$ `` is a
  command (a trailing ``\\`` continues it on the next line); the other lines
  are the output the docs promise. Each such line must appear in the actual
  output (stdout and stderr as one stream), in order; ``...`` matches any text and
  a line that is only ``...`` matches nothing in particular.
- The blocks of one file run in order in one fresh temporary directory, like a
  reader following the page; ``cd`` carries over to later commands.
- An HTML comment right above a block changes how it runs, one directive per
  comment, several comments allowed:
  ``<!-- docs-test: setup: COMMAND -->`` runs COMMAND first, unseen by readers
  (so keep setups boring: create what the page assumes exists);
  ``<!-- docs-test: exit: N -->`` the block's last command must exit N (the
  others always must exit 0);
  ``<!-- docs-test: fresh -->`` start this block in a new empty directory;
  ``<!-- docs-test: skip: REASON -->`` do not run it; REASON is required and is
  printed by this test (use it only for what cannot run here: real cloud
  accounts, the network).
- ``pip install qlcapsule...`` is not run: the suite runs on the installed
  checkout, so the test checks the distribution is installed instead. Every
  other command runs for real, with ``qlcapsule`` and ``python`` from this
  environment first on PATH, ``HOME``/``QLCAPSULE_HOME`` in the temp directory,
  ``CI=1``, and ``QLCAPSULE_SOURCE`` pointing at the source checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(\w+)\s*(?::\s*(.*?))?\s*-->$")
PIP_SELF = re.compile(r"^(python -m )?pip install (-U |--upgrade )?[\"']?qlcapsule(\[[a-z,]+\])?[\"']?( |$)")


@dataclass
class Block:
    path: Path
    line: int
    commands: list[tuple[str, list[str]]] = field(default_factory=list)  # (command, expected output lines)
    setup: list[str] = field(default_factory=list)
    exit: int = 0
    fresh: bool = False
    skip: str | None = None

    @property
    def where(self) -> str:
        return f"{_rel(self.path)}:{self.line}"


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def parse(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: list[tuple[str, str | None]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = DIRECTIVE.match(line.strip())
        if m:
            pending.append((m.group(1), m.group(2)))
            i += 1
            continue
        if line.strip() == "```console":
            block = Block(path, i + 1)
            for name, arg in pending:
                if name == "setup" and arg:
                    block.setup.append(arg)
                elif name == "exit" and arg and arg.isdigit():
                    block.exit = int(arg)
                elif name == "fresh" and not arg:
                    block.fresh = True
                elif name == "skip" and arg:
                    block.skip = arg
                else:
                    raise AssertionError(f"{block.where}: bad docs-test directive {name!r} {arg!r}")
            pending = []
            i += 1
            while lines[i].strip() != "```":
                text = lines[i]
                if text.startswith("$ "):
                    cmd = text[2:]
                    while cmd.endswith("\\"):
                        i += 1
                        cmd = cmd[:-1] + "\n" + lines[i]
                    block.commands.append((cmd, []))
                elif block.commands and text.strip():
                    block.commands[-1][1].append(text)
                elif text.strip():
                    raise AssertionError(f"{block.where}: output before any '$ ' command: {text!r}")
                i += 1
            blocks.append(block)
        elif line.strip() and pending:
            raise AssertionError(f"{_rel(path)}:{i + 1}: docs-test directive not followed by a console block")
        i += 1
    return blocks


def _matches(expected: list[str], actual: str) -> str | None:
    """None when every expected line appears in order; else the first line that does not."""
    got = actual.splitlines()
    pos = 0
    for want in expected:
        if want.strip() == "...":
            continue
        pattern = re.compile(".*".join(re.escape(p) for p in want.strip().split("...")))
        while pos < len(got) and not pattern.fullmatch(got[pos].strip()):
            pos += 1
        if pos == len(got):
            return want
        pos += 1
    return None


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QLCAPSULE_", "GITHUB_", "INPUT_"))}
    home = tmp / ".home"
    home.mkdir(exist_ok=True)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(home),
        QLCAPSULE_HOME=str(home / ".qlcapsule"),
        QLCAPSULE_CACHE_DIR=str(tmp.parent / f"{tmp.name}-cache"),  # outside: the docs seal the directory they run in
        QLCAPSULE_SOURCE=str(REPO),
        QLCAPSULE_NO_PROGRESS="1",
        CI="1",
        GIT_CEILING_DIRECTORIES=str(tmp.parent),
        GIT_AUTHOR_NAME="Docs Test",
        GIT_AUTHOR_EMAIL="docs@example.com",
        GIT_COMMITTER_NAME="Docs Test",
        GIT_COMMITTER_EMAIL="docs@example.com",
        NO_COLOR="1",
        COLUMNS="200",
    )
    return env


def _run(cmd: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # one stream, interleaved as written (stderr unbuffered, stdout flushed at exit), like a terminal shows it
    return subprocess.run(
        ["bash", "-c", cmd],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_doc_commands_run(doc: Path, tmp_path: Path) -> None:
    from importlib.metadata import version

    blocks = parse(doc)
    counter = 0
    cwd = tmp_path / f"run{counter}"
    cwd.mkdir()
    env = _env(cwd)
    ran = 0
    for block in blocks:
        if block.skip:
            print(f"{block.where}: not run: {block.skip}")
            continue
        if block.fresh:
            counter += 1
            cwd = tmp_path / f"run{counter}"
            cwd.mkdir()
            env = _env(cwd)
        for cmd in block.setup:
            proc = _run(cmd, cwd, env)
            assert proc.returncode == 0, f"{block.where}: setup {cmd!r} failed:\n{proc.stdout}"
        for n, (cmd, expected) in enumerate(block.commands):
            if PIP_SELF.match(cmd):
                assert version("qlcapsule"), cmd
                rest = cmd.split("&&", 1)
                if len(rest) == 1:
                    continue
                cmd = rest[1].strip()
            if cmd.startswith("cd ") and "&&" not in cmd and ";" not in cmd:
                cwd = (cwd / os.path.expandvars(cmd[3:].strip())).resolve()
                assert cwd.is_dir(), f"{block.where}: {cmd}: no such directory"
                continue
            if cmd.startswith("export ") and "&&" not in cmd and ";" not in cmd:
                # a reader's shell keeps the variable for the next lines: so do we
                proc = _run(f"{cmd} && env -0", cwd, env)
                assert proc.returncode == 0, f"{block.where}: `{cmd}` failed:\n{proc.stdout}"
                env = dict(item.split("=", 1) for item in proc.stdout.split("\0") if "=" in item)
                continue
            proc = _run(cmd, cwd, env)
            want = block.exit if n == len(block.commands) - 1 else 0
            output = proc.stdout
            assert proc.returncode == want, f"{block.where}: `{cmd}` exited {proc.returncode}, not {want}:\n{output}"
            missing = _matches(expected, output)
            assert missing is None, f"{block.where}: `{cmd}` did not print {missing!r}; it printed:\n{output}"
            ran += 1
    if any(b.commands for b in blocks if not b.skip):
        assert ran, f"{doc}: no command ran"


def test_convention_parser(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "<!-- docs-test: setup: touch a -->\n<!-- docs-test: exit: 1 -->\n```console\n$ ls \\\n  a\na\n$ false\n```\n"
        "<!-- docs-test: skip: needs a real bucket -->\n```console\n$ aws s3 ls\n```\n"
    )
    first, second = parse(doc)
    assert first.setup == ["touch a"] and first.exit == 1
    assert first.commands == [("ls \n  a", ["a"]), ("false", [])]
    assert second.skip == "needs a real bucket"
    doc.write_text("<!-- docs-test: skip -->\n```console\n$ true\n```\n")
    with pytest.raises(AssertionError, match="bad docs-test directive"):
        parse(doc)
    assert _matches(["ok ...@1.0.0 sha256:...", "..."], "noise\nok demo@1.0.0 sha256:abc\n") is None
    assert _matches(["b", "a"], "a\nb\n") == "a"
