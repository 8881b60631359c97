"""The ``jinja`` generator: render a template directory into a capsule.

A template is ``template.yaml`` (id, version, questions, conditions, exclude)
plus a ``files/`` tree. Paths and ``*.j2`` contents are rendered with jinja2's
``SandboxedEnvironment`` and ``StrictUndefined`` (a misspelt variable is an
error, not an empty string); other files are copied byte for byte. A file is
left out when a rendered path segment is empty (``{% if docker %}Dockerfile{% endif %}``)
or when a ``conditions`` expression for it is false. No rendered path may
leave the destination. Output depends only on the template and the answers
(files in sorted order, fixed modes, no ``random`` filter), so the same inputs
give byte-identical files. See docs/templates.md.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from qlcapsule import Generator, GeneratorRecord, InputError, UnsafePathError, check_relative, get_logger, hookimpl

from . import _source

if TYPE_CHECKING:
    from ._spec import Question, TemplateSpec

log = get_logger("generators.jinja")
FILES_DIR = "files/"


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])", str(text)) if w]


FILTERS = {
    "snake": lambda s: "_".join(w.lower() for w in _words(s)),
    "kebab": lambda s: "-".join(w.lower() for w in _words(s)),
    "pascal": lambda s: "".join(w[:1].upper() + w[1:].lower() for w in _words(s)),
    "camel": lambda s: (lambda p: p[:1].lower() + p[1:])("".join(w[:1].upper() + w[1:].lower() for w in _words(s))),
}


def make_env(files: _source.Files) -> Any:
    from jinja2 import FunctionLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    def load(name: str) -> tuple[str, str, Any] | None:
        raw = files.get(FILES_DIR + name)
        if raw is None:
            return None
        try:
            return raw[0].decode("utf-8"), name, lambda: True
        except UnicodeDecodeError as exc:
            raise InputError(
                f"template file {name}: not UTF-8 (byte {exc.start}); only text files may end in .j2"
            ) from None

    env = SandboxedEnvironment(
        loader=FunctionLoader(load),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        newline_sequence="\n",
    )
    env.filters.pop("random", None)  # output must depend only on the answers
    env.filters.update(FILTERS)
    return env


class JinjaGenerator(Generator):
    name = "jinja"
    description = "Jinja2 templates: a built-in name, a local directory, or a git URL@rev"

    def handles(self, source: str) -> bool:
        if source in _source.builtin_names() or _source.is_git_url(source):
            return True
        return (Path(source) / _source.SPEC_FILE).is_file()

    # -- loading --------------------------------------------------------------
    def load(self, source: str, version: str | None = None) -> tuple[_source.Loaded, TemplateSpec]:
        """Read a template source (at ``version`` when given) and its spec."""
        from ._spec import load_spec  # pydantic models: built only when a template is used

        if source in _source.builtin_names() and not Path(source).exists():
            loaded = _source.Loaded(_source.read_dir(_source.BUILTIN / source), source)
            spec = load_spec(loaded.files, source)
            if version is not None and version != spec.version:
                raise InputError(
                    f"built-in template {source} is at version {spec.version}; version {version} is not available "
                    "(built-in templates keep only their current version)"
                )
            return loaded, spec
        if _source.is_git_url(source):
            loaded = _source.load_git(source, version)
        elif (Path(source) / _source.SPEC_FILE).is_file():
            loaded = _source.load_local(Path(source), version)
        else:
            names = ", ".join(_source.builtin_names()) or "none"
            raise InputError(
                f"template {source!r}: not a built-in template ({names}), a directory with {_source.SPEC_FILE}, or a git URL"
            )
        return loaded, load_spec(loaded.files, source)

    # -- answering ------------------------------------------------------------
    def resolve_answers(
        self, spec: TemplateSpec, given: Mapping[str, Any], *, interactive: bool, env: Any, context: dict[str, Any]
    ) -> dict[str, Any]:
        from ._spec import coerce

        unknown = sorted(set(given) - {q.name for q in spec.questions})
        if unknown:
            log.info("ignoring answers the template does not ask: %s", ", ".join(unknown))
        answers: dict[str, Any] = {}
        missing: list[Question] = []
        tty = sys.stdin.isatty()
        for q in spec.questions:
            ctx = {**context, **answers}
            if q.when is not None and not _truthy(env, q.when, ctx, f"question {q.name} 'when'"):
                continue
            if q.name in given:
                answers[q.name] = coerce(q, given[q.name], f"answer {q.name}")
                continue
            default = q.rendered_default(env, ctx)
            if interactive and tty:
                answers[q.name] = _prompt(q, default)
            elif interactive or default is None:
                missing.append(q)
                if default is not None:
                    answers[q.name] = coerce(q, default, f"default of {q.name}")
            else:
                answers[q.name] = coerce(q, default, f"default of {q.name}")
        if missing:
            names = ", ".join(q.name for q in missing)
            if interactive and not tty:
                raise InputError(
                    f"template {spec.id} needs answers for: {names}; stdin is not a terminal, so nothing can be asked "
                    "(pass --set KEY=VALUE, --answers-file FILE, or --no-input to take the defaults)"
                )
            raise InputError(f"template {spec.id}: no answer and no default for: {names} (pass --set KEY=VALUE)")
        return answers

    # -- rendering ------------------------------------------------------------
    def generate(
        self,
        source: str,
        dest: Path,
        answers: Mapping[str, Any],
        *,
        version: str | None = None,
        interactive: bool = False,
    ) -> GeneratorRecord:
        from jinja2 import TemplateError

        loaded, spec = self.load(source, version)
        env = make_env(loaded.files)
        dest = Path(dest)
        context: dict[str, Any] = {
            "_folder_name": dest.resolve().name,
            "_template": {"id": spec.id, "version": spec.version},
        }
        final = self.resolve_answers(spec, answers, interactive=interactive, env=env, context=context)
        ctx = {**context, **final}
        if dest.exists() and any(dest.iterdir()):
            raise InputError(f"{dest}: not empty; the generator writes only into a new or empty directory")
        planned: dict[str, tuple[str, int]] = {}
        for src in sorted(p for p in loaded.files if p.startswith(FILES_DIR)):
            rel = src[len(FILES_DIR) :]
            if spec.excluded(rel) or not spec.wanted(
                rel, lambda expr, r=rel: _truthy(env, expr, ctx, f"condition for {r}")
            ):
                continue
            try:
                target = _render_path(env, rel, ctx)
            except TemplateError as exc:
                raise InputError(f"template {spec.id}: path {rel}: {exc}") from None
            if target is None:
                continue
            if target in planned:
                raise InputError(f"template {spec.id}: {rel} and {planned[target][0]} both render to {target}")
            planned[target] = (rel, loaded.files[src][1])
        root = dest.resolve()
        outputs: dict[str, bytes] = {}
        for target, (rel, _mode) in planned.items():
            data, _ = loaded.files[FILES_DIR + rel]
            if rel.endswith(".j2"):
                try:
                    data = env.get_template(rel).render(ctx).encode("utf-8")
                except TemplateError as exc:
                    line = getattr(exc, "lineno", None)
                    raise InputError(
                        f"template {spec.id}: {rel}{f':{line}' if line else ''}: {exc.message or exc}"
                    ) from None
            outputs[target] = data
        # everything rendered without error: only now touch the destination
        for target in sorted(outputs):
            path = root / target
            if root not in path.resolve().parents:
                raise UnsafePathError(f"template {spec.id}: {target} escapes {dest}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(outputs[target])
            os.chmod(path, planned[target][1])
        return GeneratorRecord(
            template=spec.id,
            version=spec.version,
            commit=loaded.commit,
            source=loaded.source,
            answers=final,
            files=sorted(outputs),
        )


def _truthy(env: Any, expr: Any, ctx: dict[str, Any], what: str) -> bool:
    from jinja2 import TemplateError

    if isinstance(expr, bool):
        return expr
    text = str(expr).strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2]
    try:
        return bool(env.compile_expression(text)(**ctx))
    except TemplateError as exc:
        raise InputError(f"{what}: {exc}") from None


def _render_path(env: Any, rel: str, ctx: dict[str, Any]) -> str | None:
    """The destination path of a template file, or None when a segment renders empty."""
    parts = []
    for segment in rel.split("/"):
        if "{" in segment:
            segment = env.from_string(segment).render(ctx)
        if not segment.strip():
            return None
        if "/" in segment or "\\" in segment or "\x00" in segment or segment in (".", ".."):
            raise UnsafePathError(f"template path {rel!r} renders to an unsafe segment {segment!r}")
        parts.append(segment)
    if parts[-1].endswith(".j2"):
        parts[-1] = parts[-1][:-3]
        if not parts[-1]:
            return None
    return check_relative("/".join(parts), where=f"template path {rel!r}")


def _prompt(q: Question, default: Any) -> Any:
    import click

    from ._spec import coerce

    label = q.help or q.name
    while True:
        if q.type == "bool":
            value: Any = click.confirm(f"{label} [{q.name}]", default=bool(default) if default is not None else None)
        else:
            kind: Any = click.Choice([str(c) for c in q.choices]) if q.choices else None
            value = click.prompt(f"{label} [{q.name}]", default=default, type=kind, show_choices=bool(q.choices))
        try:
            return coerce(q, value, f"answer {q.name}")
        except InputError as exc:
            click.echo(f"  {exc.message}", err=True)


@hookimpl
def qlcapsule_register_generators(register):  # type: ignore[no-untyped-def]
    register(JinjaGenerator)
