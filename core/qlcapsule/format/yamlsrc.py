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

from ..errors import DefinitionError
from .names import MAX_YAML_BYTES

KeyPath = tuple[Any, ...]


def load(text: str, filename: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse ``text``; return the data and a map of key path -> 1-based line."""
    if len(text) > MAX_YAML_BYTES:  # characters; the work of parsing grows with them
        raise DefinitionError(
            f"{filename}: larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB; not read as YAML", file=filename
        )
    try:
        loader = yaml.SafeLoader(text)  # refuses non-printable characters right here
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{filename}: invalid YAML: {' '.join(str(exc).split())}", file=filename) from None
    node: yaml.Node | None = None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        check_aliases(node, filename)  # before anything walks or builds the expanded tree
        lines: dict[KeyPath, int] = {(): node.start_mark.line + 1}
        _walk(node, (), lines, filename)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        number = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        where = f"{filename}:{number}" if number else filename
        raise DefinitionError(f"{where}: invalid YAML: {problem}", file=filename, line=number) from None
    except yaml.YAMLError as exc:  # e.g. ReaderError (a control character): several lines of text, made one
        raise DefinitionError(f"{filename}: invalid YAML: {' '.join(str(exc).split())}", file=filename) from None
    except RecursionError:
        raise DefinitionError(f"{filename}: invalid YAML: nested too deeply", file=filename) from None
    except ValueError as exc:  # a scalar Python cannot build: 2024-02-30, an integer of 5,000 digits
        message, number = _unbuildable(loader, node, filename, exc)
        raise DefinitionError(message, file=filename, line=number) from None
    finally:
        loader.dispose()
    return data, lines


def _unbuildable(
    loader: yaml.SafeLoader, root: yaml.Node | None, filename: str, exc: ValueError
) -> tuple[str, int | None]:
    """One line naming the first scalar under ``root`` whose construction raises ValueError, and its line."""
    loader.constructed_objects, loader.recursive_objects = {}, {}
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node)
            except ValueError as bad:
                what = " ".join(str(bad).split(";")[0].split())
                line = node.start_mark.line + 1
                return f"{filename}:{line}: invalid YAML: cannot read {node.value[:20]!r}: {what}", line
        stack.extend(reversed(_children(node)))
    return f"{filename}: invalid YAML: {' '.join(str(exc).split(';')[0].split())}", None


def safe_load(text: str, filename: str) -> Any:
    """``yaml.safe_load`` with :func:`load`'s guards: one line naming ``filename`` and the line on
    an error, duplicate keys refused, aliases limited to :data:`MAX_NODES` expanded nodes.
    Raises :class:`DefinitionError` (an ``InputError``)."""
    return load(text, filename)[0]


def load_file(path: Path, shown: Path | None = None) -> tuple[Any, dict[KeyPath, int]]:
    """Read and :func:`load` the YAML file at ``path``; messages name it ``shown`` when given."""
    name = path if shown is None else shown
    try:
        with open(path, "rb") as f:
            raw = f.read(4 * MAX_YAML_BYTES + 1)  # UTF-8: up to 4 bytes a character; load() counts characters
    except FileNotFoundError:
        raise DefinitionError(f"{name}: no such file", file=str(name)) from None
    except OSError as exc:
        raise DefinitionError(f"{name}: cannot read: {exc.strerror}", file=str(name)) from None
    if len(raw) > 4 * MAX_YAML_BYTES:
        raise DefinitionError(
            f"{name}: larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB; not read as YAML", file=str(name)
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(f"{name}: not UTF-8 (byte {exc.start})", file=str(name)) from None
    return load(text, str(name))


#: nodes a document's aliases may add once expanded (a "billion laughs" file stops here). The one
#: budget for every YAML read (capsule.yaml, template.yaml, answers, trust files, Chart.yaml, the
#: validators' files): they call :func:`check_aliases` or :func:`alias_excess` on the composed nodes.
MAX_NODES = 100_000


def _children(node: yaml.Node) -> list[yaml.Node]:
    """Keys and values of a mapping (an alias may sit in a key too), items of a sequence."""
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def expanded_size(root: yaml.Node, limit: int) -> int | None:
    """How many nodes ``root`` holds with every alias expanded, stopping past ``limit``; None for a cycle.

    Linear in the composed graph (each shared node is counted once and remembered), so a document
    of a few lines that expands to billions costs as little as it looks.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            sizes[key] = 1 + sum(sizes[id(k)] for k in _children(node))
            if sizes[key] > limit:
                return sizes[key]
            continue
        if key in sizes:
            continue
        if key in active:
            return None  # an anchor that contains its own alias
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                return None
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _distinct(root: yaml.Node) -> int:
    """How many nodes the document holds as written (each anchored node once)."""
    seen = {id(root)}
    stack = [root]
    while stack:
        for child in _children(stack.pop()):
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return len(seen)


def alias_excess(root: yaml.Node) -> str | None:
    """Why ``root``'s aliases expand too far (None when they do not): more than :data:`MAX_NODES`
    nodes added, or an alias inside its own anchor. A large document without aliases is fine."""
    written = _distinct(root)
    size = expanded_size(root, written + MAX_NODES)
    if size is None:
        return "an alias refers to itself (an alias bomb?)"
    if size > written + MAX_NODES:
        return f"more than {MAX_NODES} YAML nodes added by aliases once expanded (an alias bomb?)"
    return None


def check_aliases(root: yaml.Node, filename: str) -> None:
    """Raise :class:`DefinitionError` naming ``filename`` when :func:`alias_excess` finds a problem."""
    why = alias_excess(root)
    if why is not None:
        raise DefinitionError(f"{filename}: {why}", file=filename)


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], filename: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            # a list or mapping as a key: named by its place, never repr()'d (that would expand its aliases)
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"<{key_node.id} key at line {line}>"
            if key in seen:
                dotted_key = _dotted(path + (key,))
                raise DefinitionError(
                    f"{filename}:{line}: {dotted_key}: duplicate key (first at line {seen[key]})",
                    file=filename,
                    line=line,
                    key=dotted_key,
                )
            seen[key] = line
            lines[path + (key,)] = line
            _walk(value_node, path + (key,), lines, filename)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(item, path + (i,), lines, filename)


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
