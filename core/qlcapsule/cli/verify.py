"""verify."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import IntegrityError, QlcapsuleError, SignatureError
from ._common import capsule_dir, emit, json_option, main, trust_options
from ._text import unlocked_warnings, verify_text


@main.command()
@capsule_dir
@trust_options("Trusted public key file (Ed25519 PEM or ssh-ed25519). Repeatable.")
@click.option(
    "--threshold",
    type=click.IntRange(min=1),
    help="Distinct trusted keys that must have signed (default: policy.threshold, 1).",
)
@click.option(
    "--require-signature",
    is_flag=True,
    help="Fail when the capsule is unsigned (implied by --key, --hmac-key-env, --trust).",
)
@click.option(
    "--min-version", metavar="VERSION", help="Refuse a signature for a version older than VERSION (rollback)."
)
@click.option("--allow-rollback", is_flag=True, help="Do not compare with the newest version in the version store.")
@click.option(
    "--strict",
    is_flag=True,
    help="Fail (exit 1) when bytecode, VCS metadata or executables sit in the capsule outside the lock.",
)
@json_option
def verify(
    directory: str,
    keys: tuple[str, ...],
    hmac_key_envs: tuple[str, ...],
    trust: str | None,
    threshold: int | None,
    require_signature: bool,
    min_version: str | None,
    allow_rollback: bool,
    strict: bool,
    as_json: bool,
) -> None:
    """Check DIRECTORY against its lock, then its signatures.

    Integrity comes first: every file must match capsule.lock. Then, when
    capsule.sig exists or a key option is given, the DSSE signatures are
    checked against the trusted keys, followed by the signed statement
    (name/version, digest of the files on disk, expiry, rollback).
    Trusted keys come from --key, --hmac-key-env and --trust, else from the
    trust file named by $QLCAPSULE_TRUST_FILE; never from the capsule (its
    policy.trust is ignored; its policy may only raise the threshold, require
    a signature or set a minimum version). A signed capsule with no trusted
    keys is reported as "NOT checked" (exit 0 unless a signature is required),
    never as verified.
    Bytecode, VCS metadata (.git) and executables inside DIRECTORY but outside
    the lock are named on stderr as warnings; --strict fails on them.

    Exit codes: 0 verified; 1 tampered, unsigned under a policy, files
    outside the lock under --strict, or a signature failed (the message
    names the cause); 2 bad usage or an unreadable key/trust file. With
    --json a failure's result is {"directory", "stage": integrity, signature
    or input} and its error names the cause (qlcapsule schema envelope).
    """
    from ..pipeline import verify_capsule  # noqa: PLC0415 -- start-up: the pipeline loads only in the commands that use it, not for --help

    try:
        report = verify_capsule(
            Path(directory),
            keys=list(keys),
            hmac_key_envs=list(hmac_key_envs),
            trust=trust,
            threshold=threshold,
            require_signature=require_signature,
            min_version=min_version,
            allow_rollback=allow_rollback,
            strict=strict,
        )
    except QlcapsuleError as exc:  # the answer's result says which check failed; its error says why
        stage = (
            "integrity"
            if isinstance(exc, IntegrityError)
            else "signature"
            if isinstance(exc, SignatureError)
            else "input"
        )
        emit(as_json, {"directory": directory, "stage": stage})
        raise
    emit(as_json, report, verify_text(report))
    for line in unlocked_warnings(report):
        click.echo(line, err=True)
