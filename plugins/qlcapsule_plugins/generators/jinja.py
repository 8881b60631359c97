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

import math
import os
import re
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from qlcapsule import (
    Generator,
    GeneratorRecord,
    InputError,
    Register,
    TemplateInfo,
    UnsafePathError,
    check_relative,
    get_logger,
    hookimpl,
)

from . import _source
from ._limits import RenderTimeout, short

if TYPE_CHECKING:
    from ._spec import Question, TemplateSpec

log = get_logger("generators.jinja")
FILES_DIR = "files/"

# Limits on what a template may make the renderer do (docs/templates.md, "Limits").
RENDER_SECONDS = 10.0  # wall-clock budget for reading template.yaml, answering and rendering (prompts excluded)
MAX_FILE_CHARS = 16 * 1024 * 1024  # one rendered file
MAX_TOTAL_CHARS = 64 * 1024 * 1024  # all rendered files together
MAX_INT_BITS = 100_000  # the result of ** or * on integers (about 30,000 decimal digits)
MAX_REPEAT = 10_000_000  # the length of 'text' * n or [list] * n


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])", str(text)) if w]


def _py_str(text: str) -> str:
    """A double-quoted Python string literal (like the code around it); other characters escaped as repr() does."""
    out = []
    for c in text:
        if c in ('"', "\\"):
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            out.append(repr(c)[1:-1])  # \n, \t, \x00, \u2028, a lone surrogate
    return '"' + "".join(out) + '"'


def _py_literal(value: Any) -> str:
    """``value`` as a Python literal: quotes, backslashes and newlines escaped (``{{ description | py }}``)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"py filter: {value!r} has no Python literal")
    if isinstance(value, str):
        return _py_str(value)
    if value is None or isinstance(value, (int, float, bool)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_py_literal(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    raise ValueError(f"py filter: a {type(value).__name__} has no Python literal")


def _yaml_scalar(value: Any) -> str:
    """``value`` as a one-line YAML scalar that reads back as exactly ``value`` (``license: {{ license | yaml }}``).

    Plain when that is safe (``MIT``), quoted otherwise (``'yes'``, ``"a\\nb: c"``), so an answer can never
    add keys, change a type or end the line.
    """
    import yaml  # noqa: PLC0415 -- start-up: yaml loads only when a template is rendered

    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"yaml filter: a {type(value).__name__} is not a scalar")
    for style in (None, '"'):
        if style and not isinstance(value, str):
            break
        text = yaml.safe_dump(
            value, default_style=style, default_flow_style=True, allow_unicode=True, width=float("inf")
        )
        text = text.removesuffix("\n").removesuffix("\n...").rstrip("\n")
        if "\n" not in text and yaml.safe_load(text) == value:
            return text
    raise ValueError(f"yaml filter: {short(value)} cannot be written as one YAML line")


FILTERS: dict[str, Callable[..., Any]] = {
    "snake": lambda s: "_".join(w.lower() for w in _words(s)),
    "kebab": lambda s: "-".join(w.lower() for w in _words(s)),
    "pascal": lambda s: "".join(w[:1].upper() + w[1:].lower() for w in _words(s)),
    "camel": lambda s: (lambda p: p[:1].lower() + p[1:])("".join(w[:1].upper() + w[1:].lower() for w in _words(s))),
    "py": _py_literal,
    "yaml": _yaml_scalar,
}


class Budget:
    """The wall-clock budget of one generation.

    In the main thread a ``SIGALRM`` timer interrupts a runaway loop or regex
    (``re`` checks signals while it backtracks). Where there is no such timer
    (another thread, Windows, a SIGALRM handler already set) a trace function
    checks the clock on every line the template's compiled code runs, so loops
    that call nothing (``{% for a in l %}{% for b in l %}...``) stop too; the
    sandbox's operator and call hooks check it as well. Time spent at a prompt
    is not counted.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.left = seconds
        self._since: float | None = None

    def check(self) -> None:
        if self._since is not None and time.monotonic() - self._since > self.left:
            raise RenderTimeout(self.seconds)

    def _expire(self, signum: int, frame: Any) -> None:
        raise RenderTimeout(self.seconds)

    def _trace(self, frame: Any, event: str, arg: Any) -> Any:
        self.check()
        return self._trace_lines

    def _trace_lines(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            self.check()
        return self._trace_lines

    @contextmanager
    def running(self) -> Iterator[None]:
        if self._since is not None:  # already running
            yield
            return
        if self.left <= 0:
            raise RenderTimeout(self.seconds)
        use_alarm = (
            hasattr(signal, "SIGALRM")
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None)
            and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        )
        old: Any = None
        traced = not use_alarm and sys.gettrace() is None  # never replace a debugger's or coverage's tracer
        if use_alarm:
            old = signal.signal(signal.SIGALRM, self._expire)
            signal.setitimer(signal.ITIMER_REAL, self.left)
        elif traced:
            sys.settrace(self._trace)
        self._since = time.monotonic()
        try:
            yield
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
            elif traced:
                sys.settrace(None)
            self.left -= time.monotonic() - self._since
            self._since = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the clock (while a person answers a prompt)."""
        if self._since is None:
            yield
            return
        self.left -= time.monotonic() - self._since
        self._since = None
        alarm = hasattr(signal, "SIGALRM") and signal.getsignal(signal.SIGALRM) == self._expire
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            yield
        finally:
            self._since = time.monotonic()
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, max(self.left, 0.001))


def _check_binop(operator: str, left: Any, right: Any) -> None:
    from jinja2.exceptions import SecurityError  # noqa: PLC0415 -- start-up: jinja2 loads only when a template is rendered

    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints and right > 0 and abs(left) > 1:
        if right * (abs(left).bit_length() - 1) > MAX_INT_BITS:
            raise SecurityError(f"{short(left)} ** {short(right)} is too large (over {MAX_INT_BITS} bits)")
    elif operator == "*" and ints:
        if abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS + 1:
            raise SecurityError(f"a product of over {MAX_INT_BITS} bits is too large")
    elif operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                raise SecurityError(f"repeating a {type(seq).__name__} {short(n)} times is too large")


def make_env(files: _source.Files, budget: Budget | None = None) -> Any:
    from jinja2 import FunctionLoader, StrictUndefined  # noqa: PLC0415 -- start-up: jinja2 loads only when a template is rendered
    from jinja2.sandbox import SandboxedEnvironment  # noqa: PLC0415 -- start-up: jinja2 loads only when a template is rendered

    clock = budget or Budget(RENDER_SECONDS)

    class Sandbox(SandboxedEnvironment):
        intercepted_binops = frozenset(["**", "*"])
        budget = clock  # read by the prompts, which pause it

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            clock.check()
            _check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            clock.check()
            return super().call(__context, __obj, *args, **kwargs)

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

    env = Sandbox(
        loader=FunctionLoader(load),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        newline_sequence="\n",
    )
    env.filters.pop("random", None)  # output must depend only on the answers
    env.globals.pop("lipsum", None)  # random too
    env.filters.update(FILTERS)
    return env


def _explain(exc: BaseException) -> str:
    """One line about an error raised while rendering."""
    from jinja2 import TemplateError  # noqa: PLC0415 -- start-up: jinja2 loads only when a template is rendered

    if isinstance(exc, RenderTimeout):
        text = f"takes longer than {exc.seconds:g} s, the limit for rendering a template"
    elif isinstance(exc, TemplateError):
        text = exc.message or type(exc).__name__
    elif isinstance(exc, RecursionError):
        text = "recursion too deep (a macro or include that calls itself?)"
    elif isinstance(exc, MemoryError):
        text = "out of memory"
    elif isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        text = f"an integer too large to write out (over {sys.get_int_max_str_digits()} digits)"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _template_line(exc: BaseException, filename: str | None) -> int | None:
    """The line of ``filename`` (a template) where ``exc`` was raised, when jinja knows it."""
    from jinja2 import TemplateSyntaxError  # noqa: PLC0415 -- start-up: jinja2 loads only when a template is rendered

    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno if exc.name in (None, filename) or filename is None else None
    if filename is None:
        return None
    line = None
    tb = exc.__traceback__
    while tb is not None:  # jinja rewrites the traceback: template frames carry the template's name and line
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def guarded(where: str, fn: Callable[..., Any], *args: Any, filename: str | None = None, **kwargs: Any) -> Any:
    """``fn(*args)``; any error a template can cause becomes one InputError line naming ``where`` (and the line)."""
    try:
        return fn(*args, **kwargs)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a template can raise anything Python can (1/0, 'a' * 'b', ...)
        line = _template_line(exc, filename)
        raise InputError(f"{where}{f':{line}' if line else ''}: {_explain(exc)}") from None


class JinjaGenerator(Generator):
    name = "jinja"
    description = "Jinja2 templates: a built-in name, a local directory, or a git URL@rev"

    def handles(self, source: str) -> bool:
        if source in _source.builtin_names() or _source.is_git_url(source):
            return True
        return (Path(source) / _source.SPEC_FILE).is_file()

    # -- loading --------------------------------------------------------------
    def load(
        self, source: str, version: str | None = None, *, budget: Budget | None = None
    ) -> tuple[_source.Loaded, TemplateSpec]:
        """Read a template source (at ``version`` when given) and its spec."""
        from ._spec import load_spec  # noqa: PLC0415 -- start-up: _spec's pydantic models are built only when a template is used

        clock = budget or Budget(RENDER_SECONDS)
        if source in _source.builtin_names() and not Path(source).exists():
            loaded = _source.Loaded(_source.read_dir(_source.BUILTIN / source), source)
            with clock.running():
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
        with clock.running():
            return loaded, load_spec(loaded.files, source)

    def templates(self) -> list[str]:
        return _source.builtin_names()

    def describe(self, source: str) -> TemplateInfo:
        _, spec = self.load(source)
        questions = [
            {"name": q.name, "type": q.type, "help": q.help, "default": q.default, "choices": q.choices, "when": q.when}
            for q in spec.questions
        ]
        return TemplateInfo(spec.id, spec.version, spec.description, source, questions)

    def newest(self, source: str) -> str | None:
        """The version ``qlcapsule update`` moves to by default: for a git source, its highest SemVer tag
        (else its default branch); for a directory or a built-in template, what it holds now (None)."""
        if not _source.is_git_url(source):
            return None
        return _source.newest_rev(source)

    # -- answering ------------------------------------------------------------
    def resolve_answers(
        self, spec: TemplateSpec, given: Mapping[str, Any], *, interactive: bool, env: Any, context: dict[str, Any]
    ) -> dict[str, Any]:
        from ._spec import coerce  # noqa: PLC0415 -- start-up: _spec's pydantic models are built only when a template is used

        unknown = sorted(set(given) - {q.name for q in spec.questions})
        if unknown:
            log.info("ignoring answers the template does not ask: %s", ", ".join(unknown))
        answers: dict[str, Any] = {}
        missing: list[Question] = []
        tty = sys.stdin.isatty()
        where = f"template {spec.id}: {_source.SPEC_FILE}: questions"
        for q in spec.questions:
            ctx = {**context, **answers}
            if q.when is not None and not _truthy(env, q.when, ctx, f"{where}.{q.name}.when"):
                continue
            if q.name in given:
                answers[q.name] = coerce(q, given[q.name], f"answer {q.name}")
                continue
            default = guarded(f"{where}.{q.name}.default", q.rendered_default, env, ctx)
            if interactive and tty:
                answers[q.name] = _prompt(q, default, env.budget)
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
        budget = Budget(RENDER_SECONDS)
        loaded, spec = self.load(source, version, budget=budget)
        env = make_env(loaded.files, budget)
        dest = Path(dest)
        context: dict[str, Any] = {
            "_folder_name": dest.resolve().name,
            "_template": {"id": spec.id, "version": spec.version},
        }
        try:
            with budget.running():
                final = self.resolve_answers(spec, answers, interactive=interactive, env=env, context=context)
                planned, outputs = self._render(spec, loaded.files, env, {**context, **final})
        except RenderTimeout as exc:  # the clock ran out between two guarded steps
            raise InputError(f"template {spec.id}: {_explain(exc)}") from None
        if dest.exists() and any(dest.iterdir()):
            raise InputError(f"{dest}: not empty; the generator writes only into a new or empty directory")
        # everything rendered without error: only now touch the destination
        root = dest.resolve()
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

    def _render(
        self, spec: TemplateSpec, files: _source.Files, env: Any, ctx: dict[str, Any]
    ) -> tuple[dict[str, tuple[str, int]], dict[str, bytes]]:
        """(target -> (template path, mode)) and (target -> bytes), all in memory."""
        planned: dict[str, tuple[str, int]] = {}
        for src in sorted(p for p in files if p.startswith(FILES_DIR)):
            rel = src[len(FILES_DIR) :]

            def condition(expr: Any, pattern: str, rel: str = rel) -> bool:
                what = f"template {spec.id}: {_source.SPEC_FILE}: conditions[{pattern!r}] (for {rel})"
                return _truthy(env, expr, ctx, what)

            if spec.excluded(rel) or not spec.wanted(rel, condition):
                continue
            target = guarded(f"template {spec.id}: path {rel}", _render_path, env, rel, ctx)
            if target is None:
                continue
            if target in planned:
                raise InputError(f"template {spec.id}: {rel} and {planned[target][0]} both render to {target}")
            planned[target] = (rel, files[src][1])
        for target, (rel, _mode) in planned.items():
            parts = target.split("/")
            for i in range(1, len(parts)):
                above = "/".join(parts[:i])
                if above in planned:
                    raise InputError(
                        f"template {spec.id}: {planned[above][0]} renders to the file {above}, "
                        f"but {rel} needs {above} to be a directory"
                    )
        outputs: dict[str, bytes] = {}
        total = 0
        for target, (rel, _mode) in planned.items():
            data, _ = files[FILES_DIR + rel]
            if rel.endswith(".j2"):
                data = guarded(f"template {spec.id}: {rel}", _render_file, env, rel, ctx, filename=rel)
                total += len(data)
                if total > MAX_TOTAL_CHARS:
                    raise InputError(
                        f"template {spec.id}: {rel}: the rendered files pass {_size(MAX_TOTAL_CHARS)} together, "
                        "the limit for a template"
                    )
            outputs[target] = data
        return planned, outputs


def _render_file(env: Any, rel: str, ctx: dict[str, Any]) -> bytes:
    """Template file ``rel`` rendered (UTF-8), refused once it passes MAX_FILE_CHARS."""
    from jinja2.exceptions import SecurityError  # noqa: PLC0415 -- start-up: jinja2 loads only when a template is rendered

    parts: list[str] = []
    size = 0
    for chunk in env.get_template(rel).generate(ctx):
        size += len(chunk)
        if size > MAX_FILE_CHARS:
            raise SecurityError(f"renders to more than {_size(MAX_FILE_CHARS)}, the limit for one file")
        parts.append(chunk)
    return "".join(parts).encode("utf-8")


def _size(chars: int) -> str:
    return f"{chars / 2**20:g} MiB" if chars >= 2**20 else f"{chars} characters"


def _truthy(env: Any, expr: Any, ctx: dict[str, Any], what: str) -> bool:
    if isinstance(expr, bool):
        return expr
    text = str(expr).strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2]
    return bool(guarded(what, lambda: env.compile_expression(text)(**ctx)))


_GIT_DIR = re.compile(r"^\.git[. ]*$", re.I)


def _render_path(env: Any, rel: str, ctx: dict[str, Any]) -> str | None:
    """The destination path of a template file, or None when a segment renders empty."""
    parts = []
    for segment in rel.split("/"):
        if "{" in segment:
            segment = env.from_string(segment).render(ctx)
        if not segment.strip():
            return None
        if "/" in segment or "\\" in segment or "\x00" in segment or segment in (".", ".."):
            raise UnsafePathError(f"template path {rel!r} renders to an unsafe segment {short(segment)}")
        parts.append(segment)
    if parts[-1].endswith(".j2"):
        parts[-1] = parts[-1][:-3]
        if not parts[-1]:
            return None
    for segment in parts:
        if _GIT_DIR.match(segment):  # a planted .git/config (core.fsmonitor) runs commands on the next 'git status'
            raise UnsafePathError(
                f"template path {rel!r} renders to {'/'.join(parts)!r}: a template may not write .git"
            )
    return check_relative("/".join(parts), where=f"template path {rel!r}")


def _prompt(q: Question, default: Any, budget: Budget) -> Any:
    import click  # noqa: PLC0415 -- start-up: click loads only to prompt for answers (not in the Action)

    from ._spec import coerce  # noqa: PLC0415 -- start-up: _spec's pydantic models are built only when a template is used

    label = q.help or q.name
    while True:
        with budget.paused():
            if q.type == "bool":
                value: Any = click.confirm(
                    f"{label} [{q.name}]", default=bool(default) if default is not None else None
                )
            else:
                kind: Any = click.Choice([str(c) for c in q.choices]) if q.choices else None
                value = click.prompt(f"{label} [{q.name}]", default=default, type=kind, show_choices=bool(q.choices))
        try:
            return coerce(q, value, f"answer {q.name}")
        except InputError as exc:
            click.echo(f"  {exc.message}", err=True)


@hookimpl
def qlcapsule_register_generators(register: Register) -> None:
    register(JinjaGenerator)
