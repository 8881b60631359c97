"""``qlcapsule new``: generate a capsule from a template, record how, and seal it.

The generator renders into a temporary directory next to the destination; the
capsule.yaml gets its ``generator`` block (template id, version, commit,
source, answers), the capsule is sealed, and only then is the directory moved
into place. A failure at any step leaves nothing behind.

When the template renders its own capsule.yaml, the ``generator`` block is
appended to it (its comments and layout are kept); otherwise a minimal
capsule.yaml is written (name from the ``name`` answer or the directory name).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..errors import DefinitionError, InputError, PluginError, QlcapsuleError
from ..format import yamlsrc
from ..format.capsule import Capsule
from ..format.model import DEFINITION_FILE, DNS_LABEL
from ..log import event, get_logger
from ..plugins.components import Generator
from ..plugins.records import GeneratorRecord, TemplateInfo

log = get_logger("generation")


def pick_generator(template: str) -> Generator:
    """The first registered generator (by name) that handles ``template``."""
    from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only when a generator is needed

    reg = registry()
    for cls in reg.all("generator"):
        gen = cls()
        if gen.handles(template):  # type: ignore[attr-defined]
            return gen  # type: ignore[return-value]
    known = ", ".join(reg.names("generator")) or "none"
    raise PluginError(
        f"template {template!r}: no generator handles it (generators: {known}); give a built-in template name, "
        "a directory with template.yaml, or a git URL"
    )


def describe_templates(sources: Sequence[str] = ()) -> list[TemplateInfo]:
    """``qlcapsule templates``: each of ``sources`` as :func:`pick_generator` would render it, or, with none,
    every template a generator offers by name (the built-ins), each with its questions."""
    from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only when a generator is needed

    found: list[tuple[Generator, str]] = [(pick_generator(source), source) for source in sources]
    if not sources:
        for cls in registry().all("generator"):
            gen = cls()
            assert isinstance(gen, Generator)
            found += [(gen, name) for name in gen.templates()]
    infos = []
    for gen, source in found:
        info = gen.describe(source)
        info.generator = gen.name
        infos.append(info)
    return infos


def load_answers_file(path: str | Path) -> dict[str, Any]:
    """Answers from a YAML/JSON mapping, or the ``generator.answers`` of a capsule.yaml."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        raise InputError(f"--answers-file {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--answers-file {p}: cannot read: {exc}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yamlsrc.safe_load(text, f"--answers-file {p}")
    except RecursionError:
        raise InputError(f"--answers-file {p}: nested too deeply") from None
    except ValueError as exc:
        line = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError(f"--answers-file {p}{line}: not valid JSON") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"--answers-file {p}: expected a mapping of question -> answer")
    gen = data.get("generator")
    if isinstance(gen, dict) and isinstance(gen.get("answers"), dict) and "name" in data and "version" in data:
        return dict(gen["answers"])  # a capsule.yaml: reuse what it recorded
    return {str(k): v for k, v in data.items()}


def _dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return label or "capsule"


def _generator_block(record: GeneratorRecord) -> str:
    return yaml.safe_dump(
        {"generator": record.to_definition()}, sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def write_definition(root: Path, record: GeneratorRecord, dest_name: str) -> None:
    """Add the ``generator`` block to the rendered capsule.yaml, or write a minimal one."""
    path = root / DEFINITION_FILE
    block = _generator_block(record)
    if path.is_file():
        text = path.read_text("utf-8")
        data = yamlsrc.safe_load(text, f"template {record.template}: capsule.yaml") or {}
        if isinstance(data, dict) and "generator" in data:
            raise InputError(
                f"template {record.template}: its capsule.yaml must not set 'generator' (qlcapsule records it)"
            )
        if text and not text.endswith("\n"):
            text += "\n"
        path.write_text(text + block, "utf-8")
        return
    name = str(record.answers.get("name", dest_name))
    name = name if DNS_LABEL.match(name) else _dns_label(name)
    head = yaml.safe_dump(
        {"name": name, "version": "0.1.0", "description": f"generated from {record.template}"}, sort_keys=False
    )
    path.write_text(head + block, "utf-8")


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; the ones created, outermost first."""
    missing = []
    for d in [directory, *directory.parents]:
        if d.exists():
            break
        missing.append(d)
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
    return list(reversed(missing))


def _move_into(src: Path, dest: Path) -> None:
    """Move the entries of ``src`` into the existing empty directory ``dest``; on failure move them back."""
    moved: list[str] = []
    try:
        for entry in sorted(os.listdir(src)):
            os.replace(src / entry, dest / entry)
            moved.append(entry)
    except BaseException:
        for entry in reversed(moved):
            try:
                os.replace(dest / entry, src / entry)
            except OSError:
                pass
        raise


def generated_already(
    template: str, dest: str | os.PathLike[str], *, answers: Mapping[str, Any], answers_file: str | Path | None = None
) -> Capsule | None:
    """The capsule at ``dest`` when it was generated from ``template`` with every given answer, else None.

    ``qlcapsule new`` then has nothing to do (so a script that runs it twice works) and touches no file;
    a directory generated from another template or with other answers is still refused by
    :func:`new_capsule`.
    """
    if not (Path(dest) / DEFINITION_FILE).is_file():
        return None
    try:
        capsule = Capsule.load(Path(dest))
    except QlcapsuleError:
        return None
    gen = capsule.definition.generator
    if gen is None or template not in (gen.source, gen.template):
        return None
    given: dict[str, Any] = load_answers_file(answers_file) if answers_file else {}
    given.update(answers)

    def plain(value: Any) -> str:  # --set gives text: 'true' and '8000' answer True and 8000
        return str(value).lower() if isinstance(value, bool) else str(value)

    if any(key not in gen.answers or plain(gen.answers[key]) != plain(value) for key, value in given.items()):
        return None
    return capsule


def new_capsule(
    template: str,
    dest: Path,
    *,
    answers: Mapping[str, Any],
    answers_file: str | Path | None = None,
    interactive: bool,
) -> Capsule:
    """Generate ``template`` into ``dest`` (new or empty), record the generator, seal, return the capsule.

    An existing empty ``dest`` (``.`` included) is filled in place, so a shell standing in it stays there;
    a new one is created with its missing parents, which are removed again when generation fails.
    """
    dest = Path(dest)
    real = dest.resolve()  # '.', '..' and 'a/' have no usable .name until resolved
    if real.exists() and (not real.is_dir() or any(real.iterdir())):
        raise InputError(
            f"{dest}: already exists and is not an empty directory"
            + (
                f" (a capsule generated otherwise; 'qlcapsule update {dest}' re-renders it)"
                if (real / DEFINITION_FILE).is_file()
                else ""
            )
        )
    if real.parent == real:
        raise InputError(f"{dest}: cannot generate into the root directory")
    given: dict[str, Any] = load_answers_file(answers_file) if answers_file else {}
    given.update(answers)
    generator = pick_generator(template)
    in_place = real.exists()
    created = _make_parents(real.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent))
        try:
            out = tmp / real.name  # the directory name is what templates see as _folder_name
            try:
                record = _generate_into(generator, template, out, dest, given, answers, interactive)
            except OSError as exc:
                where = exc.filename or ""
                try:
                    where = f"{dest}/{Path(where).relative_to(out).as_posix()}"
                except ValueError:
                    pass
                raise InputError(f"template {template}: cannot write {where}: {exc.strerror or exc}") from None
            if in_place:
                _move_into(out, real)
            else:
                os.replace(out, real)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
        raise
    capsule = Capsule.load(real)
    event(log, "generate.done", template=record.template, version=record.version, capsule=capsule.ref)
    return capsule


def _generate_into(
    generator: Generator,
    template: str,
    out: Path,
    dest: Path,
    given: Mapping[str, Any],
    answers: Mapping[str, Any],
    interactive: bool,
) -> GeneratorRecord:
    """Render into ``out`` (a temporary directory), write the generator record, seal."""
    record = generator.generate(template, out, given, interactive=interactive)
    unknown = sorted(k for k in answers if k not in record.answers)
    if unknown:
        asked = ", ".join(record.answers) or "none"
        raise InputError(f"--set {unknown[0]}: template {record.template} asks no such question (it asks: {asked})")
    out.mkdir(exist_ok=True)
    write_definition(out, record, out.name)
    try:
        capsule = Capsule.load(out)
    except DefinitionError as exc:
        message = exc.message.replace(f"{out}{os.sep}", "").replace(str(out), str(dest))  # no temporary names
        raise InputError(f"template {record.template}: the capsule.yaml it renders is invalid: {message}") from None
    capsule.seal()
    return record


__all__ = ["new_capsule", "pick_generator", "describe_templates", "load_answers_file", "write_definition"]
