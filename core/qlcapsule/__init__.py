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
    "Capsule": "format.capsule",
    "SealResult": "format.capsule",
    "Artifact": "plugins.records",
    "Component": "plugins.components",
    "Deliverer": "plugins.components",
    "Exporter": "plugins.components",
    "Generator": "plugins.components",
    "GeneratorRecord": "plugins.records",
    "KeyPair": "plugins.records",
    "Options": "plugins.components",
    "Receipt": "plugins.records",
    "Signer": "plugins.components",
    "TemplateInfo": "plugins.records",
    "Validator": "plugins.components",
    "FileToCheck": "plugins.components",
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
    "Finding": "plugins.findings",
    "Rule": "plugins.findings",
    "Engine": "plugins.findings",
    "Severity": "plugins.findings",
    "SECRET_PATTERNS": "plugins.findings",
    "clip": "plugins.findings",
    "quote": "plugins.findings",
    "hookimpl": "plugins.hookspecs",
    "hookspec": "plugins.hookspecs",
    "Register": "plugins.hookspecs",
    "Envelope": "signing.envelope",
    "Statement": "signing.envelope",
    "VerifyKey": "signing.envelope",
    "verify_envelope": "signing.envelope",
    "verify_signatures": "signing.signatures",
    "Lock": "format.lock",
    "LockEntry": "format.lock",
    "Status": "format.lock",
    "atomic_write": "format.lock",
    "capsule_digest": "format.lock",
    "parse_lock": "format.lock",
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
    "PayloadReader": "format.streaming",
    "FileEntry": "format.tree",
    "check_relative": "format.tree",
    "compile_glob": "format.globs",
    "sha256_file": "format.tree",
    "RedirectRefused": "resilience",
    "check_redirect": "resilience",
    "guard_redirects": "resilience",
    "is_loopback": "resilience",
    "operator_allows": "resilience",
    "origin": "resilience",
    "ENV_TRUST": "signing.signatures",
    "operator_trust_file": "signing.signatures",
    "load_trust_file": "signing.signatures",
    "alias_excess": "format.yamlsrc",
    # a module: safe YAML loading with file and line in every error, for plugins that read YAML of their own
    "yamlsrc": "format",
    # what a host program (the GitHub Action, a CI wrapper) runs, and how it reports
    "ShipOptions": "steps.ship",
    "ShipResult": "steps.ship",
    "ship_capsules": "steps.ship",
    "Report": "steps.validation",
    "validate_capsules": "steps.validation",
    "verify_capsule": "pipeline",
    "export_capsule": "steps.exporting",
    "deliver_capsule": "steps.delivery",
    "finding_uri": "steps.report",
    "sarif": "steps.report",
    "scrub": "log",
    "interruption": "errors",
    "on_termination": "cli",
    "emit": "cli._common",
    "json_option": "cli._common",
    "publish_report": "plugins.manager",
    # reading a version store someone else wrote (catalog sync): refs, versions, the stored lock and signature
    "read_store": "store.versions",
    "StoreReader": "store.versions",
    "StoredVersion": "store.versions",
}

#: the public API is exactly the names above (a test holds the TYPE_CHECKING imports below to them)
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    except AttributeError:  # a public module (``yamlsrc``) not imported yet
        value = importlib.import_module(f".{module}.{name}", __name__)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs
    from .cli import (  # noqa: F401
        on_termination,
    )
    from .cli._common import (  # noqa: F401
        emit,
        json_option,
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
    from .format import yamlsrc  # noqa: F401
    from .format.capsule import (  # noqa: F401
        Capsule,
        SealResult,
    )
    from .format.globs import (  # noqa: F401
        compile_glob,
    )
    from .format.lock import (  # noqa: F401
        Lock,
        LockEntry,
        Status,
        atomic_write,
        capsule_digest,
        parse_lock,
    )
    from .format.streaming import (  # noqa: F401
        PayloadReader,
    )
    from .format.tree import (  # noqa: F401
        FileEntry,
        check_relative,
        sha256_file,
    )
    from .format.yamlsrc import (  # noqa: F401
        alias_excess,
    )
    from .log import (  # noqa: F401
        get_logger,
        redact,
        scrub,
    )
    from .pipeline import (  # noqa: F401
        verify_capsule,
    )
    from .plugins.components import (  # noqa: F401
        Component,
        Deliverer,
        Exporter,
        FileToCheck,
        Generator,
        Options,
        Signer,
        Validator,
    )
    from .plugins.findings import (  # noqa: F401
        SECRET_PATTERNS,
        Engine,
        Finding,
        Rule,
        Severity,
        clip,
        quote,
    )
    from .plugins.hookspecs import (  # noqa: F401
        Register,
        hookimpl,
        hookspec,
    )
    from .plugins.manager import (  # noqa: F401
        publish_report,
    )
    from .plugins.records import (  # noqa: F401
        Artifact,
        GeneratorRecord,
        KeyPair,
        Receipt,
        TemplateInfo,
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
    from .signing.envelope import (  # noqa: F401
        Envelope,
        Statement,
        VerifyKey,
        verify_envelope,
    )
    from .signing.signatures import (  # noqa: F401
        ENV_TRUST,
        load_trust_file,
        operator_trust_file,
        verify_signatures,
    )
    from .steps.delivery import (  # noqa: F401
        deliver_capsule,
    )
    from .steps.exporting import (  # noqa: F401
        export_capsule,
    )
    from .steps.report import (  # noqa: F401
        finding_uri,
        sarif,
    )
    from .steps.ship import (  # noqa: F401
        ShipOptions,
        ShipResult,
        ship_capsules,
    )
    from .steps.validation import (  # noqa: F401
        Report,
        validate_capsules,
    )
    from .store.versions import (  # noqa: F401
        StoredVersion,
        StoreReader,
        read_store,
    )
