"""The five registration hook specs.

Every built-in and third-party plugin implements one or more of these in the
llm style: the hook receives a ``register`` callable and calls it once per
component class it provides::

    from qlcapsule import hookimpl

    @hookimpl
    def qlcapsule_register_exporters(register):
        register(ZipExporter)

All hooks are called on every plugin (none is ``firstresult``): registration
collects from everyone. ``register`` raises :class:`qlcapsule.PluginError` when
the class is not a subclass of the right base or its ``name`` clashes with a
component already registered.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("qlcapsule")
hookimpl = pluggy.HookimplMarker("qlcapsule")

Register = Callable[[type], None]


# -- producing files ----------------------------------------------------------


@hookspec
def qlcapsule_register_generators(register: Register) -> None:
    """Register :class:`qlcapsule.Generator` subclasses.

    Called once when the plugin manager loads, before ``qlcapsule new`` or
    ``qlcapsule update`` pick a generator by name. Return nothing.
    """


# -- checking files -----------------------------------------------------------


@hookspec
def qlcapsule_register_validators(register: Register) -> None:
    """Register :class:`qlcapsule.Validator` subclasses.

    Called once when the plugin manager loads; ``qlcapsule validate`` runs every
    registered validator whose rules are not switched off in capsule.yaml.
    Return nothing.
    """


# -- proving who sealed it ----------------------------------------------------


@hookspec
def qlcapsule_register_signers(register: Register) -> None:
    """Register :class:`qlcapsule.Signer` subclasses (one per key algorithm).

    Called once when the plugin manager loads; ``sign``, ``verify`` and
    ``keygen`` pick a signer by its ``name``. Return nothing.
    """


# -- leaving the building -----------------------------------------------------


@hookspec
def qlcapsule_register_exporters(register: Register) -> None:
    """Register :class:`qlcapsule.Exporter` subclasses.

    Called once when the plugin manager loads; ``qlcapsule export --format F``
    picks the exporter whose ``name`` (or one of its ``formats``) is ``F``.
    Return nothing.
    """


@hookspec
def qlcapsule_register_deliverers(register: Register) -> None:
    """Register :class:`qlcapsule.Deliverer` subclasses (one per provider).

    Called once when the plugin manager loads; a delivery target's
    ``provider`` in capsule.yaml names the deliverer. Return nothing.
    """
