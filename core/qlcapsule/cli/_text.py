"""The one-line results of ``seal``, ``verify``, ``sign`` and ``commit``, and the signature summary that
``verify``, ``checkout``, ``import`` and ``hook verify`` share."""

from __future__ import annotations

from typing import Any, Sequence


def signature_text(sig: dict[str, Any]) -> str:
    status = sig.get("status")
    if status == "verified":
        keys = ", ".join(f"{k['algorithm']} {k['keyid'][:16]}" for k in sig["keys"])
        tail = f", expires {sig['expires']}" if sig.get("expires") else ""
        return f"signed by {keys} ({len(sig['keys'])} of {sig['threshold']} required{tail})"
    if status == "unchecked":
        return f"capsule.sig present ({sig['signatures']} signature(s)) but NOT checked: {sig['reason']}"
    return "unsigned"


def verify_text(report: dict[str, Any]) -> str:
    sig = report.get("signature") or {"status": "unsigned"}
    return (
        f"ok {report['capsule']}@{report['version']} sha256:{report['digest']} ({report['files']} files); "
        + signature_text(sig)
    )


def unlocked_warnings(report: dict[str, Any]) -> list[str]:
    """stderr lines for what ``verify`` found outside the lock (``report["unlocked"]``)."""
    from ..format.tree import describe_unlocked  # noqa: PLC0415 -- start-up: the tree walk loads only when verify found unlocked files, not for --help

    return [f"warning: {line}" for line in describe_unlocked(report.get("unlocked") or {})]


def seal_data(result: Any) -> dict[str, Any]:
    return {
        "capsule": result.lock.name,
        "version": result.lock.version,
        "digest": result.digest,
        "files": len(result.lock.files),
        "written": result.written,
    }


def seal_text(result: Any) -> str:
    verb = "sealed" if result.written else "unchanged"
    return f"{verb} {result.lock.name}@{result.lock.version} {len(result.lock.files)} files sha256:{result.digest}"


def sign_text(result: Any) -> str:
    n = len(result.keyids)
    return (
        f"signed {result.capsule}@{result.version} sha256:{result.digest} with {result.algorithm} key "
        f"{result.keyid[:16]} ({n} signature{'s' if n != 1 else ''} in {result.path.name}"
        + (f", expires {result.expires}" if result.expires else "")
        + ")"
    )


def commit_text(result: Any) -> str:
    verb = "committed" if result.created else "unchanged"
    return f"{verb} {result.capsule}@{result.version} {result.branch} {result.commit[:12]} sha256:{result.digest}"


def print_table(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, styled: bool, title: str | None = None
) -> None:
    """``rows`` under ``header``: a rich table when ``styled`` (a terminal), else plain aligned columns.

    Plain columns are never cut or wrapped (scripts and pipes read whole cells); the last column is not padded.
    """
    import click  # noqa: PLC0415 -- start-up: click loads only in the commands that use it, not for --help

    if styled:
        from rich.console import Console  # noqa: PLC0415 -- start-up: rich loads only in the commands that use it, not for --help
        from rich.table import Table  # noqa: PLC0415 -- start-up: rich loads only in the commands that use it, not for --help
        from rich.text import Text  # noqa: PLC0415 -- start-up: rich loads only in the commands that use it, not for --help

        table = Table(*header, title=title)
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))  # Text: "qlcapsule[s3]" is not markup
        Console().print(table)
        return
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    for row in [header, *rows]:
        cells = [v.ljust(w) for v, w in zip(row[:-1], widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())
