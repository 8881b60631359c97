"""Delivery targets: the operator defines them; capsule.yaml only selects them.

A target names a provider, an endpoint and the environment variable holding the
credential sent there, so whoever writes a target's definition decides where the
credential goes. capsule.yaml is content under test (a pull request edits it), so:

- **The operator's targets file** holds the definitions that may use credentials:
  YAML ``targets: {name: {provider, options, formats, notify}}``, the schema of
  capsule.yaml's ``targets:``. Found, first hit wins: ``--targets-file FILE``,
  ``$QLCAPSULE_TARGETS_FILE``, ``$XDG_CONFIG_HOME/qlcapsule/targets.yaml``
  (``~/.config/qlcapsule/targets.yaml``) when it exists. At most
  :data:`MAX_BYTES`; bad YAML or a bad key is one line ``FILE:LINE: key: reason``.
- **A name is looked up there first.** capsule.yaml defining the same name is
  ignored (with a warning naming both files); the capsule still selects targets by
  name (``ship.targets``, ``--target``).
- **A target defined only in capsule.yaml** may be ``local`` only, writing inside
  the working directory, with no webhooks (:func:`check_capsule_defined`, called by
  ``delivery.load_deliverer`` before any credential is read or byte is sent).
- **The opt-in** ``QLCAPSULE_CAPSULE_TARGETS=trust`` (or ``--trust-capsule-targets``)
  treats capsule.yaml as operator content: only for workflows that never check out
  a pull request's files (a release job on the protected default branch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ..errors import DefinitionError, InputError, UnsafePathError, UsageError
from ..format import yamlsrc
from ..format.model import TargetConfig, TargetsFile, schema_error
from ..log import get_logger

if TYPE_CHECKING:
    from ..format.capsule import Capsule

__all__ = [
    "ENV_FILE",
    "ENV_TRUST",
    "MAX_BYTES",
    "OperatorTargets",
    "check_capsule_defined",
    "default_targets_file",
    "load_targets_file",
    "operator_targets",
]

log = get_logger("qlcapsule.targets")

ENV_FILE = "QLCAPSULE_TARGETS_FILE"
ENV_TRUST = "QLCAPSULE_CAPSULE_TARGETS"
#: a targets file names a few targets; a megabyte is hundreds of them
MAX_BYTES = 1024 * 1024
_WHERE_TO = (
    "define this target in the operator's targets file "
    f"(--targets-file, {ENV_FILE} or ~/.config/qlcapsule/targets.yaml), see docs/security.md"
)


@dataclass(frozen=True)
class OperatorTargets:
    """The operator's target definitions and whether capsule.yaml's are trusted too."""

    targets: dict[str, TargetConfig] = field(default_factory=dict)
    file: str | None = None
    trust_capsule: bool = False


def default_targets_file() -> Path:
    """``$XDG_CONFIG_HOME/qlcapsule/targets.yaml``, else ``~/.config/qlcapsule/targets.yaml``."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "qlcapsule" / "targets.yaml"


def operator_targets(targets_file: str | Path | None = None, trust: bool | None = None) -> OperatorTargets:
    """The operator's targets: ``targets_file``, else ``$QLCAPSULE_TARGETS_FILE``, else the
    default file when it exists; ``trust`` (else ``$QLCAPSULE_CAPSULE_TARGETS``) opts in to
    capsule.yaml's definitions."""
    if trust is None:
        value = os.environ.get(ENV_TRUST, "").strip()
        if value not in ("", "trust"):
            raise UsageError(f"{ENV_TRUST}={value!r}: the only value is 'trust' (or leave it unset)")
        trust = value == "trust"
    path: Path | None = Path(targets_file) if targets_file else None
    if path is None and os.environ.get(ENV_FILE):
        path = Path(os.environ[ENV_FILE])
    if path is None:
        default = default_targets_file()
        path = default if default.exists() else None
    if path is None:
        return OperatorTargets(trust_capsule=trust)
    return OperatorTargets(load_targets_file(path), str(path), trust)


def load_targets_file(path: Path) -> dict[str, TargetConfig]:
    """Read and validate an operator's targets file; each target is marked ``operator``."""
    name = str(path)
    try:
        if not path.is_file():
            raise DefinitionError(f"{name}: {'not a regular file' if path.exists() else 'no such file'}")
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise DefinitionError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise DefinitionError(f"{name}: larger than {MAX_BYTES // 1024} KiB; not a targets file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(f"{name}: not UTF-8 (byte {exc.start})") from None
    data, lines = yamlsrc.load(text, name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DefinitionError(f"{name}:1: expected a mapping with 'targets:' at the top level")
    try:
        parsed = TargetsFile.model_validate(data)
    except ValidationError as exc:
        raise schema_error(exc, lines, name, TargetsFile) from None
    out = {}
    for target, config in parsed.targets.items():
        keys = {"": lines.get(("targets", target), 0)}
        keys.update({str(p[2]): n for p, n in lines.items() if len(p) == 3 and p[:2] == ("targets", target)})
        out[target] = config.with_origin("operator", name, keys)
    return out


def _located(config: TargetConfig, name: str, capsule: Capsule | None) -> TargetConfig:
    """``config`` with the lines of ``targets.<name>`` in capsule.yaml, read only to word an error."""
    if config.origin != "capsule" or capsule is None or config.where() != config.file:
        return config
    try:
        _, lines = yamlsrc.load_file(capsule.root / "capsule.yaml")
    except InputError:
        return config
    keys = {"": lines.get(("targets", name), 0)}
    keys.update({str(p[2]): n for p, n in lines.items() if len(p) == 3 and p[:2] == ("targets", name)})
    return config.with_origin("capsule", str(capsule.root / "capsule.yaml"), keys)


def check_capsule_defined(name: str, config: TargetConfig, capsule: Capsule | None) -> None:
    """Refuse what a capsule-defined target may not do: any provider but ``local``, webhooks."""
    config = _located(config, name, capsule)
    if config.provider != "local":
        raise InputError(
            f"{config.where()}: targets.{name}: provider {config.provider!r} uses credentials; {_WHERE_TO}"
        )
    if config.notify:
        raise InputError(
            f"{config.where('notify')}: targets.{name}.notify: webhooks are sent from the operator's machine "
            f"(with its secrets); {_WHERE_TO}"
        )


def check_local_path(name: str, config: TargetConfig, path: str, capsule: Capsule | None = None) -> None:
    """A ``local`` target not defined by the operator writes only inside the working directory.

    ``path`` is the target's path with ``{name}``/``{version}`` expanded. Refused: an
    absolute path, ``~``, a ``..`` or symlink leaving the working directory, and
    ``.git`` (the checkout's hooks and config)."""
    config = _located(config, name, capsule)
    where = f"{config.where('options')}: targets.{name}.options.path: {path!r}"
    why = "a target defined in capsule.yaml writes only inside the working directory"
    if path.startswith("~"):
        raise UnsafePathError(f"{where}: '~' is not expanded here; {why}; {_WHERE_TO}")
    if os.path.isabs(path) or Path(path).anchor:
        raise UnsafePathError(f"{where}: an absolute path; {why}; {_WHERE_TO}")
    cwd = Path.cwd().resolve()
    try:
        dest = (cwd / path).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise UnsafePathError(f"{where}: a symlink loop; {why}") from None
    if dest != cwd and cwd not in dest.parents:
        raise UnsafePathError(f"{where}: leaves the working directory ('..' or a symlink); {why}; {_WHERE_TO}")
    if ".git" in dest.relative_to(cwd).parts:
        raise UnsafePathError(f"{where}: inside .git; {why}, outside .git")
