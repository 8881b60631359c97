"""Shared CLI machinery: the main group, the global options, error mapping, the one ``--json`` answer."""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any, Callable

import click

from .. import __version__
from ..log import configure, scrub
from ._errors import Failure, envelope, handle, usage_failure

# Area modules under qlcapsule.cli, each adding its commands to ``main`` on import.
COMMAND_MODULES = ("core", "verify", "sign", "generate", "store", "export", "deliver", "ship")
# The module of each command, so a command imports only its own area (a test keeps this
# table complete); a name not listed loads every module.
FAST_COMMANDS = {
    **dict.fromkeys(("init", "seal", "status", "schema", "plugins"), "core"),
    "verify": "verify",
    **dict.fromkeys(("keygen", "sign"), "sign"),
    **dict.fromkeys(("new", "validate", "templates"), "generate"),
    **dict.fromkeys(("commit", "log", "tag", "branch", "diff", "checkout", "merge", "update"), "store"),
    **dict.fromkeys(("export", "import"), "export"),
    "deliver": "deliver",
    **dict.fromkeys(("ship", "hook", "hooks"), "ship"),
}


# The global options: given before the command or anywhere after it (``qlcapsule verify . --debug``).
# Every command and group of the CLI carries them (added by the classes below, never by hand); what the
# group and the command each parsed is merged: --debug if either said so, -v counted over both, the
# last --log-format given.
_GLOBALS = "qlcapsule.globals"
# The ``--json`` answer being collected for this command line (see :func:`emit`).
_ANSWER = "qlcapsule.answer"


def _global_options(*, hidden: bool) -> list[click.Option]:
    return [
        click.Option(
            ["--debug"], is_flag=True, envvar="QLCAPSULE_DEBUG", hidden=hidden, help="Show tracebacks for errors."
        ),
        click.Option(
            ["-v", "--verbose"], count=True, hidden=hidden, help="Structured logs on stderr (-v info, -vv debug)."
        ),
        click.Option(
            ["--log-format"], type=click.Choice(["kv", "json"]), hidden=hidden, help="Log line format (default: kv)."
        ),
    ]


def _apply_globals(ctx: click.Context) -> None:
    """Take the global options out of ``ctx.params`` and apply them, merged with those parsed before."""
    given = {k: ctx.params.pop(k, None) for k in ("debug", "verbose", "log_format")}
    state = ctx.meta.setdefault(_GLOBALS, {"debug": False, "verbose": 0, "log_format": "kv"})
    state["debug"] = state["debug"] or bool(given["debug"])
    state["verbose"] += given["verbose"] or 0
    if given["log_format"]:
        state["log_format"] = given["log_format"]
    configure(state["verbose"] + (2 if state["debug"] else 0), state["log_format"])


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.meta.get(_GLOBALS, {}).get("debug"))


class _Answer:
    """The ``--json`` answer of one command line: printed once, whatever happens (see :func:`emit`)."""

    def __init__(self, command: str, as_json: bool) -> None:
        self.command, self.as_json = command, as_json
        self.result: Any = None
        self.printed = False

    def finish(self, exit_code: int, error: Failure | None) -> None:
        if not self.as_json or self.printed:
            return
        self.printed = True
        doc = envelope(self.command, exit_code, error, self.result)
        click.echo(scrub(json.dumps(doc, indent=2, default=str)))  # no registered secret, even in a result


def _asks_json(args: list[str]) -> bool:
    """Whether ``--json`` is among the options of a command line that click could not parse."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _answer(ctx: click.Context) -> _Answer | None:
    return ctx.meta.get(_ANSWER)


class Command(click.Command):
    """Every command: the global options, and exactly one ``--json`` answer whatever happens.

    The answer is printed when the command ends: its data (what it passed to :func:`emit`) as
    ``result``, its exit code, and the error it raised (the same words as the stderr line).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options(hidden=True))

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        if parent is not None:  # the answer exists before any parsing (a subclass may refuse args first)
            name = f"{parent.command_path.partition(' ')[2]} {info_name or self.name}".strip()
            # asked for --json: answered with one document, also when this command has no --json (a usage error)
            parent.meta[_ANSWER] = _Answer(name, _asks_json(list(args)))
        return super().make_context(info_name, args, parent, **extra)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        answer = _answer(ctx) or _Answer(ctx.command_path, False)
        try:
            rest = super().parse_args(ctx, args)
        except click.ClickException as exc:
            answer.finish(exc.exit_code, usage_failure(exc))
            raise
        answer.as_json = bool(ctx.params.get("as_json"))  # what click parsed decides from here on
        _apply_globals(ctx)
        return rest

    def invoke(self, ctx: click.Context) -> Any:
        answer = _answer(ctx)
        try:
            rv = super().invoke(ctx)
        except click.exceptions.Exit as exc:
            if answer:
                answer.finish(exc.exit_code, None)
            raise
        except SystemExit as exc:  # a command's own exit status (findings: 1)
            if answer:
                answer.finish(exc.code if isinstance(exc.code, int) else 1, None)
            raise
        except click.ClickException as exc:
            if answer:
                answer.finish(exc.exit_code, usage_failure(exc))
            raise
        except click.exceptions.Abort:  # a prompt answered with Ctrl-D: click says "Aborted!", exit 1
            if answer:
                answer.finish(1, Failure("aborted", 1))
            raise
        except (KeyboardInterrupt, Exception) as exc:  # one line and an exit code (see _errors.handle)
            code, found = handle(exc, debug=_debug(ctx))
            if answer:
                answer.finish(code, found)
            ctx.exit(code)
        if answer:
            answer.finish(0, None)
        return rv


class _SubGroup(click.Group):
    """A group below ``main`` (``hook``, ``hooks``): global options, and commands that answer."""

    command_class = Command

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options(hidden=True))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        _apply_globals(ctx)
        return rest


def _adopt(cmd: click.Command) -> click.Command:
    """A plugin's plain click command or group, made to answer like every built-in one: the global options
    anywhere and one ``--json`` answer (its :func:`emit` data as ``result``), with its subcommands."""
    if type(cmd) is click.Command:
        cmd.__class__ = Command
        cmd.params.extend(_global_options(hidden=True))
    elif type(cmd) is click.Group:
        cmd.__class__ = _SubGroup
        cmd.params.extend(_global_options(hidden=True))
    for sub in getattr(cmd, "commands", {}).values():
        _adopt(sub)
    return cmd


class _Group(click.Group):
    """A click group that loads command modules lazily and turns expected errors
    into one line and an exit code."""

    _all_loaded = False
    command_class = Command
    group_class = _SubGroup

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options(hidden=False))

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(_adopt(cmd), name)

    def _load(self, module: str) -> None:
        importlib.import_module(f"qlcapsule.cli.{module}")

    def _load_all(self) -> None:
        if not self._all_loaded:
            for module in COMMAND_MODULES:
                self._load(module)
            self._all_loaded = True
            from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only in the commands that use it, not for --help

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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # until a command has parsed its own options, "--json" anywhere asks for the JSON answer
        named = next((a for a in args if a in FAST_COMMANDS), ctx.command_path)
        ctx.meta[_ANSWER] = _Answer(named, _asks_json(list(args)))
        try:
            rest = super().parse_args(ctx, args)
        except click.ClickException as exc:
            ctx.meta[_ANSWER].finish(exc.exit_code, usage_failure(exc))
            raise
        _apply_globals(ctx)
        return rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except click.ClickException as exc:  # no such command, or a command line a command refused
            answer = _answer(ctx)
            if answer:
                answer.finish(exc.exit_code, usage_failure(exc))
            raise
        except (KeyboardInterrupt, Exception) as exc:  # one line and an exit code (see _errors.handle)
            code, found = handle(exc, debug=_debug(ctx))
            answer = _answer(ctx)
            if answer:
                answer.finish(code, found)
            ctx.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="qlcapsule")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Generate, seal, sign, version, export and deliver capsules.

    \b
    --debug, -v and --log-format may also follow the command
    (qlcapsule verify . --debug). With --json every command prints
    exactly one JSON answer on stdout (qlcapsule schema envelope).

    \b
    Exit codes: 0 ok; 1 findings, tampering or failed verification;
    2 bad usage or bad input; 3 a remote side failed after retries;
    70 an internal error.
    """
    ctx.ensure_object(dict)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON answer on stdout (qlcapsule schema envelope)."
)


def emit(as_json: bool, data: Any, text: Callable[[], None] | str | None = None) -> None:
    """The command's answer: under ``--json`` ``data`` becomes the ``result`` of the one JSON answer
    (printed when the command ends, see :class:`Command`); else call or print ``text`` for people."""
    if as_json:
        ctx = click.get_current_context(silent=True)
        answer = _answer(ctx) if ctx is not None else None
        if answer is not None and answer.as_json:
            answer.result = data
            return
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))  # outside a qlcapsule command line
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
