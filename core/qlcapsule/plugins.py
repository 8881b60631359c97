"""The plugin manager: entry-point loading, operator controls, component registry.

Every plugin, built-in or not, is an entry point in the group ``qlcapsule``
pointing at a module (or object) with hook implementations. Plugins are loaded
one at a time; one that fails to import is recorded (name, distribution,
version, error) and the rest keep working.

Operator controls (environment):

- ``QLCAPSULE_DISABLE_PLUGIN_AUTOLOAD=1`` load only the built-in plugins
  (those shipped in the ``qlcapsule`` distribution);
- ``QLCAPSULE_DISABLED_PLUGINS=a,b`` never load these (entry-point or distribution names);
- ``QLCAPSULE_LOAD_PLUGINS=a,b`` load only these third-party plugins (built-ins still load).

The registry is created lazily on first use and cached; ``reset()`` drops it (tests).

Hooks are collected by calling each plugin's registration hooks directly
(none is ``firstresult``: every plugin registers its own components). The
pluggy ``PluginManager`` — which checks every hook implementation against its
spec, so a typo fails its plugin — is built, with every plugin loaded so far
registered in it, when the first third-party or in-process plugin loads. The
built-in plugins alone never import pluggy (a few ms of every ``sign`` and
``verify --key``); a test registers all of them in a real manager and runs its
checks.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from .caches import PluginEntry, discover
from .components import Component, Deliverer, Exporter, Generator, Signer, Validator
from .errors import PluginError

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

C = TypeVar("C", bound=Component)

if TYPE_CHECKING:
    import pluggy


@dataclass
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    status: str  # loaded | failed | blocked | skipped
    error: str | None = None
    components: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "components": [{"kind": k, "name": n} for k, n in self.components],
        }


class Registry:
    """Components by kind and name, and what each plugin contributed."""

    def __init__(self) -> None:
        self._pm: pluggy.PluginManager | None = None
        #: every plugin object loaded, by name (registered in ``pm`` once it exists)
        self.loaded: dict[str, object] = {}
        self.components: dict[str, dict[str, type[Component]]] = {k: {} for k in KINDS}
        self.owners: dict[tuple[str, str], str] = {}
        self.plugins: dict[str, PluginInfo] = {}
        #: entry points not imported yet, by the kind they provide ("*": any kind)
        self.pending: dict[str, list[PluginEntry]] = {}
        self._load_lock = threading.RLock()

    # -- loading -------------------------------------------------------------
    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy manager, built on first use with every plugin loaded so far registered."""
        if self._pm is None:
            import pluggy

            from . import hookspecs

            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            for name, plugin in self.loaded.items():
                try:
                    pm.register(plugin, name=name)
                except Exception as exc:  # noqa: BLE001  (a built-in whose hooks do not match: fail it, keep the rest)
                    self._fail(name, exc)
            self._pm = pm
        return self._pm

    def _fail(self, name: str, exc: BaseException) -> None:
        info = self.plugins.get(name)
        if info is not None:
            info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
            for kind, cname in info.components:
                self.components[kind].pop(cname, None)
            info.components.clear()

    def _load(self, ep: PluginEntry) -> None:
        info = self.plugins[ep.name]
        try:
            plugin = ep.load()
            if self._pm is not None or not _builtin(ep.distribution):
                self.pm.register(plugin, name=ep.name)
        except Exception as exc:  # report the plugin by name and version; keep the rest
            info.status = "failed"
            info.error = f"{type(exc).__name__}: {exc}"
            return
        info.status = "loaded"
        self.loaded[ep.name] = plugin
        self.collect(ep.name, plugin)

    def ensure(self, kind: str | None = None) -> None:
        """Import the pending plugins that can provide ``kind`` (all of them for None)."""
        with self._load_lock:
            keys = list(self.pending) if kind is None else [kind, "*"]
            for key in keys:
                for ep in self.pending.pop(key, []):
                    self._load(ep)
            if not self.pending:
                self._check_pending()

    def _check_pending(self) -> None:
        """A hook implementation that matches no spec (a typo) fails its plugin, not the run."""
        if self._pm is None:
            return  # built-ins only: checked by the test suite
        import pluggy

        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self._pm.get_name(exc.plugin) or repr(exc.plugin)
            self._fail(name, exc)
            self._pm.unregister(exc.plugin)
            self._check_pending()

    # -- registration ------------------------------------------------------
    def _register(self, plugin: str, cls: Any, kind: str) -> None:
        base = KINDS[kind]
        if not isinstance(cls, type) or not issubclass(cls, base):
            raise PluginError(f"plugin {plugin!r}: {cls!r} is not a qlcapsule.{base.__name__} subclass")
        name = getattr(cls, "name", "")
        if not name:
            raise PluginError(f"plugin {plugin!r}: {cls.__name__} has no name")
        table = self.components[kind]
        if name in table and table[name] is not cls:
            owner = self.owners[(kind, name)]
            raise PluginError(f"plugin {plugin!r}: {kind} {name!r} is already registered by plugin {owner!r}")
        table[name] = cls
        self.owners[(kind, name)] = plugin
        self.plugins[plugin].components.append((kind, name))

    def collect(self, plugin_name: str, plugin: object) -> None:
        """Call one plugin's registration hooks; a failure marks only that plugin."""
        info = self.plugins[plugin_name]
        try:
            for kind, hook_name in HOOKS.items():
                impl = getattr(plugin, hook_name, None)
                if impl is None:
                    continue
                impl(register=lambda cls, _k=kind: self._register(plugin_name, cls, _k))
        except Exception as exc:  # a broken plugin must not take the others down
            info.status = "failed"
            info.error = f"{type(exc).__name__}: {exc}"
            for kind, name in info.components:
                self.components[kind].pop(name, None)
            info.components.clear()

    # -- lookup -------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        self.ensure(kind)
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> type[Component]:
        self.ensure(kind)
        table = self.components[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            hint = self._failed_hint()
            raise PluginError(f"unknown {kind} {name!r} (available: {known}){hint}")
        return table[name]

    def _failed_hint(self) -> str:
        self.ensure()
        failed = [p.name for p in self.plugins.values() if p.status == "failed"]
        return f"; plugins that failed to load: {', '.join(failed)} (see 'qlcapsule plugins')" if failed else ""

    def all(self, kind: str) -> list[type[Component]]:
        return [self.components[kind][n] for n in self.names(kind)]

    def infos(self) -> list[PluginInfo]:
        """Every plugin with its load status (imports all pending plugins)."""
        self.ensure()
        return sorted(self.plugins.values(), key=lambda p: p.name)

    def exporter_for(self, fmt: str) -> type[Exporter]:
        self.ensure("exporter")
        for cls in self.all("exporter"):
            if fmt == cls.name or fmt in cls.formats:  # type: ignore[attr-defined]
                return cls  # type: ignore[return-value]
        known = sorted({f for c in self.all("exporter") for f in (c.name, *c.formats)})  # type: ignore[attr-defined]
        raise PluginError(f"unknown export format {fmt!r} (available: {', '.join(known) or 'none'}){self._failed_hint()}")


def _split_env(name: str) -> set[str]:
    return {p.strip() for p in os.environ.get(name, "").split(",") if p.strip()}


def _builtin(dist: str | None) -> bool:
    return (dist or "").lower() == BUILTIN_DIST


def _builtin_kind(name: str) -> str | None:
    """The kind a built-in entry point provides, from its name (``validators.python`` -> validator)."""
    prefix = name.split(".", 1)[0]
    kind = prefix[:-1] if prefix.endswith("s") else prefix
    return kind if kind in KINDS and "." in name else None


def build_manager(extra: list[tuple[str, object]] | None = None) -> Registry:
    """Find every entry-point plugin (subject to the operator controls) and register ``extra`` ones.

    Built-in entry points are named ``<kind>s.<name>`` and provide only that
    kind, so they are imported when their kind is first asked for (``validate``
    never imports the cloud deliverers). Third-party plugins may provide any
    kind: they are all imported on the first lookup of any kind.
    """
    reg = Registry()
    blocked = _split_env(ENV_BLOCK)
    allowed = _split_env(ENV_ALLOW)
    no_autoload = os.environ.get(ENV_NO_AUTOLOAD, "").strip().lower() not in ("", "0", "false", "no")
    eps = sorted(discover(GROUP), key=lambda e: e.name)  # cached between runs: see caches.py
    seen: set[str] = set()
    for ep in eps:
        if ep.name in seen:
            continue
        seen.add(ep.name)
        dist, version = ep.distribution, ep.version
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
        reg.pending.setdefault(kind or "*", []).append(ep)
    for name, plugin in extra or []:
        reg.plugins[name] = PluginInfo(name, None, None, "loaded")
        reg.pm.register(plugin, name=name)
        reg.loaded[name] = plugin
        reg.collect(name, plugin)
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


Factory = Callable[[], Registry]
