"""A tiny Go text/template renderer for the Helm chart tests (no helm binary here).

It handles exactly the subset the exported chart uses: ``{{- -}}`` trimming,
comments, ``define``/``include``, ``if``/``else``, ``with``, ``range $k, $v :=``,
field chains on ``.``, ``$`` and ``$vars``, string literals, and the functions
``trunc trimSuffix printf replace quote default or toYaml nindent``. Anything else
raises, so a template change that needs more fails loudly instead of passing.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import yaml

_TOKEN = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _tokens(src: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _TOKEN.finditer(src):
        text = src[pos : m.start()]
        if m.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            while pos < len(src) and src[pos] in " \t\r\n":
                pos += 1
    out.append(("text", src[pos:]))
    return [t for t in out if not (t[0] == "action" and t[1].startswith("/*"))]


def _parse(tokens: list[tuple[str, str]], i: int, defines: dict[str, list]) -> tuple[list, int, str]:
    """Parse until ``end``/``else``; returns (nodes, next index, terminator)."""
    nodes: list = []
    while i < len(tokens):
        kind, val = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(("text", val))
            continue
        word = val.split(None, 1)[0] if val else ""
        if word in ("end", "else"):
            return nodes, i, word
        if word == "define":
            body, i, _ = _parse(tokens, i, defines)
            defines[shlex.split(val)[1]] = body
        elif word in ("if", "with", "range"):
            body, i, term = _parse(tokens, i, defines)
            other: list = []
            if term == "else":
                other, i, _ = _parse(tokens, i, defines)
            nodes.append((word, val.split(None, 1)[1], body, other))
        else:
            nodes.append(("expr", val))
    return nodes, i, "eof"


def _truthy(v: Any) -> bool:
    return bool(v)


def _to_yaml(v: Any) -> str:
    return yaml.safe_dump(v, sort_keys=True, default_flow_style=False).rstrip("\n")


class Renderer:
    def __init__(self, templates: dict[str, str]) -> None:
        self.defines: dict[str, list] = {}
        self.bodies = {name: _parse(_tokens(src), 0, self.defines)[0] for name, src in templates.items()}

    def render(self, name: str, context: dict[str, Any]) -> str:
        return self._run(self.bodies[name], context, {"": context})  # "$": the data the template was given

    def _run(self, nodes: list, dot: Any, vars_: dict[str, Any]) -> str:
        out = []
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "expr":
                value = self._pipeline(node[1], dot, vars_)
                out.append("" if value is None else str(value))
            elif kind == "if":
                cond = self._pipeline(node[1], dot, vars_)
                out.append(self._run(node[2] if _truthy(cond) else node[3], dot, vars_))
            elif kind == "with":
                value = self._pipeline(node[1], dot, vars_)
                out.append(self._run(node[2], value, vars_) if _truthy(value) else self._run(node[3], dot, vars_))
            elif kind == "range":
                m = re.fullmatch(r"\$(\w+),\s*\$(\w+)\s*:=\s*(.+)", node[1])
                if not m:
                    raise NotImplementedError(f"range form {node[1]!r}")
                coll = self._pipeline(m.group(3), dot, vars_) or {}
                items = sorted(coll.items()) if isinstance(coll, dict) else list(enumerate(coll))
                for k, v in items:
                    out.append(self._run(node[2], v, {**vars_, m.group(1): k, m.group(2): v}))
        return "".join(out)

    def _pipeline(self, text: str, dot: Any, vars_: dict[str, Any]) -> Any:
        stages = [s.strip() for s in text.split("|")]
        value: Any = _NOTHING
        for stage in stages:
            args = shlex.split(stage, posix=False)
            value = self._call(args, dot, vars_, value)
        return value

    def _arg(self, tok: str, dot: Any, vars_: dict[str, Any]) -> Any:
        if tok.startswith('"'):
            return tok[1:-1]
        if tok == ".":
            return dot
        if tok.startswith("$"):
            name, _, rest = tok[1:].partition(".")
            return _walk(vars_[name], rest)
        if tok.startswith("."):
            return _walk(dot, tok[1:])
        if tok.isdigit():
            return int(tok)
        raise NotImplementedError(f"argument {tok!r}")

    def _call(self, args: list[str], dot: Any, vars_: dict[str, Any], piped: Any) -> Any:
        fn, rest = args[0], args[1:]
        vals = [self._arg(a, dot, vars_) for a in rest] if fn in _FUNCS or fn == "include" else None
        if vals is not None and piped is not _NOTHING:
            vals.append(piped)
        if fn == "include":
            return self._run(self.defines[vals[0]], vals[1], {"": vals[1]})  # type: ignore[index]
        if fn in _FUNCS:
            return _FUNCS[fn](*vals)  # type: ignore[misc]
        if len(args) == 1 and piped is _NOTHING:
            return self._arg(fn, dot, vars_)
        raise NotImplementedError(f"function {fn!r}")


_NOTHING = object()


def _walk(obj: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


_FUNCS = {
    "trunc": lambda n, s: str(s)[:n],
    "trimSuffix": lambda suf, s: str(s)[: -len(suf)] if str(s).endswith(suf) else str(s),
    "printf": lambda fmt, *a: fmt.replace("%s", "{}").format(*a),
    "replace": lambda old, new, s: str(s).replace(old, new),
    # sprig's quote is Go's %q: backslash, quote and control characters escaped (JSON's escapes are the same here)
    "quote": lambda v: json.dumps(str(v), ensure_ascii=False),
    "default": lambda d, v: v if v else d,
    # Go's builtin: the first non-empty argument, else the last
    "or": lambda *a: next((v for v in a if _truthy(v)), a[-1]),
    "toYaml": _to_yaml,
    "nindent": lambda n, s: "\n" + "\n".join(" " * n + line if line else line for line in str(s).split("\n")),
}


def render_chart(files: dict[str, bytes], values_over: dict | None = None, release: str = "rel") -> dict[str, str]:
    """A packaged chart's templates rendered as ``helm template`` would: {template name: text}.

    ``files`` maps the .tgz member names (``CHART/...``) to their bytes; ``values_over`` goes over
    values.yaml one top-level key at a time (a mapping merged one level deep, as ``--set a.b=...``).
    """
    chart = next(iter(files)).split("/", 1)[0]
    values = yaml.safe_load(files[f"{chart}/values.yaml"])
    for key, val in (values_over or {}).items():
        values[key] = {**values.get(key, {}), **val} if isinstance(val, dict) else val
    meta = yaml.safe_load(files[f"{chart}/Chart.yaml"])
    context = {
        "Values": values,
        "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
        "Release": {"Name": release, "Service": "Helm", "Namespace": "default"},
    }
    prefix = f"{chart}/templates/"
    templates = {n[len(prefix) :]: d.decode() for n, d in files.items() if n.startswith(prefix)}
    r = Renderer(templates)
    return {n: r.render(n, context) for n in templates if not n.startswith("_")}
