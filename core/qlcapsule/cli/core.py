"""init, seal, status, schema, plugins."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ._common import capsule_dir, emit, is_ci, json_option, main
from ._errors import envelope_schema
from ._text import print_table, seal_data, seal_text


@main.command()
@capsule_dir
@click.option("--name", help="Capsule name (default: the directory name, made a DNS label).")
@click.option("--version", "version", default="0.1.0", show_default=True, help="SemVer 2 version.")
@json_option
def init(directory: str, name: str | None, version: str, as_json: bool) -> None:
    """Write a minimal capsule.yaml for an existing DIRECTORY (never overwrites)."""
    from ..pipeline import init_capsule  # noqa: PLC0415 -- start-up: the pipeline loads only for init, not for its sibling commands or --help

    path = init_capsule(Path(directory), name=name, version=version)
    emit(as_json, {"definition": str(path)}, f"wrote {path}")


@main.command()
@capsule_dir
@json_option
def seal(directory: str, as_json: bool) -> None:
    """Write capsule.lock for DIRECTORY (atomic; an unchanged capsule is left untouched)."""
    from ..pipeline import seal_capsule  # noqa: PLC0415 -- start-up: the pipeline loads only for seal, not for its sibling commands or --help

    result = seal_capsule(Path(directory))
    emit(as_json, seal_data(result), seal_text(result))


@main.command()
@capsule_dir
@json_option
def status(directory: str, as_json: bool) -> None:
    """List files modified, added, removed or mode-changed since the last seal.

    Exit status 1 when anything differs.
    """
    from ..format.capsule import Capsule  # noqa: PLC0415 -- start-up: the capsule format loads only for status, not for --help

    capsule = Capsule.load(directory, strict=False)
    st = capsule.status()
    data = {"capsule": capsule.name, "version": capsule.version, **st.to_dict()}

    def text() -> None:
        if st.clean:
            click.echo(f"{capsule.ref}: clean")
        for line in st.lines():
            click.echo(line)

    emit(as_json, data, text)
    if not st.clean:
        raise SystemExit(1)


@main.command()
@click.argument("what", type=click.Choice(["capsule", "lock", "envelope"]), default="capsule")
@json_option
def schema(what: str, as_json: bool) -> None:
    """Print the JSON Schema of capsule.yaml, capsule.lock, or the --json answer of every command (envelope)."""
    if what == "capsule":
        from ..format.model import definition_schema  # noqa: PLC0415 -- start-up: the capsule.yaml model (pydantic, yaml) loads only for schema

        data = definition_schema()
    elif what == "lock":
        from ..format.lock import lock_schema  # noqa: PLC0415 -- start-up: the capsule format loads only in the commands that use it, not for --help

        data = lock_schema()
    else:
        data = envelope_schema()
    emit(as_json, data, json.dumps(data, indent=2))


@main.command()
@json_option
def plugins(as_json: bool) -> None:
    """List every component with its kind, formats, version, origin, status and description.

    A component whose extra is not installed is listed as unavailable, with
    the 'pip install' that makes it available; a plugin that failed to load
    is listed with its error. --json prints the same, one entry per plugin.
    """

    from ..plugins.manager import component_data, registry  # noqa: PLC0415 -- plugin: the plugin manager loads only in the commands that use it, not for --help

    reg = registry()
    infos = reg.infos()
    data = []
    for p in infos:
        d = p.to_dict()
        d["components"] = [component_data(reg.components[k][n]) for k, n in p.components]
        data.append(d)

    def text() -> None:
        rows: list[tuple[str, ...]] = []
        for p, d in zip(infos, data, strict=True):
            version = p.version or "-"
            for c in d["components"]:
                uses = " ".join(c.get("formats", ())) or (c["name"] if c["kind"] == "deliverer" else "-")
                status = "available" if c["available"] else f"unavailable: no {', '.join(c['missing'])}; {c['install']}"
                rows.append((c["kind"], c["name"], uses, version, d["origin"], status, c["description"]))
            if not d["components"]:
                status = p.status + (f": {p.error}" if p.error else "")
                rows.append(("plugin", p.name, "-", version, d["origin"], status, ""))
        header = ("kind", "name", "formats/provider", "version", "origin", "status", "description")
        print_table(header, rows, styled=sys.stdout.isatty() and not is_ci(), title="qlcapsule plugins")

    emit(as_json, data, text)
