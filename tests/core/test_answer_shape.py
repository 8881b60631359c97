"""One answer shape: the exit codes and the ``--json`` answer of every command, on the same bad inputs.

The cases are the table "Bad input, command by command" in docs/commands.md: the doc is the one
source, this test runs each row through the real console entry (``qlcapsule_cli``), with and
without ``--json``, and checks the exit code, that stdout is exactly one JSON document valid
against ``qlcapsule schema envelope``, ``error.key`` and ``error.file``, and that nothing in the
directory was written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jsonschema
import pygit2
import pytest

from qlcapsule.testing import write_capsule

DOC = Path(__file__).resolve().parents[2] / "docs" / "commands.md"
HEADING = "## Bad input, command by command"
ROW = re.compile(
    r"^\| `qlcapsule (?P<argv>[^`]+)` \| (?P<what>[^|]+) \| (?P<exit>\d+) \| (?P<key>[^|]+) \| (?P<file>[^|]+) \|$"
)


class Case(NamedTuple):
    argv: list[str]
    what: str
    exit_code: int
    key: str | None
    file: str | None

    @property
    def id(self) -> str:
        return " ".join(self.argv)

    @property
    def command(self) -> str:
        """What the answer's ``command`` says: the command's words, or the program for an unknown one."""
        from qlcapsule.cli._common import main

        main.list_commands(None)  # type: ignore[arg-type]  # the built-in commands and the plugins' ones
        words: list[str] = []
        group: Any = main
        for word in self.argv:
            sub = getattr(group, "commands", {}).get(word)
            if sub is None:
                break
            words.append(word)
            group = sub
        return " ".join(words) or "qlcapsule"

    def json_argv(self) -> list[str]:
        """``--json`` among the options: before a hook's ``--``, else at the end."""
        if "--" in self.argv:
            i = self.argv.index("--")
            return [*self.argv[:i], "--json", *self.argv[i:]]
        return [*self.argv, "--json"]


def _cell(text: str) -> str | None:
    text = text.strip()
    return None if text == "—" else text.strip("`")


def doc_cases() -> list[Case]:
    """The rows of the table under :data:`HEADING` in docs/commands.md."""
    lines = DOC.read_text(encoding="utf-8").split(HEADING, 1)[1].splitlines()
    cases = []
    for line in lines:
        if line.startswith("## "):
            break
        m = ROW.match(line.strip())
        if m:
            argv = shlex.split(m["argv"])
            cases.append(Case(argv, m["what"].strip(), int(m["exit"]), _cell(m["key"]), _cell(m["file"])))
    return cases


CASES = doc_cases()


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content digest (or link target, or "dir")."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the table describes (built once: no row may change it)."""
    from click.testing import CliRunner

    from qlcapsule.cli import main

    root = tmp_path_factory.mktemp("bad-input")
    write_capsule(root / "good", {"a.txt": "a\n"}, name="good", version="1.0.0")
    write_capsule(root / "findings", {"bad.py": "x = (\n"}, name="findings", version="1.0.0")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("notes\n", encoding="utf-8")
    (root / "badyaml").mkdir()
    (root / "badyaml" / "capsule.yaml").write_text("name: [\n", encoding="utf-8")
    (root / "typo").mkdir()
    (root / "typo" / "capsule.yaml").write_text("name: typo\nverison: 0.1.0\n", encoding="utf-8")
    (root / "binary").mkdir()
    (root / "binary" / "capsule.yaml").write_bytes(b"name: \xff\xfe\n")
    write_capsule(root / "tampered", {"a.txt": "a\n"}, name="tampered", version="1.0.0")
    (root / "tampered" / "a.txt").write_text("b\n", encoding="utf-8")
    write_capsule(root / "symlinked", {"a.txt": "a\n", "b.txt": "b\n"}, name="symlinked", version="1.0.0")
    (root / "symlinked" / "a.txt").unlink()
    (root / "symlinked" / "a.txt").symlink_to("b.txt")
    pygit2.init_repository(str(root / "st.git"), bare=True)
    (root / "keys").mkdir()  # keygen writes the key file, not its folder
    cwd = os.getcwd()
    os.chdir(root)
    try:
        runner = CliRunner()
        for argv in (["keygen", "-o", "keys/k.key"], ["export", "good", "-f", "zip", "-o", "good.zip"]):
            res = runner.invoke(main, argv)
            assert res.exit_code == 0, res.output
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture(scope="module")
def envelope_schema() -> dict[str, Any]:
    from qlcapsule.cli._errors import envelope_schema as schema

    return schema()


def _changes(before: dict[str, str], after: dict[str, str]) -> set[str]:
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    # known, and reported: a commit whose files turn out tampered has already written their blobs
    # (unreferenced loose objects) into the store by the time it refuses
    return {p for p in changed if not p.startswith("st.git/objects/")}


def test_the_table_is_there_and_covers_every_command() -> None:
    from qlcapsule.cli._common import main

    main.list_commands(None)  # type: ignore[arg-type]  # loads every command module
    names = set()
    for name, command in main.commands.items():
        sub = getattr(command, "commands", None)
        names |= {f"{name} {s}" for s in sub} if sub else {name}
    covered = {c.command for c in CASES}
    covered |= {" ".join(c.split()[:2]) for c in covered}  # a row for 'catalog token create' covers 'catalog token'
    assert len(CASES) >= 80
    assert names <= covered, f"commands without a bad-input row in docs/commands.md: {sorted(names - covered)}"
    assert {c.exit_code for c in CASES} == {1, 2}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_row(
    case: Case,
    workspace: Path,
    envelope_schema: dict[str, Any],
    qlcapsule_cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(workspace)
    env = {"QLCAPSULE_NO_PROGRESS": "1"}
    before = _snapshot(workspace)

    plain = qlcapsule_cli(*case.argv, env=env)
    assert plain.exit_code == case.exit_code, plain.output
    assert "Traceback" not in plain.output
    if case.key or case.file:
        assert plain.stderr.splitlines()[-1].strip(), "an error is said on stderr"

    answered = qlcapsule_cli(*case.json_argv(), env=env)
    assert answered.exit_code == case.exit_code, answered.output
    doc = json.loads(answered.stdout)  # exactly one JSON document: anything else on stdout fails here
    jsonschema.validate(doc, envelope_schema)
    assert doc["ok"] is False and doc["exit_code"] == case.exit_code and doc["command"] == case.command
    error = doc["error"]
    if error is not None:
        assert error["message"] and error["message"].splitlines()[0] in answered.stderr
        assert (error["key"], error["file"]) == (case.key, case.file)
    else:  # a command that ran and reports what it found: no error line, its data in result
        assert case.exit_code == 1 and doc["result"] is not None and (case.key, case.file) == (None, None)
        assert "error:" not in answered.stderr
    assert _changes(before, _snapshot(workspace)) == set(), "a refused command wrote nothing"


# -- the answer on success, the schema, an internal error -------------------------------------------


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["seal", "good"], "digest"),
        (["verify", "good"], "signature"),
        (["status", "good"], "clean"),
        (["validate", "good"], "capsules"),
        (["schema", "lock"], "$schema"),
    ],
)
def test_success_is_the_same_envelope(
    argv: list[str],
    key: str,
    workspace: Path,
    envelope_schema: dict[str, Any],
    qlcapsule_cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(workspace)
    res = qlcapsule_cli(*argv, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, envelope_schema)
    assert (doc["ok"], doc["command"], doc["exit_code"], doc["error"]) == (True, argv[0], 0, None)
    assert key in doc["result"]


def test_schema_envelope_prints_the_model_schema(qlcapsule_cli: Callable[..., Any], envelope_schema: dict) -> None:
    res = qlcapsule_cli("schema", "envelope")
    assert res.exit_code == 0 and json.loads(res.stdout) == envelope_schema
    assert envelope_schema["required"] == ["ok", "command", "exit_code", "error", "result"]
    jsonschema.Draft202012Validator.check_schema(envelope_schema)
    # the schema refuses what is not the envelope
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"ok": True, "exit_code": 0, "error": None, "result": None}, envelope_schema)


def test_validate_json_and_a_report_on_stdout_are_refused(
    workspace: Path, qlcapsule_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace)
    res = qlcapsule_cli("validate", "good", "--format", "sarif", "--json")
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["message"].startswith("--json prints the answer")
    res = qlcapsule_cli("validate", "good", "--format", "sarif", "-o", str(workspace.parent / "r.sarif"), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["result"]["passed"] is True
    assert json.loads((workspace.parent / "r.sarif").read_text())["version"] == "2.1.0"


def test_an_internal_error_is_answered_too(
    workspace: Path,
    envelope_schema: dict[str, Any],
    qlcapsule_cli: Callable[..., Any],
    qlcapsule_plugin: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug (here a plugin's exporter raising RuntimeError) is exit 70, one line, and still one answer."""
    from qlcapsule import Exporter, hookimpl

    class Broken(Exporter):
        name = "broken"
        formats = ("broken",)
        extension = ".broken"

        def export(self, capsule: Any, payload: Any, out: Any, fmt: str) -> None:
            raise RuntimeError("the exporter broke")

    class Plugin:
        @hookimpl
        def qlcapsule_register_exporters(self, register: Any) -> None:
            register(Broken)

    qlcapsule_plugin(Plugin(), "broken-exporter")
    monkeypatch.chdir(workspace)
    out = str(workspace.parent / "x.broken")
    res = qlcapsule_cli("export", "good", "-f", "broken", "-o", out, "--json")
    assert res.exit_code == 70, res.output
    assert res.stderr.startswith("error: internal error: RuntimeError: the exporter broke (run with --debug")
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, envelope_schema)
    assert doc["error"]["message"] == "internal error: RuntimeError: the exporter broke"
    # --debug after the command: the traceback instead of the line
    res = qlcapsule_cli("export", "good", "-f", "broken", "-o", out, "--debug")
    assert res.exit_code == 70 and "Traceback" in res.stderr and "RuntimeError: the exporter broke" in res.stderr


# -- global options anywhere ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "--log-format", "json", "seal", "{c}"],
        ["seal", "{c}", "-v", "--log-format", "json"],
        ["--log-format", "kv", "seal", "-v", "{c}", "--log-format", "json"],
    ],
    ids=["before", "after", "both: the last --log-format wins"],
)
def test_global_options_before_or_after_the_command(
    argv: list[str], make_capsule: Callable[..., Any], qlcapsule_cli: Callable[..., Any]
) -> None:
    capsule = make_capsule({"a": "b"}, seal=False)
    res = qlcapsule_cli(*(a.format(c=capsule.root) for a in argv))
    assert res.exit_code == 0, res.output
    record = json.loads(next(ln for ln in res.stderr.splitlines() if "seal.done" in ln))
    assert record["level"] == "info" and record["written"] is True


def test_verbose_counts_over_both_places(make_capsule: Callable[..., Any], qlcapsule_cli: Callable[..., Any]) -> None:
    from qlcapsule import log

    capsule = make_capsule({"a": "b"})
    quiet = qlcapsule_cli("-v", "verify", str(capsule.root))
    assert quiet.exit_code == 0 and "level=info" in quiet.stderr
    assert log._threshold == log.INFO  # the level the run configured (no command logs at debug level yet)
    loud = qlcapsule_cli("-v", "verify", str(capsule.root), "-v")
    assert loud.exit_code == 0 and log._threshold == log.DEBUG
    log.configure()


def test_debug_after_the_command_and_after_a_hook(tmp_path: Path, qlcapsule_cli: Callable[..., Any]) -> None:
    res = qlcapsule_cli("verify", str(tmp_path), "--debug")
    assert res.exit_code == 2 and "Traceback" in res.stderr and "DefinitionError" in res.stderr
    res = qlcapsule_cli("hook", "verify", "--debug", "--", str(tmp_path / "x"))
    assert res.exit_code == 0, res.output  # a file outside every capsule: nothing to do, --debug accepted
    res = qlcapsule_cli("verify", str(tmp_path), "--log-format", "xml")
    assert res.exit_code == 2 and "--log-format" in res.stderr


# -- paths as the user gave them -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["seal", "typo"], "error: typo/capsule.yaml:1: version: required key is missing"),
        (["verify", "typo"], "error: typo/capsule.yaml:1: version: required key is missing"),
        (["commit", "typo", "--store", "st.git"], "error: typo/capsule.yaml:1: version: required key is missing"),
        (["verify", "tampered"], "error: tampered: modified: a.txt"),
        (["export", "tampered", "-f", "zip", "-o", "x.zip"], "error: tampered: modified: a.txt"),
        (["deliver", "tampered"], "error: tampered: modified: a.txt"),
        (["verify", "./good", "--require-signature"], "error: good/capsule.sig: missing: the capsule is not signed"),
        (["deliver", "good", "-t", "nope"], "error: good/capsule.yaml: targets: no target 'nope'"),
        (["import", "good.zip", "good"], "error: good: exists and is not empty"),
    ],
)
def test_messages_name_paths_as_given(
    argv: list[str], line: str, workspace: Path, qlcapsule_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative capsule directory stays relative in the message (it once came back absolute)."""
    monkeypatch.chdir(workspace)
    res = qlcapsule_cli(*argv)
    assert res.exit_code in (1, 2) and res.stderr.startswith(line), res.stderr
    assert str(workspace) not in res.stderr


def test_every_option_error_is_named_with_the_key_meant(
    workspace: Path, qlcapsule_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exporter's options (capsule.yaml exports: and -O) list every error, not the first."""
    monkeypatch.chdir(workspace)
    res = qlcapsule_cli("export", "good", "-f", "tar.gz", "-O", "levl=9", "-O", "nosuch=1", "-o", "x.tgz", "--json")
    assert res.exit_code == 2 and not (workspace / "x.tgz").exists()
    assert json.loads(res.stdout)["error"]["message"].endswith(
        ": levl: unknown key (did you mean level?); nosuch: unknown key"
    )
