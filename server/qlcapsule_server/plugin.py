"""The plugin: ``qlcapsule serve`` and ``qlcapsule catalog`` through ``qlcapsule_register_commands``.

Only click is imported here: the hook runs whenever the CLI lists its commands. FastAPI, SQLAlchemy and the
rest are imported inside the commands, so ``qlcapsule --help`` works without the ``[server]`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qlcapsule import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def qlcapsule_register_commands(cli: click.Group) -> None:
    from .commands import catalog, serve  # noqa: PLC0415 -- start-up: the command definitions load only when qlcapsule lists its commands

    cli.add_command(serve)
    cli.add_command(catalog)


@hookimpl
def qlcapsule_publish(url: str, token: str, report: dict[str, Any], timeout: float | None) -> list[dict[str, Any]]:
    """``ship --publish URL``: the catalog client (standard library only, no [server] extra needed)."""
    from .client import publish  # noqa: PLC0415 -- start-up: the client loads only when ship publishes

    return publish(url, token, report, timeout=timeout)


@hookimpl
def qlcapsule_publish_status(url: str, token: str, status: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """``ship --publish URL``: each delivery step as it happens, through the same client."""
    from .client import publish_status  # noqa: PLC0415 -- start-up: the client loads only when ship publishes

    return publish_status(url, token, status, timeout=timeout)
