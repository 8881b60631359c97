"""init, seal, status, schema, plugins."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import InputError
from ._common import capsule_dir, emit, json_option, main
from ._text import seal_data, seal_text


@main.command()
@capsule_dir
@click.option("--name", help="Capsule name (default: the directory name, made a DNS label).")
@click.option("--version", "version", default="0.1.0", show_default=True, help="SemVer 2 version.")
@json_option
def init(directory: str, name: str | None, version: str, as_json: bool) -> None:
    """Write a minimal capsule.yaml for an existing DIRECTORY (never overwrites)."""
    from ..pipeline import init_capsule

    path = init_capsule(Path(directory), name=name, version=version)
    emit(as_json, {"definition": str(path)}, f"wrote {path}")


@main.command()
@capsule_dir
@json_option
def seal(directory: str, as_json: bool) -> None:
    """Write capsule.lock for DIRECTORY (atomic; an unchanged capsule is left untouched)."""
    from ..pipeline import seal_capsule

    result = seal_capsule(Path(directory))
    emit(as_json, seal_data(result), seal_text(result))


@main.command()
@capsule_dir
@json_option
def status(directory: str, as_json: bool) -> None:
    """List files modified, added, removed or mode-changed since the last seal.

    Exit status 1 when anything differs.
    """
    from ..format.capsule import Capsule

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
        from ..format.model import definition_schema

        data = definition_schema()
    elif what == "lock":
        from ..format.lock import lock_schema

        data = lock_schema()
    else:
        from ._errors import envelope_schema

        data = envelope_schema()
    emit(as_json, data, json.dumps(data, indent=2))


@main.command()
@json_option
def plugins(as_json: bool) -> None:
    """List plugins: distribution, version, components and load status."""
    from ..plugins.manager import registry

    reg = registry()
    infos = reg.infos()

    def formats(kind: str, name: str) -> list[str]:
        """An exporter's formats (what ``export --format`` accepts besides its name)."""
        cls = reg.components.get(kind, {}).get(name) if kind == "exporter" else None
        return list(getattr(cls, "formats", ()))

    def label(kind: str, name: str) -> str:
        fmts = formats(kind, name)
        return f"{kind}:{name}" + (f" [{' '.join(fmts)}]" if fmts and fmts != [name] else "")

    def data() -> list[dict[str, object]]:
        out = []
        for p in infos:
            d = p.to_dict()
            for comp in d["components"]:
                if comp["kind"] == "exporter":
                    comp["formats"] = formats("exporter", comp["name"])
            out.append(d)
        return out

    def text() -> None:
        for p in infos:
            comps = ", ".join(label(k, n) for k, n in p.components) or "-"
            where = f"{p.distribution or '(in-process)'} {p.version or ''}".strip()
            line = f"{p.name:28} {p.status:8} {where:24} {comps}"
            if p.error:
                line += f"  ({p.error})"
            click.echo(line)

    emit(as_json, data() if as_json else [], text)
    if any(p.status == "failed" for p in infos) and not infos:
        raise InputError("no plugins could be loaded")
