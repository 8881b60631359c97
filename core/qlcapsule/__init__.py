"""qlcapsule: generate, seal, sign, version, export and deliver capsules.

This module is the public API. Plugins (built-in or third-party) and the GitHub
Action (action/main.py) import only what is listed in ``__all__`` here — never
``qlcapsule.cli``, ``qlcapsule.store`` or other internals (tests hold both to it).

Names are imported on first use (PEP 562), so ``import qlcapsule`` and the
CLI start fast; a new public name goes into ``_EXPORTS`` (which ``__all__`` is made
from) and into the ``TYPE_CHECKING`` imports at the end, for type checkers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Capsule": "capsule",
    "SealResult": "capsule",
    "Artifact": "records",
    "Component": "components",
    "Deliverer": "components",
    "Exporter": "components",
    "Generator": "components",
    "GeneratorRecord": "records",
    "KeyPair": "records",
    "Options": "components",
    "Receipt": "records",
    "Signer": "components",
    "Validator": "components",
    "ConflictError": "errors",
    "CredentialsError": "errors",
    "DefinitionError": "errors",
    "InputError": "errors",
    "IntegrityError": "errors",
    "OptionsError": "errors",
    "PluginError": "errors",
    "QlcapsuleError": "errors",
    "RemoteError": "errors",
    "SignatureError": "errors",
    "StoreError": "errors",
    "UnsafePathError": "errors",
    "UsageError": "errors",
    "VerificationError": "errors",
    "Finding": "findings",
    "Rule": "findings",
    "Severity": "findings",
    "SECRET_PATTERNS": "findings",
    "clip": "findings",
    "quote": "findings",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "Register": "hookspecs",
    "Envelope": "envelope",
    "Statement": "envelope",
    "verify_signatures": "signing",
    "Lock": "lock",
    "LockEntry": "lock",
    "Status": "lock",
    "atomic_write": "lock",
    "capsule_digest": "lock",
    "get_logger": "log",
    "redact": "log",
    "DEFAULT_TIMEOUT": "resilience",
    "CircuitBreaker": "resilience",
    "CircuitOpenError": "resilience",
    "SignedUrlExpiry": "resilience",
    "Expandable": "resilience",
    "ExpandableText": "resilience",
    "ObjectPrefix": "resilience",
    "TransientError": "resilience",
    "breaker_for": "resilience",
    "read_secret": "resilience",
    "retry": "resilience",
    "scrub_error": "resilience",
    "signed_url_expiry": "resilience",
    "PayloadReader": "streaming",
    "FileEntry": "tree",
    "check_relative": "tree",
    "compile_glob": "globs",
    "sha256_file": "tree",
    "RedirectRefused": "resilience",
    "check_redirect": "resilience",
    "guard_redirects": "resilience",
    "is_loopback": "resilience",
    "operator_allows": "resilience",
    "origin": "resilience",
    "ENV_TRUST": "signing",
    "operator_trust_file": "signing",
    "alias_excess": "yamlsrc",
    # what a host program (the GitHub Action, a CI wrapper) runs, and how it reports
    "ShipOptions": "ship",
    "ShipResult": "ship",
    "ship_capsules": "ship",
    "Report": "validation",
    "validate_capsules": "validation",
    "verify_capsule": "pipeline",
    "export_capsule": "exporting",
    "deliver_capsule": "delivery",
    "finding_uri": "report",
    "sarif": "report",
    "scrub": "log",
    "interruption": "errors",
    "on_termination": "cli",
}

#: the public API is exactly the names above (a test holds the TYPE_CHECKING imports below to them)
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs
    from .capsule import (  # noqa: F401
        Capsule,
        SealResult,
    )
    from .cli import (  # noqa: F401
        on_termination,
    )
    from .components import (  # noqa: F401
        Component,
        Deliverer,
        Exporter,
        Generator,
        Options,
        Signer,
        Validator,
    )
    from .delivery import (  # noqa: F401
        deliver_capsule,
    )
    from .envelope import (  # noqa: F401
        Envelope,
        Statement,
    )
    from .errors import (  # noqa: F401
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
        interruption,
    )
    from .exporting import (  # noqa: F401
        export_capsule,
    )
    from .findings import (  # noqa: F401
        SECRET_PATTERNS,
        Finding,
        Rule,
        Severity,
        clip,
        quote,
    )
    from .globs import (  # noqa: F401
        compile_glob,
    )
    from .hookspecs import (  # noqa: F401
        Register,
        hookimpl,
        hookspec,
    )
    from .lock import (  # noqa: F401
        Lock,
        LockEntry,
        Status,
        atomic_write,
        capsule_digest,
    )
    from .log import (  # noqa: F401
        get_logger,
        redact,
        scrub,
    )
    from .pipeline import (  # noqa: F401
        verify_capsule,
    )
    from .records import (  # noqa: F401
        Artifact,
        GeneratorRecord,
        KeyPair,
        Receipt,
    )
    from .report import (  # noqa: F401
        finding_uri,
        sarif,
    )
    from .resilience import (  # noqa: F401
        DEFAULT_TIMEOUT,
        CircuitBreaker,
        CircuitOpenError,
        Expandable,
        ExpandableText,
        ObjectPrefix,
        RedirectRefused,
        SignedUrlExpiry,
        TransientError,
        breaker_for,
        check_redirect,
        guard_redirects,
        is_loopback,
        operator_allows,
        origin,
        read_secret,
        retry,
        scrub_error,
        signed_url_expiry,
    )
    from .ship import (  # noqa: F401
        ShipOptions,
        ShipResult,
        ship_capsules,
    )
    from .signing import (  # noqa: F401
        ENV_TRUST,
        operator_trust_file,
        verify_signatures,
    )
    from .streaming import (  # noqa: F401
        PayloadReader,
    )
    from .tree import (  # noqa: F401
        FileEntry,
        check_relative,
        sha256_file,
    )
    from .validation import (  # noqa: F401
        Report,
        validate_capsules,
    )
    from .yamlsrc import (  # noqa: F401
        alias_excess,
    )
