"""A pytest plugin for plugin authors (registered as ``pytest11`` entry point ``qlcapsule``).

Fixtures:

- ``qlcapsule_registry``: a fresh plugin registry for the test (built-ins plus
  whatever the test registers), dropped afterwards.
- ``qlcapsule_plugin``: ``qlcapsule_plugin(module_or_object, name=None)`` registers an
  in-process plugin for the duration of the test and returns the rebuilt registry.
- ``make_capsule``: ``make_capsule({"app.py": "print(1)\\n"}, name="demo", version="1.0.0")``
  writes a capsule into ``tmp_path`` and seals it (``seal=False`` to skip).
- ``qlcapsule_cli``: ``qlcapsule_cli("verify", str(path))`` runs the ``qlcapsule`` console
  script's entry in-process (the same one click group users run) and returns a result with
  ``exit_code``, ``stdout`` and ``stderr``.

Helpers for contract tests:

- :func:`check_exporter` exports a capsule twice and asserts the bytes are identical,
  non-empty, and that the exporter's options model forbids unknown keys.
- :func:`alias_bomb` is a "billion laughs" YAML document, for checking that a
  plugin reading YAML survives one.

Nothing here is imported until a fixture is used, so the plugin costs nothing
in unrelated test runs.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import pytest

if TYPE_CHECKING:
    from .format.capsule import Capsule
    from .plugins.components import Exporter
    from .plugins.manager import Registry


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def qlcapsule_registry() -> Iterator[Registry]:
    from .plugins import manager as plugins  # noqa: PLC0415 -- plugin: the plugin manager loads only when a fixture uses it (pytest loads this module in every session)

    plugins.reset()
    try:
        yield plugins.registry()
    finally:
        plugins.reset()


@pytest.fixture
def qlcapsule_plugin() -> Iterator[Callable[..., Registry]]:
    from .plugins import manager as plugins  # noqa: PLC0415 -- plugin: the plugin manager loads only when a fixture uses it (pytest loads this module in every session)

    names: list[str] = []

    def register(plugin: object, name: str | None = None) -> Registry:
        pname = name or getattr(plugin, "__name__", None) or f"test-plugin-{len(names)}"
        plugins.register_plugin(plugin, pname)
        names.append(pname)
        return plugins.registry()

    try:
        yield register
    finally:
        for n in names:
            plugins.unregister_plugin(n)


def write_capsule(
    root: Path,
    files: Mapping[str, str | bytes],
    *,
    name: str = "demo",
    version: str = "1.0.0",
    definition: str | None = None,
    seal: bool = True,
) -> Capsule:
    """Write ``files`` and a capsule.yaml under ``root``; seal unless ``seal=False``."""
    from .format.capsule import Capsule  # noqa: PLC0415 -- start-up: loads only when a fixture uses it (pytest loads this module in every session)

    root.mkdir(parents=True, exist_ok=True)
    (root / "capsule.yaml").write_text(definition or f"name: {name}\nversion: {version}\n", encoding="utf-8")
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.write_text(content, encoding="utf-8")
        else:
            target.write_bytes(content)
    capsule = Capsule.load(root)
    if seal:
        capsule.seal()
    return capsule


@pytest.fixture
def make_capsule(tmp_path: Path) -> Callable[..., Capsule]:
    counter = iter(range(1_000_000))

    def make(files: Mapping[str, str | bytes] | None = None, **kwargs: Any) -> Capsule:
        root = kwargs.pop("root", None) or tmp_path / f"capsule{next(counter)}"
        return write_capsule(Path(root), files or {"README.md": "# demo\n"}, **kwargs)

    return make


@pytest.fixture
def qlcapsule_cli() -> Callable[..., CliResult]:
    """Run the console script's own entry (:func:`qlcapsule.cli.run`) in process, with ``sys.argv`` set
    as the ``qlcapsule`` script sets it; stdin, stdout, stderr and ``env`` are isolated by click's
    :class:`~click.testing.CliRunner`, and the signal handlers the entry installs are restored."""
    from click.testing import CliRunner  # noqa: PLC0415 -- start-up: click loads only when a fixture uses it (pytest loads this module in every session)

    from .cli import run as entry  # noqa: PLC0415 -- start-up: loads only when a fixture uses it (pytest loads this module in every session)

    def run(*args: str, input: str | bytes | None = None, env: Mapping[str, str] | None = None) -> CliResult:
        runner = CliRunner()
        signals = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
        handlers = {num: signal.getsignal(num) for num in signals}
        argv, code = sys.argv, 0
        with runner.isolation(input=input, env=dict(env or {})) as (out, err, _):
            sys.argv = ["qlcapsule", *args]
            try:
                entry()
            except SystemExit as exc:  # how click's standalone mode always ends
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:  # sys.exit("message"): Python prints it on stderr and exits 1
                    sys.stderr.write(f"{exc.code}\n")
                    code = 1
            finally:
                sys.argv = argv
                for num, handler in handlers.items():
                    signal.signal(num, handler)
                sys.stdout.flush()
                sys.stderr.flush()
            stdout, stderr = out.getvalue(), err.getvalue()
        return CliResult(code, _text(stdout), _text(stderr))

    return run


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").replace("\r\n", "\n")


def check_exporter(exporter_cls: type[Exporter], capsule: Capsule, fmt: str | None = None) -> bytes:
    """Contract test for an exporter: deterministic, non-empty output that passes verification; strict options.

    The exporter runs as ``qlcapsule export`` runs it (:func:`qlcapsule.steps.exporting.write_export`).
    """
    from pydantic import ValidationError  # noqa: PLC0415 -- start-up: pydantic loads only when a fixture uses it (pytest loads this module in every session)

    from .steps.exporting import write_export  # noqa: PLC0415 -- start-up: loads only when a fixture uses it (pytest loads this module in every session)

    fmt = fmt or (exporter_cls.formats[0] if exporter_cls.formats else exporter_cls.name)
    first, second = io.BytesIO(), io.BytesIO()
    write_export(exporter_cls.from_options({}), capsule, first, fmt)
    os.utime(capsule.root / "capsule.yaml")  # a new mtime must not change the bytes
    write_export(exporter_cls.from_options({}), capsule, second, fmt)
    assert first.getvalue(), f"{exporter_cls.__name__} wrote nothing"
    assert first.getvalue() == second.getvalue(), f"{exporter_cls.__name__} is not reproducible"
    with pytest.raises(ValidationError):
        exporter_cls.Options.model_validate({"__no_such_option__": 1})
    return first.getvalue()


def alias_bomb(levels: int = 8, *, key: str = "a", indent: str = "") -> str:
    """A "billion laughs" YAML document: ``levels`` lines of ten aliases each, 10**(levels+1) nodes expanded.

    Each line is ``{indent}{key}{i}: &{key}{i} [...]``, so it can be nested under
    a mapping key (``indent="  "``). Eight levels are about 60 bytes a line and a
    billion nodes once expanded: a loader without an alias budget runs out of memory.
    """
    lines = [f"{indent}{key}0: &{key}0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{indent}{key}{i}: &{key}{i} [{', '.join([f'*{key}{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"
