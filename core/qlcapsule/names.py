"""Light constants of the capsule format, importable without pydantic (fast paths)."""

from __future__ import annotations

import re

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
