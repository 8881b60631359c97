"""init, seal and verify as plain functions: what the CLI, the Action, the hooks and the store call.

Each area keeps its own steps in its own package (signing in ``signing/``, validation,
export and delivery in ``steps/``, the store in ``store/``); ``steps/ship.py`` composes
them. This module sits below ``store`` and ``steps`` because both verify capsules
(``store.merge`` checks each version it writes out, ``steps.safeimport`` each import).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import InputError, IntegrityError
from .format.capsule import Capsule, SealResult
from .format.lock import atomic_write
from .format.names import DEFINITION_FILE, DNS_LABEL, SEMVER
from .format.tree import Unlocked, walk
from .log import event, get_logger
from .progress import bytes_progress

log = get_logger("pipeline")


def dns_label(text: str) -> str:
    """Best-effort DNS label from a directory name (``My_Service`` -> ``my-service``)."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return label or "capsule"


def init_capsule(root: Path, *, name: str | None = None, version: str = "0.1.0") -> Path:
    """Write a minimal capsule.yaml in ``root``; refuse to overwrite one."""
    if not root.is_dir():
        raise InputError(f"{root}: {'not a directory' if root.exists() else 'no such directory'}", file=str(root))
    path = root / DEFINITION_FILE
    if path.exists():
        raise InputError(f"{path}: already exists; not overwriting")
    name = name or dns_label(root.resolve().name)
    if not DNS_LABEL.match(name):
        raise InputError(f"--name: {name!r} is not a DNS label (lowercase a-z, 0-9 and '-', 1-63 characters)")
    if not SEMVER.match(version):
        raise InputError(f"--version: {version!r} is not a SemVer 2.0.0 version")
    text = (
        f"# capsule definition; see 'qlcapsule schema capsule'\nname: {name}\nversion: {version}\ndescription: \"\"\n"
    )
    atomic_write(path, text.encode("utf-8"))
    return path


def _total_bytes(capsule: Capsule) -> int:
    return sum(f.size for f in walk(capsule.root, capsule.globs()))


def seal_capsule(root: Path) -> SealResult:
    capsule = Capsule.load(root, strict=False)  # seal validates capsule.yaml alongside the hashing
    with bytes_progress(f"sealing {capsule.ref}", lambda: _total_bytes(capsule)) as advance:
        result = capsule.seal(progress=advance)
    event(log, "seal.done", capsule=capsule.ref, digest=result.digest, written=result.written)
    return result


def verify_capsule(root: Path, *, strict: bool = False, **signature_options: Any) -> dict[str, Any]:
    """Integrity first, then signatures and the signature policy; raises on any failure.

    The report's ``unlocked`` names what sits outside the lock and can change what the
    capsule does (:class:`qlcapsule.format.tree.Unlocked`); ``strict`` makes any of it a failure.

    ``signature_options`` are those of :func:`qlcapsule.signing.signatures.verify_signatures`
    (``keys``, ``hmac_key_envs``, ``trust``, ``threshold``, ``require_signature``,
    ``min_version``, ``allow_rollback``, ``now``). Trusted keys come from those options or
    ``$QLCAPSULE_TRUST_FILE``, never from capsule.yaml (``policy.trust`` is ignored); a
    signed capsule with none is reported ``unchecked``. The signing module (and through
    the signer plugins, ``cryptography``) is imported only when there is something
    to check: a capsule.sig, a key option or a policy that requires a signature.
    """
    capsule = Capsule.load(root, strict=False)  # capsule.yaml is read (by the model) on first use
    unlocked = Unlocked()
    with bytes_progress(
        f"verifying {capsule.ref}", lambda: sum(f.size for f in capsule.require_lock().files)
    ) as advance:
        lock = capsule.verify_integrity(progress=advance, unlocked=unlocked, strict=strict)
    event(log, "verify.integrity", capsule=capsule.ref, digest=lock.digest)
    report: dict[str, Any] = {
        "ok": True,
        "capsule": capsule.name,
        "version": capsule.version,
        "digest": lock.digest,
        "files": len(lock.files),
        "integrity": "ok",
        "unlocked": unlocked.summary(),
    }
    opts = {k: v for k, v in signature_options.items() if v not in (None, False, (), [])}
    policy = capsule.setting("policy") or {}
    sig_exists = capsule.sig_path.exists() or capsule.sig_path.is_symlink()  # a dangling symlink is refused too
    if opts or sig_exists or policy.get("require_signature") or policy.get("min_version"):
        from .signing.signatures import verify_signatures  # noqa: PLC0415 -- start-up: signing loads only for a signed capsule or signature options

        report["signature"] = verify_signatures(capsule, lock, **opts)
    else:
        report["signature"] = {"status": "unsigned"}
    return report


__all__ = ["init_capsule", "seal_capsule", "verify_capsule", "dns_label", "IntegrityError"]
