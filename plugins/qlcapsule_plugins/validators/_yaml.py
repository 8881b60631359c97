"""YAML helpers shared by the YAML-based validators (plugin-internal).

PyYAML's composer gives every node a start mark, so findings can name a line.
Custom tags (GitLab's ``!reference``, CloudFormation's ``!Ref``/``!GetAtt``,
Ansible's ``!vault``...) are tolerated: the tagged node is read as the plain
value underneath. Mapping keys stay the strings written in the file (so a
workflow's ``on:`` is the key ``"on"``, not YAML 1.1's ``True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import yaml

from qlcapsule import Capsule, alias_excess

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TolerantLoader(_Base):
    """A safe loader that reads any unknown tag as the plain value underneath."""


def _untagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return {_key(k): loader.construct_object(v, deep=True) for k, v in node.value}
    return None  # pragma: no cover - PyYAML has only three node kinds


TolerantLoader.add_constructor(None, _untagged)


@dataclass
class YamlError:
    message: str
    line: int | None
    column: int | None


def compose_all(text: str) -> tuple[list[yaml.Node], YamlError | None]:
    """Every document's node tree, or the first syntax error with its position.

    A document whose aliases add more than ``yamlsrc.MAX_NODES`` nodes once
    expanded, or refer to themselves, is an error too (and is not returned), so
    no validator walks it. A large document without aliases is fine.
    """
    try:
        loader = TolerantLoader(text)
    except yaml.YAMLError as exc:  # a non-printable character, found before parsing
        return [], YamlError(" ".join(str(exc).split()), None, None)
    docs: list[yaml.Node] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            excess = alias_excess(node)  # qlcapsule's one alias budget (yamlsrc.MAX_NODES)
            if excess is not None:
                line, column = position(node)
                return docs, YamlError(excess, line, column)
            docs.append(node)
    except RecursionError:
        return docs, YamlError("nested too deeply", None, None)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.problem} ({exc.context})"
        if mark is None:
            return docs, YamlError(problem, None, None)
        return docs, YamlError(problem, mark.line + 1, mark.column + 1)
    except yaml.YAMLError as exc:
        return docs, YamlError(str(exc).splitlines()[0], None, None)
    finally:
        loader.dispose()
    return docs, None


def parses(data: bytes) -> bool:
    """True when ``data`` is YAML with at least one document (else the yaml validator says why, or it is empty)."""
    docs, error = compose_all(data.decode("utf-8", "replace"))
    return error is None and bool(docs)


def _key(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return node.value
    return repr(node)


def duplicate_keys(node: yaml.Node) -> Iterator[tuple[str, int, int, int]]:
    """``(key, line, column, first_line)`` for every repeated key in any mapping."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, v in n.value:
                key = _key(k)
                if key == "<<":
                    stack.append(v)
                    continue
                line = k.start_mark.line + 1
                if key in seen:
                    yield str(key), line, k.start_mark.column + 1, seen[key]
                else:
                    seen[key] = line
                stack.append(v)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def to_data(node: yaml.Node) -> Any:
    """Plain data from a node: string keys as written, scalars resolved, unknown tags untagged."""
    loader = TolerantLoader("")
    try:
        return _convert(loader, node)
    finally:
        loader.dispose()


def _convert(loader: Any, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            if _key(k) == "<<":
                merged = _convert(loader, v)
                for m in merged if isinstance(merged, list) else [merged]:
                    if isinstance(m, dict):
                        for mk, mv in m.items():
                            out.setdefault(mk, mv)
                continue
            out[_key(k)] = _convert(loader, v)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item) for item in node.value]
    try:
        return loader.construct_object(node)
    except (yaml.YAMLError, ValueError):
        return node.value


def node_at(node: yaml.Node, path: tuple[Any, ...] | list[Any]) -> yaml.Node:
    """The deepest node along ``path`` (keys and list indexes); stops where the path leaves the tree."""
    for step in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if _key(k) == step:
                    node = v
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
        else:
            return node
    return node


def key_node(node: yaml.Node, path: tuple[Any, ...] | list[Any]) -> yaml.Node:
    """The key node of the last step of ``path`` when it is a mapping key, else the value node."""
    if not path:
        return node
    parent = node_at(node, list(path)[:-1])
    if isinstance(parent, yaml.MappingNode):
        for k, _v in parent.value:
            if _key(k) == path[-1]:
                return k
    return node_at(node, path)


def position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def helm_template(capsule: Capsule, path: str) -> bool:
    """True for a file under a Helm chart's ``templates/``: a Go template, not YAML until Helm renders it."""
    parts = path.split("/")
    if "templates" not in parts[:-1]:
        return False
    chart_dir = "/".join(parts[: parts.index("templates")])
    return (capsule.root / chart_dir / "Chart.yaml").is_file()
