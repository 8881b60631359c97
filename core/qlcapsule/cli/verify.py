"""verify."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import capsule_dir, emit, json_option, main


@main.command()
@capsule_dir
@json_option
def verify(directory: str, as_json: bool) -> None:
    """Check DIRECTORY against its lock (and signatures).

    Exit status 1 naming the first difference when anything changed.
    """
    from ..pipeline import verify_capsule

    report = verify_capsule(Path(directory))
    emit(as_json, report, f"ok {report['capsule']}@{report['version']} sha256:{report['digest']} ({report['files']} files)")
