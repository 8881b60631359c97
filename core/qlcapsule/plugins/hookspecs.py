"""The registration hook specs (five component kinds, and commands), and pluggy's markers for ``qlcapsule``.

Every built-in and third-party plugin implements one or more of these in the
llm style: the hook receives ``register`` (a :class:`Register`) and calls it
once per component class it provides::

    from qlcapsule import Register, hookimpl

    @hookimpl
    def qlcapsule_register_exporters(register: Register) -> None:
        register(ZipExporter)

pluggy calls the hooks (``pm.hook.qlcapsule_register_exporters(register=...)``,
see ``manager.py``), so every pluggy feature works: ``specname=``,
``tryfirst``/``trylast``, ``wrapper=True``/``hookwrapper=True``. No registration
spec is ``firstresult`` (registration collects from every plugin; the publishing
hooks pick one publisher) and none is ``historic`` (each hook is called once, when its kind is first needed, after
every plugin that can provide it is registered). ``register`` raises
:class:`qlcapsule.PluginError` when the class is not a subclass of the right
base, leaves an abstract method unimplemented, or its ``name`` is already
registered for that kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

import pluggy

if TYPE_CHECKING:
    import click

    from .components import Component

PROJECT: Final = "qlcapsule"

#: marks a hook specification (used here only)
hookspec: Final = pluggy.HookspecMarker(PROJECT)
#: marks a plugin's hook implementation: ``@hookimpl``, ``@hookimpl(tryfirst=True)``, ``@hookimpl(specname=...)``
hookimpl: Final = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """What every registration hook receives: call it once per component class.

    Raises :class:`qlcapsule.PluginError` (which fails the plugin, by name, and
    no other) for a class of the wrong kind, an abstract one, or a taken name.
    """

    def __call__(self, component: type[Component], /) -> None: ...


# -- producing files ----------------------------------------------------------


@hookspec
def qlcapsule_register_generators(register: Register) -> None:
    """Register :class:`qlcapsule.Generator` subclasses.

    Called once, before ``qlcapsule new`` or ``qlcapsule update`` pick a
    generator by name. Return nothing.
    """


# -- checking files -----------------------------------------------------------


@hookspec
def qlcapsule_register_validators(register: Register) -> None:
    """Register :class:`qlcapsule.Validator` subclasses.

    Called once; ``qlcapsule validate`` runs every registered validator whose
    rules are not switched off in capsule.yaml. Return nothing.
    """


# -- proving who sealed it ----------------------------------------------------


@hookspec
def qlcapsule_register_signers(register: Register) -> None:
    """Register :class:`qlcapsule.Signer` subclasses (one per key algorithm).

    Called once; ``sign``, ``verify`` and ``keygen`` pick a signer by its
    ``name``. Return nothing.
    """


# -- leaving the building -----------------------------------------------------


@hookspec
def qlcapsule_register_exporters(register: Register) -> None:
    """Register :class:`qlcapsule.Exporter` subclasses.

    Called once; ``qlcapsule export --format F`` picks the exporter whose
    ``name`` (or one of its ``formats``) is ``F``. Return nothing.
    """


@hookspec
def qlcapsule_register_deliverers(register: Register) -> None:
    """Register :class:`qlcapsule.Deliverer` subclasses (one per provider).

    Called once; a delivery target's ``provider`` names the deliverer. Return
    nothing.
    """


# -- adding commands ----------------------------------------------------------


@hookspec
def qlcapsule_register_commands(cli: click.Group) -> None:
    """Add click commands to the ``qlcapsule`` group (llm's ``register_commands``)::

        @hookimpl
        def qlcapsule_register_commands(cli):
            @cli.command()
            def hello() -> None: ...

    Called once, when the CLI meets a command name no built-in area provides
    (or lists every command for ``--help``), after the built-in commands are
    added: a plugin cannot replace one (a name a built-in already has fails the
    plugin). Import heavy dependencies inside the commands, not here: the hook
    runs for ``--help``. Return nothing.
    """


# -- publishing to a catalog ------------------------------------------------------


@hookspec(firstresult=True)
def qlcapsule_publish(
    url: str, token: str, report: dict[str, Any], timeout: float | None
) -> list[dict[str, Any]] | None:
    """Publish a ship report (``ShipResult.to_dict()``: what ``ship --json`` puts in ``result``) to the
    catalog at ``url`` with ``token``; return the catalog's answer per published capsule.

    ``ship --publish URL`` calls it three times: with no capsules before anything is
    written (check the URL and token, send nothing); with each capsule once it is
    sealed, signed and committed, before its deliveries (no artifacts or receipts
    yet: publishing the same version again must merge, not fail); and with the whole
    report after shipping. ``timeout``: seconds the call may take (the live call's
    bound; ``None``: the publisher's own, retries included). The first plugin that
    returns something answers (``firstresult``); the built-in catalog client
    (``qlcapsule_server``, standard library only) handles ``http(s)://`` URLs.
    Raise a :class:`qlcapsule.QlcapsuleError` for a refusal.
    """


@hookspec(firstresult=True)
def qlcapsule_publish_status(
    url: str, token: str, status: dict[str, Any], timeout: float | None
) -> dict[str, Any] | None:
    """Send one delivery step to the catalog at ``url`` as it happens; return the catalog's answer.

    ``status`` is ``{"capsule", "version", "target", "provider", "status", "url", "detail", "bytes"}``,
    ``status`` one of ``planned``, ``uploading``, ``verifying``, ``delivered``, ``failed``
    (:mod:`qlcapsule.steps.delivery`). ``ship --publish URL`` calls it during its deliveries, after
    publishing the capsule (``qlcapsule_publish``), with ``timeout`` seconds to answer; a failure
    is reported once as a warning and the deliveries go on. First plugin that returns something
    answers; raise a :class:`qlcapsule.QlcapsuleError` for a refusal.
    """
