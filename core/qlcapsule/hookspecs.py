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

from typing import Any, Callable, TypeVar

PROJECT = "qlcapsule"
_F = TypeVar("_F", bound=Callable[..., Any])


def _marker(function: _F | None, attribute: str, opts: dict[str, Any]) -> Any:
    """Set ``attribute`` to ``opts`` on ``function``, or return a decorator that does (as pluggy's markers)."""

    def mark(func: _F) -> _F:
        setattr(func, attribute, opts)
        return func

    return mark if function is None else mark(function)


class HookspecMarker:
    """``pluggy.HookspecMarker("qlcapsule")``, without importing pluggy.

    pluggy finds specs and implementations by an attribute
    (``qlcapsule_spec``/``qlcapsule_impl``) holding a dict of options; these
    markers set exactly what pluggy's own markers set (a test compares them),
    so a plugin module can be imported, and its hooks called, without pluggy.
    The plugin manager (``plugins.py``) imports pluggy only when a third-party
    or in-process plugin is registered. A plugin may use pluggy's markers
    instead: they write the same attribute.
    """

    project_name = PROJECT

    def __call__(
        self,
        function: _F | None = None,
        firstresult: bool = False,
        historic: bool = False,
        warn_on_impl: Warning | None = None,
        warn_on_impl_args: dict[str, Warning] | None = None,
    ) -> Any:
        if historic and firstresult:
            raise ValueError("cannot have a historic firstresult hook")
        opts = {
            "firstresult": firstresult,
            "historic": historic,
            "warn_on_impl": warn_on_impl,
            "warn_on_impl_args": warn_on_impl_args,
        }
        return _marker(function, self.project_name + "_spec", opts)


class HookimplMarker:
    """``pluggy.HookimplMarker("qlcapsule")``, without importing pluggy (see :class:`HookspecMarker`)."""

    project_name = PROJECT

    def __call__(
        self,
        function: _F | None = None,
        hookwrapper: bool = False,
        optionalhook: bool = False,
        tryfirst: bool = False,
        trylast: bool = False,
        specname: str | None = None,
        wrapper: bool = False,
    ) -> Any:
        opts = {
            "wrapper": wrapper,
            "hookwrapper": hookwrapper,
            "optionalhook": optionalhook,
            "tryfirst": tryfirst,
            "trylast": trylast,
            "specname": specname,
        }
        return _marker(function, self.project_name + "_impl", opts)


hookspec = HookspecMarker()
hookimpl = HookimplMarker()

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
