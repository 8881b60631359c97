"""Shared CLI machinery: the main group, error mapping, ``--json`` output."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

import click

from .. import __version__
from ..log import configure
from ._errors import handle

# Area modules under qlcapsule.cli, each adding its commands to ``main`` on import.
COMMAND_MODULES = ("core", "verify", "sign", "generate", "store", "export", "deliver", "ship")
# The module of each command, so a command imports only its own area (a test keeps this
# table complete); a name not listed loads every module.
FAST_COMMANDS = {
    **dict.fromkeys(("init", "seal", "status", "schema", "plugins"), "core"),
    "verify": "verify",
    **dict.fromkeys(("keygen", "sign"), "sign"),
    **dict.fromkeys(("new", "validate"), "generate"),
    **dict.fromkeys(("commit", "log", "tag", "branch", "diff", "checkout", "merge", "update"), "store"),
    **dict.fromkeys(("export", "import"), "export"),
    "deliver": "deliver",
    **dict.fromkeys(("ship", "hook", "hooks"), "ship"),
}


class _Group(click.Group):
    """A click group that loads command modules lazily and turns expected errors
    into one line and an exit code."""

    _all_loaded = False

    def _load(self, module: str) -> None:
        import importlib

        importlib.import_module(f"qlcapsule.cli.{module}")

    def _load_all(self) -> None:
        if not self._all_loaded:
            for module in COMMAND_MODULES:
                self._load(module)
            self._all_loaded = True
            from ..plugins.manager import registry

            registry().add_commands(self)  # plugins' commands (qlcapsule_register_commands), after the built-ins

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in FAST_COMMANDS:
            self._load(FAST_COMMANDS[cmd_name])
        if cmd_name not in self.commands:
            self._load_all()
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_all()
        return sorted(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except (KeyboardInterrupt, Exception) as exc:  # one line and an exit code (see _errors.handle)
            ctx.exit(handle(exc, debug=bool(ctx.obj and ctx.obj.get("debug"))))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="qlcapsule")
@click.option("--debug", is_flag=True, envvar="QLCAPSULE_DEBUG", help="Show tracebacks for errors.")
@click.option("-v", "--verbose", count=True, help="Structured logs on stderr (-v info, -vv debug).")
@click.option(
    "--log-format", type=click.Choice(["kv", "json"]), default="kv", show_default=True, help="Log line format."
)
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: int, log_format: str) -> None:
    """Generate, seal, sign, version, export and deliver capsules.

    \b
    Exit codes: 0 ok; 1 findings, tampering or failed verification;
    2 bad usage or bad input; 3 a remote side failed after retries.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    configure(verbose + (2 if debug else 0), log_format)


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def emit(as_json: bool, data: Any, text: Callable[[], None] | str | None = None) -> None:
    """Print ``data`` as JSON, or call/print ``text`` for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    elif callable(text):
        text()
    elif text is not None:
        click.echo(text)


def is_ci() -> bool:
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


capsule_dir = click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=str))


def trust_options(key_help: str) -> Callable[[Any], Any]:
    """--key/--hmac-key-env/--trust: the operator's trust roots, the same three options wherever a command
    checks signatures (never a capsule's policy.trust). ``key_help`` says what the keys decide there."""

    def decorate(command: Any) -> Any:
        for option in reversed(
            (
                click.option("--key", "keys", multiple=True, metavar="PUB", help=key_help),
                click.option(
                    "--hmac-key-env",
                    "hmac_key_envs",
                    multiple=True,
                    metavar="NAME",
                    help="Environment variable holding a trusted HMAC secret. Repeatable.",
                ),
                click.option(
                    "--trust",
                    metavar="FILE",
                    type=click.Path(dir_okay=False),
                    help="Trust file (YAML/JSON list of keys); replaces $QLCAPSULE_TRUST_FILE. "
                    "A capsule's own policy.trust is never used.",
                ),
            )
        ):
            command = option(command)
        return command

    return decorate
