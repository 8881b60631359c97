"""``qlcapsule export`` and ``qlcapsule import``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import UsageError
from ._common import capsule_dir, emit, is_ci, json_option, main, trust_options


def _complete_formats(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of FORMAT: every format a registered exporter writes."""
    from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only in the commands that use it, not for --help

    formats = {f for cls in registry().all("exporter") for f in (cls.name, *getattr(cls, "formats", ()))}
    return sorted(f for f in formats if f.startswith(incomplete))


@main.command("export")
@capsule_dir
@click.option(
    "-f",
    "--format",
    "fmt",
    default=None,
    metavar="FORMAT",
    shell_complete=_complete_formats,
    help="zip, tar, tar.gz, tar.xz, tar.zst, helm, terraform, terraform-dir, docker, oci, oci-dir, or a plugin's.",
)
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="PATH|-",
    help="File (or existing directory) to write; '-' streams to stdout. Default: the current directory.",
)
@click.option(
    "-O",
    "--option",
    "option_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Exporter option, merged over capsule.yaml 'exports.<exporter>'. Dotted keys nest "
    "(resources.limits.cpu=500m); JSON for lists and maps. Repeatable.",
)
@click.option(
    "--list-options",
    "list_options",
    default=None,
    metavar="FORMAT",
    shell_complete=_complete_formats,
    help="Print the options of FORMAT's exporter (type, default, help) and exit; nothing is exported.",
)
@json_option
def export_cmd(
    directory: str,
    fmt: str | None,
    output: str | None,
    option_args: tuple[str, ...],
    list_options: str | None,
    as_json: bool,
) -> None:
    """Export the sealed capsule in DIRECTORY (default: .) as FORMAT.

    The capsule must be sealed and untouched. Options are checked before any
    byte is written; the archive goes to a temp file that is renamed into
    place, and its SHA-256 is printed and written to FILE.sha256. With
    '-o -' the archive streams to stdout and the SHA-256 goes to stderr.
    The same capsule always exports to the same bytes (SOURCE_DATE_EPOCH
    sets the date inside the archive).

    \b
    Exit codes: 0 exported; 1 the capsule is not sealed or was modified;
    2 bad format, option or output path.
    """

    from ..steps.exporting import export_capsule, parse_option_args  # noqa: PLC0415 -- start-up: exporting loads only in the commands that use it, not for --help

    if list_options is not None:
        _print_options(list_options, as_json)
        return
    if fmt is None:
        raise click.MissingParameter(param_hint="'-f' / '--format'", param_type="option")
    if output == "-" and as_json:
        raise UsageError("--json cannot be combined with '-o -' (stdout carries the archive)")
    if (
        output == "-" and sys.stdout is not None and sys.stdout.isatty()
    ):  # checked before the capsule is read: no byte reaches the screen
        raise UsageError("-o -: stdout is a terminal, and the export is binary; give a file (-o FILE) or pipe it")
    result = export_capsule(directory, fmt, output, parse_option_args(option_args))
    if result.path is None:
        click.echo(f"sha256: {result.sha256}  -  ({result.size} bytes, {result.format})", err=True)
        return

    def text() -> None:
        kind = "directory" if result.directory else f"{result.size} bytes"
        click.echo(f"exported {result.capsule} as {result.format}: {result.path} ({kind})")
        click.echo(f"sha256: {result.sha256}")

    emit(as_json, result.to_dict(), text)


def _print_options(fmt: str, as_json: bool) -> None:
    """``export --list-options FORMAT``: the exporter's options, read from its model."""

    from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only in the commands that use it, not for --help
    from ._text import print_table  # noqa: PLC0415 -- start-up: the click group (click) loads only in the commands that use it, not for --help

    cls = registry().exporter_for(fmt, runnable=False)  # describing needs no SDK
    options = cls.describe_options()
    data = {"format": fmt, "exporter": cls.name, "options": options}

    def shown(option: dict[str, object]) -> str:
        if option["required"]:
            return "(required)"
        return "-" if option["default"] is None else json.dumps(option["default"], default=str)

    def text() -> None:
        if not options:
            click.echo(f"exporter {cls.name!r} ({fmt}) takes no options")
            return
        rows = [
            (
                str(o["name"]),
                str(o["type"]) + (f" ({', '.join(o['constraints'])})" if o["constraints"] else ""),
                shown(o),
                str(o["help"]) or "-",
            )
            for o in options
        ]
        title = f"exporter {cls.name!r} options (-O KEY=VALUE, or exports.{cls.name} in capsule.yaml)"
        print_table(
            ("option", "type", "default", "help"), rows, styled=sys.stdout.isatty() and not is_ci(), title=title
        )

    emit(as_json, data, text)


@main.command("import")
@click.argument("archive", type=click.Path(dir_okay=True, path_type=str))
@click.argument("dest", metavar="DIR", type=click.Path(path_type=str))
@trust_options("Trusted public key file (Ed25519 PEM or ssh-ed25519), as for verify. Repeatable.")
@click.option(
    "--drop-unlocked",
    is_flag=True,
    help="Import the locked files and leave out anything else the archive holds (named in a warning) "
    "instead of refusing it.",
)
@click.option("--max-size", default="16GiB", show_default=True, help="Refuse archives that unpack to more than this.")
@click.option("--max-files", default=200_000, show_default=True, help="Refuse archives with more entries.")
@click.option(
    "--max-ratio",
    default=200.0,
    show_default=True,
    help="Refuse entries (and compressed streams) that inflate more than this many times (bombs).",
)
@json_option
def import_cmd(
    archive: str,
    dest: str,
    keys: tuple[str, ...],
    hmac_key_envs: tuple[str, ...],
    trust: str | None,
    drop_unlocked: bool,
    max_size: str,
    max_files: int,
    max_ratio: float,
    as_json: bool,
) -> None:
    """Safely unpack a zip, tar (.tar/.gz/.xz/.zst) or OCI export into DIR and verify it.

    DIR must not exist (or be empty). The archive is unpacked into a new
    temp directory beside DIR; absolute paths, '..', backslashes, links,
    devices, duplicate or colliding names (case, Unicode normalisation) and
    bombs (size and compression-ratio limits) are refused. Only the files
    capsule.lock lists (and capsule.yaml, capsule.lock, capsule.sig) are
    imported: an archive holding anything else (.git/, __pycache__/, any
    extra file) is refused, or with --drop-unlocked imported without those.
    The capsule is verified as 'verify' does, against the keys given with
    --key, --hmac-key-env or --trust, before it is renamed to DIR; on any
    failure nothing is left behind.

    \b
    Exit codes: 0 imported and verified; 1 verification failed, or the
    archive holds files outside its lock; 2 unsafe or malformed archive,
    or DIR is not empty.
    """
    from ..format.tree import display_path  # noqa: PLC0415 -- start-up: the capsule format loads only in the commands that use it, not for --help
    from ..steps.safeimport import Limits, import_archive, parse_size  # noqa: PLC0415 -- start-up: import (archives) loads only in the commands that use it, not for --help
    from ._text import signature_text  # noqa: PLC0415 -- start-up: _text loads only for import, not for export

    limits = Limits(max_total=parse_size(max_size, "--max-size"), max_files=max_files, max_ratio=max_ratio)
    result = import_archive(
        Path(archive),
        Path(dest),
        limits=limits,
        drop_unlocked=drop_unlocked,
        keys=list(keys),
        hmac_key_envs=list(hmac_key_envs),
        trust=trust,
    )
    if result.dropped:
        shown = ", ".join(display_path(p) for p in result.dropped[:10])
        more = f" and {len(result.dropped) - 10} more" if len(result.dropped) > 10 else ""
        click.echo(f"warning: left out {len(result.dropped)} file(s) not in capsule.lock: {shown}{more}", err=True)

    def text() -> None:
        click.echo(f"imported {result.capsule} ({result.files} files, {result.format}) into {result.path}")
        click.echo(f"digest: {result.digest}")
        click.echo(f"signature: {signature_text(result.verification.get('signature') or {})}")

    emit(as_json, result.to_dict(), text)
