"""YAML loading that remembers where each key came from.

capsule.yaml errors must name the file, the key and the line. PyYAML's composer
gives every node a start mark; we walk the node tree once to record the line of
each key path and to refuse duplicate keys, then construct plain Python data
from the same nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import DefinitionError

KeyPath = tuple[Any, ...]


def load(text: str, filename: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse ``text``; return the data and a map of key path -> 1-based line."""
    try:
        loader = yaml.SafeLoader(text)  # refuses non-printable characters right here
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{filename}: invalid YAML: {' '.join(str(exc).split())}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[KeyPath, int] = {(): node.start_mark.line + 1}
        _walk(node, (), lines, filename, _Budget())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise DefinitionError(f"{filename}{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:  # e.g. ReaderError (a control character): several lines of text, made one
        raise DefinitionError(f"{filename}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise DefinitionError(f"{filename}: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return data, lines


def safe_load(text: str, filename: str) -> Any:
    """``yaml.safe_load`` with :func:`load`'s guards: one line naming ``filename`` and the line on
    an error, duplicate keys refused, aliases limited to :data:`MAX_NODES` expanded nodes.
    Raises :class:`DefinitionError` (an ``InputError``)."""
    return load(text, filename)[0]


def load_file(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DefinitionError(f"{path}: no such file") from None
    except OSError as exc:
        raise DefinitionError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(f"{path}: not UTF-8 (byte {exc.start})") from None
    return load(text, str(path))


#: nodes a document's aliases may add once expanded (a "billion laughs" file stops here)
MAX_NODES = 100_000


class _Budget:
    """Visits of nodes seen before (what aliases add); a node's first visit is free."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.left = MAX_NODES


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], filename: str, budget: _Budget) -> None:
    if id(node) in budget.seen:
        budget.left -= 1
    else:
        budget.seen.add(id(node))
    if budget.left < 0:
        raise DefinitionError(
            f"{filename}: more than {MAX_NODES} YAML nodes added by aliases once expanded (an alias bomb?)"
        )
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DefinitionError(
                    f"{filename}:{line}: {_dotted(path + (key,))}: duplicate key (first at line {seen[key]})"
                )
            seen[key] = line
            lines[path + (key,)] = line
            _walk(value_node, path + (key,), lines, filename, budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(item, path + (i,), lines, filename, budget)


def _dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path) or "(root)"


def line_of(lines: dict[KeyPath, int], loc: KeyPath) -> int | None:
    """The line of ``loc`` or of its nearest recorded ancestor."""
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


dotted = _dotted
