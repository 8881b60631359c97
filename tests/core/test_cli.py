"""CLI behaviour: exit codes, --json, one-line errors, --debug, structured logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qlcapsule", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_init_seal_verify_on_a_plain_tree(tmp_path: Path, qlcapsule_cli) -> None:
    project = tmp_path / "My_Project.v2"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text("print(1)\n")
    result = qlcapsule_cli("init", str(project), "--json")
    assert result.exit_code == 0, result.output
    assert "name: my-project-v2" in (project / "capsule.yaml").read_text()
    again = qlcapsule_cli("init", str(project))
    assert again.exit_code == 2 and "already exists; not overwriting" in again.stderr
    sealed = qlcapsule_cli("seal", str(project), "--json")
    data = json.loads(sealed.stdout)["result"]
    assert data["written"] is True and data["files"] == 2 and len(data["digest"]) == 64
    assert json.loads(qlcapsule_cli("seal", str(project), "--json").stdout)["result"]["written"] is False
    verified = qlcapsule_cli("verify", str(project), "--json")
    assert verified.exit_code == 0
    assert json.loads(verified.stdout)["result"]["digest"] == data["digest"]
    status = qlcapsule_cli("status", str(project), "--json")
    assert status.exit_code == 0 and json.loads(status.stdout)["result"]["clean"] is True


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["seal", "/nonexistent/dir"], 2, "no such directory"),
        (["verify", "."], 2, "no capsule.yaml here"),
        (["init", ".", "--name", "Bad Name"], 2, "--name: 'Bad Name' is not a DNS label"),
        (["init", ".", "--version", "v1"], 2, "--version: 'v1' is not a SemVer"),
        (["schema", "nothing"], 2, "Invalid value"),
        (["no-such-command"], 2, "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == code
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_traceback(tmp_path: Path) -> None:
    proc = _run("--debug", "verify", str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "DefinitionError" in proc.stderr


def test_verbose_logs_are_structured(make_capsule) -> None:
    capsule = make_capsule({"a": "b"}, seal=False)
    proc = _run("-v", "seal", str(capsule.root))
    line = next(ln for ln in proc.stderr.splitlines() if "event=seal.done" in ln)
    assert "level=info" in line and "capsule=demo@1.0.0" in line and "digest=" in line
    proc = _run("-v", "--log-format", "json", "seal", str(capsule.root))
    record = json.loads(next(ln for ln in proc.stderr.splitlines() if "seal.done" in ln))
    assert record["written"] is False and record["level"] == "info"


def test_redacted_values_never_reach_logs(make_capsule) -> None:
    from qlcapsule.log import redact, scrub

    redact("canary-SECRET-1234")
    assert scrub("token=canary-SECRET-1234 end") == "token=*** end"


def test_help_documents_exit_codes() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "Exit codes: 0 ok; 1 findings" in proc.stdout
    for command in ("init", "seal", "verify", "status", "schema", "plugins"):
        assert command in proc.stdout


def test_unreadable_file_is_one_line(make_capsule) -> None:
    if os.geteuid() == 0:
        # root reads everything; use an unreadable directory entry type instead
        capsule = make_capsule({"a": "a"}, seal=False)
        os.mkfifo(capsule.root / "fifo")
        proc = _run("seal", str(capsule.root))
        assert proc.returncode == 2 and "fifo: is not a regular file" in proc.stderr
    else:
        capsule = make_capsule({"a": "a"}, seal=False)
        os.chmod(capsule.root / "a", 0)
        proc = _run("seal", str(capsule.root))
        assert proc.returncode == 2 and "a: permission denied" in proc.stderr


def test_broken_pipe_is_quiet(make_capsule) -> None:
    proc = subprocess.run(
        f"{sys.executable} -m qlcapsule schema capsule | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr and "Broken pipe" not in proc.stderr


def test_every_command_is_mapped_to_its_module() -> None:
    """Commands start fast by importing only their own module: the table must be complete and right."""
    import importlib

    from qlcapsule.cli import _common

    main = _common.main
    main.list_commands(None)  # loads every module (and the plugins' commands, qlcapsule_register_commands)
    builtin = {n for n, c in main.commands.items() if c.callback and c.callback.__module__.startswith("qlcapsule.cli.")}
    assert builtin == set(_common.FAST_COMMANDS)
    for name, module in _common.FAST_COMMANDS.items():
        mod = importlib.import_module(f"qlcapsule.cli.{module}")
        assert main.commands[name].callback.__module__ == mod.__name__, name


@pytest.mark.parametrize(
    "args",
    [["verify"], ["deliver", "--dry-run"], ["hook", "verify", "--json", "--"]],
    ids=["verify", "deliver", "hook verify"],
)
def test_json_failure_lists_every_capsule_yaml_error(tmp_path: Path, qlcapsule_cli, args: list[str]) -> None:
    """A typo next to a missing key: --json carries both, each with file, line and key."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "capsule.yaml").write_text("name: c\nverison: 0.1.0\nfoo: 1\n", encoding="utf-8")
    if args[0] == "hook":
        res = qlcapsule_cli(*args, str(root / "capsule.yaml"))
        errors = json.loads(res.stdout)["result"]["capsules"][0]["errors"]
    else:
        res = qlcapsule_cli(args[0], str(root), *args[1:], "--json")
        errors = json.loads(res.stdout)["error"]["problems"]
    assert res.exit_code == 2, res.output
    assert [(e["line"], e["key"], e["message"]) for e in errors] == [
        (1, "version", "required key is missing"),
        (2, "verison", "unknown key (did you mean version?)"),
        (3, "foo", "unknown key"),
    ]
    assert all(e["file"].endswith("capsule.yaml") for e in errors)
