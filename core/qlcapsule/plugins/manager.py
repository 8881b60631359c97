"""The plugin manager: one pluggy ``PluginManager``, entry-point loading, operator controls.

Every plugin, built-in or not, is an entry point in the group ``qlcapsule``
(found with ``importlib.metadata.entry_points(group="qlcapsule")`` on every
run) pointing at a module (or object) with hook implementations. Each is
registered in the one pluggy manager, and every hook is called through it:
``pm.hook.qlcapsule_register_exporters(register=...)``. So pluggy checks each
implementation against its spec (a misspelled hook fails its plugin), and
``specname=``, ``tryfirst``/``trylast`` and wrappers work for every plugin.

One plugin at a time: a plugin that fails to import, to register, or whose
hook raises is recorded (name, distribution, version, error), unregistered,
and the rest keep working; the hook is then called again without it.

Order. pluggy calls ``tryfirst`` implementations first, ``trylast`` ones last
and the rest with the plugin registered last called first. The built-ins of a
kind are registered after the third-party plugins, so they are called first.
The first registration of a name wins; a later registration of the same name
(for the same kind) fails the plugin making it. A plugin takes a built-in's
name only by asking for ``tryfirst`` (and then the built-in fails, by name).

Operator controls (environment):

- ``QLCAPSULE_DISABLE_PLUGIN_AUTOLOAD=1`` load only the built-in plugins
  (those shipped in the ``qlcapsule`` distribution);
- ``QLCAPSULE_DISABLED_PLUGINS=a,b`` never load these (entry-point or distribution names);
- ``QLCAPSULE_LOAD_PLUGINS=a,b`` load only these third-party plugins (built-ins still load).

Built-in entry points are named ``<kind>s.<name>`` and provide only that kind:
they are imported when their kind is first asked for (``validate`` never
imports the cloud deliverers), and each kind's hook is called once, when it is
first needed, after every plugin that can provide it is registered (again if a
plugin providing it is registered later). The registry is created on first use
and cached; ``reset()`` drops it (tests).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import pluggy

from ..errors import InputError, PluginError
from . import hookspecs
from .components import Component, Deliverer, Exporter, Generator, Signer, Validator

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint
    from types import FrameType, TracebackType

    from pluggy import HookImpl

GROUP = "qlcapsule"
BUILTIN_DIST = "qlcapsule"
ENV_NO_AUTOLOAD = "QLCAPSULE_DISABLE_PLUGIN_AUTOLOAD"
ENV_BLOCK = "QLCAPSULE_DISABLED_PLUGINS"
ENV_ALLOW = "QLCAPSULE_LOAD_PLUGINS"

KINDS: dict[str, type[Component]] = {
    "generator": Generator,
    "validator": Validator,
    "signer": Signer,
    "exporter": Exporter,
    "deliverer": Deliverer,
}
HOOKS = {
    "generator": "qlcapsule_register_generators",
    "validator": "qlcapsule_register_validators",
    "signer": "qlcapsule_register_signers",
    "exporter": "qlcapsule_register_exporters",
    "deliverer": "qlcapsule_register_deliverers",
}
#: the pending key of third-party plugins, which may provide any kind
ANY = "*"


@dataclass
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    status: str  # pending | loaded | failed | blocked | skipped
    error: str | None = None
    components: list[tuple[str, str]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        """``built-in``, the distribution that installed the plugin, or ``in-process`` (``register_plugin``)."""
        if _builtin(self.distribution):
            return "built-in"
        return self.distribution or "in-process"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "origin": self.origin,
            "status": self.status,
            "error": self.error,
            "components": [{"kind": k, "name": n} for k, n in self.components],
        }


def component_data(cls: type[Component]) -> dict[str, Any]:
    """What ``qlcapsule plugins`` says about one component: formats (exporters), description and availability."""
    data: dict[str, Any] = {"kind": cls.kind, "name": cls.name}
    if issubclass(cls, Exporter):
        data["formats"] = list(cls.formats)
    missing = cls.missing_modules()
    data.update(
        description=cls.summary(),
        available=not missing,
        missing=missing,
        install=cls.install_hint() if missing else None,
        reason=cls.unavailable() if missing else None,
    )
    return data


class Registry:
    """The pluggy manager, the components registered through it, and what each plugin contributed."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.components: dict[str, dict[str, type[Component]]] = {k: {} for k in KINDS}
        self.owners: dict[tuple[str, str], str] = {}
        self.plugins: dict[str, PluginInfo] = {}
        #: entry points not imported yet, by the kind they provide (``ANY``: any kind)
        self.pending: dict[str, list[EntryPoint]] = {}
        #: kind -> the plugins whose hook implementations its last hook call ran
        self._collected: dict[str, frozenset[str]] = {}
        self._load_lock = threading.RLock()

    # -- loading -------------------------------------------------------------
    def add(self, name: str, plugin: object) -> None:
        """Register one plugin object; a plugin pluggy refuses is marked failed."""
        info = self.plugins[name]
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001  (name the plugin, keep the rest)
            info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
            return
        info.status = "loaded"

    def _load(self, ep: EntryPoint) -> None:
        try:
            plugin = ep.load()
        except Exception as exc:  # report the plugin by name and version; keep the rest
            self.plugins[ep.name].status, self.plugins[ep.name].error = "failed", f"{type(exc).__name__}: {exc}"
            return
        self.add(ep.name, plugin)

    def _fail(self, name: str, exc: BaseException) -> None:
        """Mark ``name`` failed, drop what it registered and unregister it from the manager."""
        info = self.plugins.get(name)
        if info is not None:
            info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
            for kind, cname in info.components:
                self.components[kind].pop(cname, None)
                self.owners.pop((kind, cname), None)
            info.components.clear()
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)

    def ensure(self, kind: str | None = None) -> None:
        """Register the pending plugins that can provide ``kind`` (all for None) and call its hook."""
        with self._load_lock:
            kinds = list(KINDS) if kind is None else [kind]
            for key in (ANY, *kinds):  # built-ins last: pluggy calls them first
                for ep in sorted(self.pending.pop(key, []), key=lambda e: e.name):
                    self._load(ep)
            self._check_pending()
            for k in kinds:
                self._collect(k)

    def _check_pending(self) -> None:
        """A hook implementation that matches no spec (a typo) fails its plugin, not the run."""
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                self._fail(self.pm.get_name(exc.plugin) or repr(exc.plugin), exc)

    def _collect(self, kind: str) -> None:
        """``pm.hook.qlcapsule_register_<kind>s(register=...)``, once per set of implementing plugins.

        A hook that raises fails the plugin whose implementation raised; the
        hook is then called again, afresh, without it.
        """
        hook = getattr(self.pm.hook, HOOKS[kind])
        while True:
            impls = hook.get_hookimpls()
            plugins = frozenset(i.plugin_name for i in impls)
            if self._collected.get(kind) == plugins:
                return
            for cname in list(self.components[kind]):
                owner = self.owners.pop((kind, cname), None)
                if owner in self.plugins:
                    self.plugins[owner].components.remove((kind, cname))
            self.components[kind].clear()
            register = _Register(self, kind, impls)
            try:
                hook(register=register)
            except Exception as exc:  # a broken plugin must not take the others down
                culprit = _blame(register.codes, exc.__traceback__)
                if culprit is None:
                    raise
                self._fail(culprit, exc)
                continue
            self._collected[kind] = plugins

    def add_commands(self, cli: Any) -> None:
        """``pm.hook.qlcapsule_register_commands(cli=cli)`` after registering the plugins that may add commands.

        Commands come only from plugins that are not a built-in component kind
        (third-party ones, and built-ins named ``commands.*``). A plugin whose hook
        raises, or that takes the name of a command ``cli`` already has, fails by
        name, its commands are dropped, and the hook is called again without it.
        """
        with self._load_lock:
            for ep in sorted(self.pending.pop(ANY, []), key=lambda e: e.name):
                self._load(ep)
            self._check_pending()
            hook = self.pm.hook.qlcapsule_register_commands
            builtin = dict(cli.commands)
            while True:
                impls = hook.get_hookimpls()
                codes: dict[Any, list[HookImpl]] = {}
                for impl in impls:
                    codes.setdefault(_code(impl.function), []).append(impl)
                add = cli.add_command

                def checked(cmd: Any, name: str | None = None, add: Any = add) -> None:
                    name = name or cmd.name
                    if name in builtin:
                        raise PluginError(f"command {name!r} is a built-in qlcapsule command")
                    add(cmd, name)

                cli.add_command = checked  # click's @cli.command() and cli.add_command() both come here
                try:
                    hook(cli=cli)
                    return
                except Exception as exc:  # a broken plugin must not take the CLI down
                    culprit = _blame(codes, exc.__traceback__)
                    if culprit is None:
                        raise
                    for name in [n for n in cli.commands if n not in builtin]:
                        del cli.commands[name]
                    self._fail(culprit, exc)
                finally:
                    del cli.add_command

    def _load_any(self) -> None:
        """Register the plugins not tied to a component kind (the publishers, third-party plugins)."""
        with self._load_lock:
            for ep in sorted(self.pending.pop(ANY, []), key=lambda e: e.name):
                self._load(ep)
            self._check_pending()

    def publish(
        self, url: str, token: str, report: dict[str, Any], *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """``pm.hook.qlcapsule_publish``: the first plugin that publishes to ``url`` answers."""
        self._load_any()
        answer = self.pm.hook.qlcapsule_publish(url=url, token=token, report=report, timeout=timeout)
        if answer is None:
            raise InputError(f"--publish {url}: no installed plugin publishes to a catalog (qlcapsule_publish)")
        return list(answer)

    def publish_status(self, url: str, token: str, status: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """``pm.hook.qlcapsule_publish_status``: the first plugin that sends delivery steps to ``url`` answers."""
        self._load_any()
        answer = self.pm.hook.qlcapsule_publish_status(url=url, token=token, status=status, timeout=timeout)
        if answer is None:
            raise InputError(
                f"--publish {url}: no installed plugin sends delivery status to a catalog (qlcapsule_publish_status)"
            )
        return dict(answer)

    # -- registration ------------------------------------------------------
    def _register(self, plugin: str, cls: Any, kind: str) -> None:
        base = KINDS[kind]
        if not isinstance(cls, type) or not issubclass(cls, base):
            raise PluginError(f"plugin {plugin!r}: {cls!r} is not a qlcapsule.{base.__name__} subclass")
        name = getattr(cls, "name", "")
        if not name:
            raise PluginError(f"plugin {plugin!r}: {cls.__name__} has no name")
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise PluginError(
                f"plugin {plugin!r}: {cls.__name__} does not implement {', '.join(missing)}"
                f" (abstract in qlcapsule.{base.__name__})"
            )
        table = self.components[kind]
        if name in table and table[name] is not cls:
            owner = self.owners[(kind, name)]
            raise PluginError(f"plugin {plugin!r}: {kind} {name!r} is already registered by plugin {owner!r}")
        table[name] = cls
        self.owners[(kind, name)] = plugin
        self.plugins[plugin].components.append((kind, name))

    # -- lookup -------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        self.ensure(kind)
        return sorted(self.components[kind])

    def get(self, kind: str, name: str, *, runnable: bool = True) -> type[Component]:
        """The component ``name`` of ``kind``.

        With ``runnable`` (the default) a component whose ``requires`` are not
        installed is refused here, at lookup, with the ``pip install`` that
        fixes it (:class:`InputError`, exit 2): a caller that looks up what it
        will need before acting learns it before anything is written.
        ``runnable=False`` is for describing a component (its options).
        """
        self.ensure(kind)
        table = self.components[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            hint = self._failed_hint()
            raise PluginError(f"unknown {kind} {name!r} (available: {known}){hint}")
        if runnable:
            table[name].require()
        return table[name]

    def _failed_hint(self) -> str:
        self.ensure()
        failed = [p.name for p in self.plugins.values() if p.status == "failed"]
        return f"; plugins that failed to load: {', '.join(failed)} (see 'qlcapsule plugins')" if failed else ""

    def all(self, kind: str) -> list[type[Component]]:
        return [self.components[kind][n] for n in self.names(kind)]

    def infos(self) -> list[PluginInfo]:
        """Every plugin with its load status (registers all pending plugins)."""
        self.ensure()
        return sorted(self.plugins.values(), key=lambda p: p.name)

    def exporter_for(self, fmt: str, *, runnable: bool = True) -> type[Exporter]:
        """The exporter writing ``fmt`` (its name or one of its ``formats``); ``runnable`` as for :meth:`get`."""
        exporters = [c for c in self.all("exporter") if issubclass(c, Exporter)]
        for cls in exporters:
            if fmt == cls.name or fmt in cls.formats:
                if runnable:
                    cls.require()
                return cls
        known = sorted({f for c in exporters for f in (c.name, *c.formats)})
        raise PluginError(
            f"unknown export format {fmt!r} (available: {', '.join(known) or 'none'}){self._failed_hint()}"
        )


class _Register:
    """The ``register`` a hook receives (a :class:`qlcapsule.Register`): records which plugin registered what.

    The plugin calling is the one whose hook implementation is on the stack:
    pluggy passes the same keyword arguments to every implementation, and the
    ``HookImpl`` objects say which function belongs to which plugin.
    """

    def __init__(self, registry: Registry, kind: str, impls: list[HookImpl]) -> None:
        self.registry, self.kind = registry, kind
        self.codes: dict[Any, list[HookImpl]] = {}
        for impl in impls:
            self.codes.setdefault(_code(impl.function), []).append(impl)

    def __call__(self, component: type[Component], /) -> None:
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            plugin = _plugin_of(self.codes, frame)
            if plugin is not None:
                self.registry._register(plugin, component, self.kind)
                return
            frame = frame.f_back
        raise PluginError(
            f"register({getattr(component, '__name__', component)!r}) was called outside a registration hook"
        )


def _code(function: Callable[..., object]) -> Any:
    """The code object that runs when pluggy calls ``function`` (a function, a method or a callable object)."""
    code = getattr(function, "__code__", None)
    return code if code is not None else getattr(type(function).__call__, "__code__", None)


def _plugin_of(codes: dict[Any, list[HookImpl]], frame: FrameType) -> str | None:
    impls = codes.get(frame.f_code)
    if not impls:
        return None
    if len(impls) > 1:  # one function shared by several plugins (instances of one class): by ``self``
        this = frame.f_locals.get("self")
        impls = [i for i in impls if getattr(i.function, "__self__", None) is this] or impls
    return impls[0].plugin_name


def _blame(codes: dict[Any, list[HookImpl]], tb: TracebackType | None) -> str | None:
    """The plugin whose hook implementation raised: the innermost one in the traceback."""
    culprit = None
    while tb is not None:
        culprit = _plugin_of(codes, tb.tb_frame) or culprit
        tb = tb.tb_next
    return culprit


def _split_env(name: str) -> set[str]:
    return {p.strip() for p in os.environ.get(name, "").split(",") if p.strip()}


def _builtin(dist: str | None) -> bool:
    return (dist or "").lower() == BUILTIN_DIST


def _builtin_kind(name: str) -> str | None:
    """The kind a built-in entry point provides, from its name (``validators.python`` -> validator)."""
    prefix = name.split(".", 1)[0]
    kind = prefix[:-1] if prefix.endswith("s") else prefix
    return kind if kind in KINDS and "." in name else None


def discover(group: str = GROUP) -> list[tuple[EntryPoint, str | None, str | None]]:
    """Every entry point of ``group`` with its distribution's name and version (one metadata read each)."""
    from importlib.metadata import entry_points  # noqa: PLC0415 -- start-up: importlib.metadata (email, zipfile, csv) loads only when plugins are discovered

    found: list[tuple[EntryPoint, str | None, str | None]] = []
    metadata: dict[int, tuple[str | None, str | None]] = {}
    for ep in entry_points(group=group):
        dist = ep.dist
        if dist is None:
            found.append((ep, None, None))
            continue
        if id(dist) not in metadata:  # the entry points of one distribution share its object
            meta = dist.metadata
            metadata[id(dist)] = (meta["Name"], meta["Version"])
        found.append((ep, *metadata[id(dist)]))
    return found


def build_manager(extra: list[tuple[str, object]] | None = None) -> Registry:
    """Find every entry-point plugin (subject to the operator controls) and register ``extra`` ones.

    Entry points are registered when a kind they can provide is first asked
    for (``Registry.ensure``); ``extra`` (in-process) plugins at once.
    """
    reg = Registry()
    blocked = _split_env(ENV_BLOCK)
    allowed = _split_env(ENV_ALLOW)
    no_autoload = os.environ.get(ENV_NO_AUTOLOAD, "").strip().lower() not in ("", "0", "false", "no")
    for ep, dist, version in sorted(discover(GROUP), key=lambda e: e[0].name):
        if ep.name in reg.plugins:
            continue
        info = PluginInfo(ep.name, dist, version, "pending")
        reg.plugins[ep.name] = info
        if ep.name in blocked or (dist and dist in blocked):
            info.status, info.error = "blocked", f"blocked by {ENV_BLOCK}"
            continue
        if not _builtin(dist):
            if no_autoload:
                info.status, info.error = "skipped", f"autoload disabled by {ENV_NO_AUTOLOAD}"
                continue
            if allowed and ep.name not in allowed and (dist or "") not in allowed:
                info.status, info.error = "skipped", f"not listed in {ENV_ALLOW}"
                continue
        kind = _builtin_kind(ep.name) if _builtin(dist) else None
        reg.pending.setdefault(kind or ANY, []).append(ep)
    for name, plugin in extra or []:
        reg.plugins[name] = PluginInfo(name, None, None, "pending")
        reg.add(name, plugin)
    return reg


_lock = threading.Lock()
_registry: Registry | None = None
_extra: list[tuple[str, object]] = []


def registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = build_manager(list(_extra))
        return _registry


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Add an in-process plugin (tests, embedding) and rebuild the registry on next use."""
    global _registry
    with _lock:
        _extra.append((name or str(getattr(plugin, "__name__", repr(plugin))), plugin))
        _registry = None


def unregister_plugin(name: str) -> None:
    global _registry
    with _lock:
        _extra[:] = [(n, p) for n, p in _extra if n != name]
        _registry = None


def reset() -> None:
    """Forget the cached registry and in-process plugins (for tests)."""
    global _registry
    with _lock:
        _registry = None
        _extra.clear()


def component(kind: str, name: str) -> type[Component]:
    return registry().get(kind, name)


def instantiate(kind: str, name: str, options: dict[str, Any] | None = None, *, where: str = "") -> Component:
    """Look up a component and validate its options before any work starts."""
    return component(kind, name).from_options(options, where=where or f"{kind} {name!r} options")


def publish_report(url: str, token: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Publish a ship report (``ShipResult.to_dict()``) to the catalog at ``url`` through the
    ``qlcapsule_publish`` hook; the catalog's answer per published capsule.

    ``ship --publish`` and the GitHub Action call it. A report with no capsules checks the URL, the token and
    that a plugin publishes, without a request: call it so before shipping. Raises what the publisher raises
    (CredentialsError for a refused token, VerificationError when the catalog refuses a version, RemoteError
    when it cannot be reached), and InputError when no installed plugin publishes.
    """
    return registry().publish(url, token, report)
