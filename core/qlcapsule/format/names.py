"""Light constants of the capsule format, importable without pydantic (fast paths)."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputError

DEFINITION_FILE = "capsule.yaml"
LOCK_FILE = "capsule.lock"
SIG_FILE = "capsule.sig"

# \Z, not $: "$" also matches before a final newline, so "demo\n" would pass as a name.
DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# The regex published with SemVer 2.0.0 (https://semver.org).
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z"
)


def semver_key(version: str) -> tuple[Any, ...]:
    """A sort key with SemVer 2.0.0 precedence (build metadata ignored).

    A string that is not SemVer is bad input (InputError, exit 2), never quietly
    sorted first or last: callers that may hold one filter with ``SEMVER`` first.
    """
    m = SEMVER.match(version)
    if not m:
        raise InputError(f"{version!r} is not a SemVer 2.0.0 version")
    major, minor, patch, pre = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
    if pre is None:
        return (major, minor, patch, 1, ())
    # numeric identifiers sort before alphanumeric ones, and numerically among themselves
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (major, minor, patch, 0, ids)


DEFAULT_EXCLUDE = [
    ".git",
    ".hg",
    ".svn",
    ".qlcapsule/",
    "__pycache__/",
    "*.py[cod]",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".tox/",
    ".nox/",
    ".venv/",
    ".DS_Store",
]

#: a YAML document read by yamlsrc (capsule.yaml, template.yaml, answers, Chart.yaml); real ones are a few KiB
MAX_YAML_BYTES = 1024 * 1024

#: capsule.sig holds one small statement and at most envelope.MAX_SIGNATURES signatures
MAX_SIG_BYTES = 1024 * 1024

#: capsule.lock: about 150 bytes a file, so some 400,000 files; refused before it is parsed
MAX_LOCK_BYTES = 64 * 1024 * 1024
