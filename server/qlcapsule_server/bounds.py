"""Untrusted request bodies are bounded in size and shape before anything parses them."""

from __future__ import annotations

import json
from typing import Any

from qlcapsule import InputError

_OPEN, _CLOSE, _QUOTE, _ESCAPE = frozenset(b"[{"), frozenset(b"]}"), ord('"'), ord("\\")


def json_depth(raw: bytes) -> int:
    """The deepest ``[``/``{`` nesting of JSON bytes, counted without parsing (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _ESCAPE:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSE:
            depth -= 1
    return deepest


def load_json(raw: bytes, *, max_bytes: int, max_depth: int, where: str = "request body") -> Any:
    """JSON bytes as data, after the size and depth checks; InputError (one line) otherwise."""
    if len(raw) > max_bytes:
        raise InputError(f"{where}: {len(raw)} bytes; at most {max_bytes} are accepted")
    depth = json_depth(raw)
    if depth > max_depth:
        raise InputError(f"{where}: JSON nested {depth} levels deep; at most {max_depth} are accepted")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except ValueError:  # an integer longer than Python reads
        raise InputError(f"{where}: invalid JSON: a number too long") from None
