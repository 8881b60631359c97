"""qlcapsule: generate, seal, sign, version, export and deliver capsules.

This module is the public API. Plugins (built-in or third-party) import only
what is listed in ``__all__`` here — never ``qlcapsule.cli``, ``qlcapsule.store``
or other internals.
"""

from __future__ import annotations

from .capsule import Capsule, SealResult
from .components import (
    Artifact,
    Component,
    Deliverer,
    Exporter,
    Generator,
    GeneratorRecord,
    KeyPair,
    Options,
    Receipt,
    Signer,
    Validator,
)
from .errors import (
    ConflictError,
    CredentialsError,
    DefinitionError,
    InputError,
    IntegrityError,
    OptionsError,
    PluginError,
    QlcapsuleError,
    RemoteError,
    SignatureError,
    StoreError,
    UnsafePathError,
    UsageError,
    VerificationError,
)
from .findings import Finding, Rule, Severity
from .hookspecs import hookimpl
from .lock import Lock, LockEntry, Status, atomic_write, capsule_digest
from .log import get_logger, redact
from .resilience import (
    DEFAULT_TIMEOUT,
    CircuitBreaker,
    CircuitOpenError,
    SignedUrlExpiry,
    TransientError,
    breaker_for,
    read_secret,
    retry,
    scrub_error,
    signed_url_expiry,
)
from .tree import FileEntry, check_relative, sha256_file

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "hookimpl",
    # capsules
    "Capsule",
    "SealResult",
    "Lock",
    "LockEntry",
    "FileEntry",
    "Status",
    "capsule_digest",
    "sha256_file",
    "check_relative",
    "atomic_write",
    # components
    "Component",
    "Options",
    "Generator",
    "GeneratorRecord",
    "Validator",
    "Signer",
    "KeyPair",
    "Exporter",
    "Deliverer",
    "Artifact",
    "Receipt",
    # findings
    "Finding",
    "Rule",
    "Severity",
    # logging
    "get_logger",
    "redact",
    # robustness helpers for deliverers (resilience.py)
    "retry",
    "CircuitBreaker",
    "CircuitOpenError",
    "breaker_for",
    "TransientError",
    "DEFAULT_TIMEOUT",
    "read_secret",
    "scrub_error",
    "signed_url_expiry",
    "SignedUrlExpiry",
    # errors
    "QlcapsuleError",
    "UsageError",
    "InputError",
    "DefinitionError",
    "OptionsError",
    "UnsafePathError",
    "IntegrityError",
    "VerificationError",
    "SignatureError",
    "PluginError",
    "StoreError",
    "ConflictError",
    "CredentialsError",
    "RemoteError",
]
