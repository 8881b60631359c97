"""qlcapsule_register_commands: plugins add CLI commands through pm.hook, after the built-ins, and a broken or
greedy plugin fails by name while the others keep working."""

from __future__ import annotations

import types
from typing import Any

import click
import pytest
from click.testing import CliRunner

from qlcapsule import hookimpl
from qlcapsule.cli import main
from qlcapsule.plugins.manager import build_manager


def _plugin(name: str, **hooks: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(module, hook, fn)
    return module


@pytest.fixture
def only_these(monkeypatch: pytest.MonkeyPatch) -> None:
    """The manager built in the test sees only its in-process plugins (not the catalog service's entry point)."""
    monkeypatch.setenv("QLCAPSULE_DISABLED_PLUGINS", "commands.server")


def _group() -> click.Group:
    group = click.Group("qlcapsule")

    @group.command()
    def seal() -> None:
        click.echo("built-in seal")

    return group


def test_a_plugin_adds_commands_through_the_hook(only_these: None) -> None:
    def qlcapsule_register_commands(cli: click.Group) -> None:
        @cli.command()
        def hello() -> None:
            click.echo("hello from a plugin")

    reg = build_manager(
        [("greeter", _plugin("greeter", qlcapsule_register_commands=hookimpl(qlcapsule_register_commands)))]
    )
    group = _group()
    reg.add_commands(group)
    assert sorted(group.commands) == ["hello", "seal"]
    assert CliRunner().invoke(group, ["hello"]).output == "hello from a plugin\n"


def test_pluggy_features_work_for_command_hooks() -> None:
    """specname= and tryfirst: the hook is dispatched by pluggy, not looked up by hand."""
    order: list[str] = []

    def first(cli: click.Group) -> None:
        order.append("first")

    def second(cli: click.Group) -> None:
        order.append("second")

    reg = build_manager(
        [
            ("b", _plugin("b", add=hookimpl(specname="qlcapsule_register_commands", tryfirst=True)(first))),
            ("a", _plugin("a", qlcapsule_register_commands=hookimpl(second))),
        ]
    )
    reg.add_commands(_group())
    assert order == ["first", "second"]


def test_taking_a_builtin_name_or_raising_fails_only_that_plugin(only_these: None) -> None:
    def greedy(cli: click.Group) -> None:
        @cli.command("seal")
        def fake_seal() -> None:
            click.echo("not the real seal")

    def broken(cli: click.Group) -> None:
        @cli.command()
        def half() -> None: ...

        raise RuntimeError("boom")

    def good(cli: click.Group) -> None:
        @cli.command()
        def hello() -> None:
            click.echo("hello")

    reg = build_manager(
        [
            ("greedy", _plugin("greedy", qlcapsule_register_commands=hookimpl(greedy))),
            ("broken", _plugin("broken", qlcapsule_register_commands=hookimpl(broken))),
            ("good", _plugin("good", qlcapsule_register_commands=hookimpl(good))),
        ]
    )
    group = _group()
    reg.add_commands(group)
    assert sorted(group.commands) == ["hello", "seal"]
    assert CliRunner().invoke(group, ["seal"]).output == "built-in seal\n"
    assert reg.plugins["greedy"].status == "failed"
    assert reg.plugins["greedy"].error == "PluginError: command 'seal' is a built-in qlcapsule command"
    assert reg.plugins["broken"].status == "failed" and reg.plugins["broken"].error == "RuntimeError: boom"
    assert reg.plugins["good"].status == "loaded"


def test_the_catalog_service_is_a_plugin_of_the_cli() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "serve " in result.output and "catalog " in result.output
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0
    assert '"commands.server"' in result.output


@pytest.mark.parametrize("command", [["serve", "--help"], ["catalog", "token", "create", "--help"]])
def test_the_server_commands_have_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0 and "Usage: " in result.output
