"""What a user can find out from the command line: templates, exporter options, shell completion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qlcapsule import Exporter, hookimpl

# -- templates ---------------------------------------------------------------------------------------------------


def test_templates_lists_the_builtin_with_its_questions(qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    res = qlcapsule_cli("templates")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("fastapi-service ") and "(built-in, generator jinja)" in lines[0]
    port = next(line.split() for line in lines if line.startswith("port "))
    assert port[:3] == ["port", "int", "8000"]
    data = json.loads(qlcapsule_cli("templates", "--json").stdout)["result"]
    [builtin] = [t for t in data if t["template"] == "fastapi-service"]
    names = [q["name"] for q in builtin["questions"]]
    assert names[:2] == ["name", "resource"] and "docker" in names
    python = next(q for q in builtin["questions"] if q["name"] == "python_version")
    assert python["choices"] == ["3.10", "3.11", "3.12", "3.13"] and python["default"] == "3.12"
    assert builtin["generator"] == "jinja" and builtin["version"]


def test_templates_describes_a_template_directory(qlcapsule_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tpl = tmp_path / "tpl"
    (tpl / "files").mkdir(parents=True)
    (tpl / "template.yaml").write_text(
        "id: mine\nversion: 2.0.0\ndescription: my template\nquestions:\n"
        "  docker: {type: bool, default: true, help: with docker}\n"
        "  registry: {type: str, default: ghcr.io, when: docker}\n"
    )
    data = json.loads(qlcapsule_cli("templates", str(tpl), "--json").stdout)["result"]
    assert [(t["template"], t["version"], t["source"]) for t in data] == [("mine", "2.0.0", str(tpl))]
    assert [(q["name"], q["when"]) for q in data[0]["questions"]] == [("docker", None), ("registry", "docker")]
    text = qlcapsule_cli("templates", str(tpl)).stdout
    assert 'registry  str   "ghcr.io"  (asked when docker)' in text


def test_templates_refuses_what_is_not_a_template(qlcapsule_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = qlcapsule_cli("templates", str(tmp_path / "nothing"))
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "nothing" in res.stderr


# -- export --list-options ---------------------------------------------------------------------------------------


def test_list_options_comes_from_the_exporters_model(qlcapsule_cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from qlcapsule_plugins.exporters.zip import ZipExporter

    monkeypatch.chdir(tmp_path)
    data = json.loads(qlcapsule_cli("export", "--list-options", "zip", "--json").stdout)["result"]
    fields = ZipExporter.Options.model_fields
    assert [o["name"] for o in data["options"]] == list(fields)
    assert {o["name"]: o["default"] for o in data["options"]} == {n: f.default for n, f in fields.items()}
    level = data["options"][0]
    assert (level["type"], level["constraints"], level["help"]) == (
        "int",
        [">= 1", "<= 9"],
        fields["level"].description,
    )
    text = qlcapsule_cli("export", "--list-options", "tar.gz").stdout.splitlines()
    assert text[0].split() == ["option", "type", "default", "help"]
    assert text[1].split()[:5] == ["level", "int", "|", "None", "-"]
    assert list(tmp_path.iterdir()) == []  # listing exports nothing


def test_list_options_of_an_unknown_format_or_none_at_all(qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    res = qlcapsule_cli("export", "--list-options", "nope")
    assert res.exit_code == 2 and "unknown export format 'nope'" in res.stderr
    res = qlcapsule_cli("export")
    assert res.exit_code == 2 and "--format" in res.stderr


class _Plain(Exporter):
    name = "plain-bytes"
    formats = ("plain-bytes",)

    def export(self, capsule, out, fmt, payload):  # type: ignore[no-untyped-def]
        out.write(b"x")


class _PlainPlugin:
    @hookimpl
    def qlcapsule_register_exporters(self, register):  # type: ignore[no-untyped-def]
        register(_Plain)


def test_list_options_of_an_exporter_without_options(qlcapsule_cli, qlcapsule_plugin) -> None:  # type: ignore[no-untyped-def]
    qlcapsule_plugin(_PlainPlugin(), "plain-bytes")
    res = qlcapsule_cli("export", "--list-options", "plain-bytes")
    assert res.exit_code == 0 and res.stdout == "exporter 'plain-bytes' (plain-bytes) takes no options\n"
    assert (
        json.loads(qlcapsule_cli("export", "--list-options", "plain-bytes", "--json").stdout)["result"]["options"] == []
    )


# -- shell completion ---------------------------------------------------------------------------------------------


def _complete(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qlcapsule"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _qlcapsule_completion qlcapsule"),
        ("zsh", "#compdef qlcapsule"),
        ("fish", "complete"),
    ],
)
def test_completion_scripts_are_generated_for_each_shell(shell: str, marker: str) -> None:
    proc = _complete({"_QLCAPSULE_COMPLETE": f"{shell}_source"})
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout and f"_QLCAPSULE_COMPLETE={shell}_complete" in proc.stdout
    exe = shutil.which(shell)
    if exe is None:
        print(f"{shell} is not installed: the script's syntax is not checked")
        return
    check = subprocess.run([exe, "-n"], input=proc.stdout, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_completion_answers_commands_and_formats() -> None:
    proc = _complete({"_QLCAPSULE_COMPLETE": "bash_complete", "COMP_WORDS": "qlcapsule temp", "COMP_CWORD": "1"})
    assert proc.stdout.split() == ["plain,templates"]
    proc = _complete(
        {"_QLCAPSULE_COMPLETE": "bash_complete", "COMP_WORDS": "qlcapsule export -f tar.", "COMP_CWORD": "3"}
    )
    assert proc.stdout.split() == ["plain,tar.gz", "plain,tar.xz", "plain,tar.zst"]
