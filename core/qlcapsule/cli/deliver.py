"""deliver: send a capsule's exports to a named target."""

from __future__ import annotations

import click

from ..log import scrub
from ._common import capsule_dir, emit, json_option, main

targets_file_option = click.option(
    "--targets-file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="The operator's targets file (default: $QLCAPSULE_TARGETS_FILE, else ~/.config/qlcapsule/targets.yaml).",
)
trust_capsule_targets_option = click.option(
    "--trust-capsule-targets",
    is_flag=True,
    help="Also use targets capsule.yaml defines, with any provider and credentials "
    "(like QLCAPSULE_CAPSULE_TARGETS=trust). Never where a pull request's files are checked out.",
)


@main.command()
@capsule_dir
@click.option(
    "-t",
    "--target",
    metavar="NAME",
    help="Target from the operator's targets file (or a local one in capsule.yaml); default: 'local' -> ./dist.",
)
@click.option(
    "-a",
    "--artifact",
    "artifacts",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="Deliver this file instead of exporting the capsule (repeatable).",
)
@click.option(
    "-f",
    "--format",
    "formats",
    multiple=True,
    metavar="F",
    help="Export format(s) to deliver (repeatable; default: the target's 'formats', then ship.formats).",
)
@click.option(
    "--dry-run", is_flag=True, help="Check target, options, credentials and the capsule's integrity; upload nothing."
)
@targets_file_option
@trust_capsule_targets_option
@json_option
def deliver(
    directory: str,
    target: str | None,
    artifacts: tuple[str, ...],
    formats: tuple[str, ...],
    dry_run: bool,
    targets_file: str | None,
    trust_capsule_targets: bool,
    as_json: bool,
) -> None:
    """Deliver the capsule in DIRECTORY (its exports, or --artifact files) to a target.

    Options are validated and credentials checked before any upload; every upload
    is read back (or its server checksum compared) before it counts. One receipt
    per artifact (provider, location, URL, size, SHA-256, time) is printed and,
    when the capsule version is committed, stored as a git note.

    Targets are defined in the operator's targets file (--targets-file,
    QLCAPSULE_TARGETS_FILE, ~/.config/qlcapsule/targets.yaml); capsule.yaml
    selects them by name and may itself define only a local target inside the
    working directory (see docs/delivery.md and docs/security.md).

    \b
    Credentials come from the environment, never from capsule.yaml:
      s3     AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE (boto3 chain)
      gcs    GOOGLE_APPLICATION_CREDENTIALS (google-auth chain)
      azure  AZURE_STORAGE_CONNECTION_STRING
      github GITHUB_TOKEN, gitlab GITLAB_TOKEN, oci registry auth
    See docs/delivery.md for each provider's options.

    \b
    Exit codes: 0 delivered (or dry run passed); 1 conflict (object exists with
    other content) or a checksum mismatch; 2 bad target, option or missing
    credential; 3 the remote side failed after retries.
    """
    from ..steps.delivery import deliver_capsule  # noqa: PLC0415 -- start-up: delivery (pydantic, yaml, http) loads only in the commands that use it, not for --help
    from ..steps.targets import operator_targets  # noqa: PLC0415 -- start-up: the targets file (pydantic, yaml) loads only in the commands that use it, not for --help

    operator = operator_targets(targets_file, True if trust_capsule_targets else None)
    receipts = deliver_capsule(
        directory, target, list(artifacts) or None, dry_run=dry_run, formats=formats or None, operator=operator
    )
    emit(as_json, {"dry_run": dry_run, "receipts": [r.to_dict() for r in receipts]})
    if as_json:
        return
    for r in receipts:
        if dry_run:
            click.echo(
                scrub(f"would deliver {r.location} to target {r.target} ({r.provider}): options and credentials ok")
            )
            continue
        note = " (already there)" if r.extra.get("existing") else ""
        click.echo(scrub(f"delivered {r.location}{note} {r.size} bytes sha256:{r.sha256}"))
        if r.url:
            click.echo(scrub(f"  url: {r.url}"))
