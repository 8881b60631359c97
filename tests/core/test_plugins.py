"""The plugin manager: entry points one by one, failures named, operator controls."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

from qlcapsule import Exporter, PluginError, hookimpl
from qlcapsule.plugins import hookspecs
from qlcapsule.plugins.manager import HOOKS, build_manager

ROOT = Path(__file__).resolve().parents[2]


def _fake_distribution(site: Path, dist: str, version: str, entries: dict[str, str], modules: dict[str, str]) -> None:
    """A minimal installed distribution (dist-info + modules) that importlib.metadata finds."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[qlcapsule]"] + [f"{k} = {v}" for k, v in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))


GOOD = """
from qlcapsule import Exporter, hookimpl

class Listing(Exporter):
    name = "listing"
    formats = ("listing",)
    streams = True
    def export(self, capsule, out, fmt):
        for path in capsule.files():
            out.write(path.encode() + b"\\n")

@hookimpl
def qlcapsule_register_exporters(register):
    register(Listing)
"""


NAMED = """
from qlcapsule import Exporter, Register, hookimpl

class Named(Exporter):
    name = "named"
    def export(self, capsule, out, fmt, payload):
        out.write(b"named")

@hookimpl(specname="qlcapsule_register_exporters")
def add_my_exporters(register: Register) -> None:
    register(Named)
"""


def _plugins_json(site: Path, **env: str) -> list[dict]:
    full_env = {**os.environ, "PYTHONPATH": str(site), **env}
    proc = subprocess.run(
        [sys.executable, "-m", "qlcapsule.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["result"]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    _fake_distribution(site, "qlc-good", "1.2.3", {"good": "qlc_good"}, {"qlc_good": GOOD})
    _fake_distribution(site, "qlc-named", "2.0", {"named": "qlc_named"}, {"qlc_named": NAMED})
    _fake_distribution(
        site, "qlc-broken", "0.0.1", {"broken": "qlc_broken"}, {"qlc_broken": "raise ImportError('no numpy here')\n"}
    )
    return site


def test_broken_plugin_is_named_and_others_keep_working(site: Path) -> None:
    plugins = {p["name"]: p for p in _plugins_json(site)}
    broken = plugins["broken"]
    assert broken["status"] == "failed"
    assert (broken["distribution"], broken["version"]) == ("qlc-broken", "0.0.1")
    assert "no numpy here" in broken["error"]
    good = plugins["good"]
    assert good["status"] == "loaded"
    assert [(c["kind"], c["name"], c["formats"], c["available"]) for c in good["components"]] == [
        ("exporter", "listing", ["listing"], True)
    ]
    assert good["origin"] == "qlc-good" and broken["origin"] == "qlc-broken"
    builtins = [p for p in plugins.values() if p["distribution"] == "qlcapsule"]
    assert builtins, "built-ins are entry points in the same group"
    # pluggy dispatches: a hook implemented under another name with ``specname=`` registers too
    assert plugins["named"]["status"] == "loaded", plugins["named"]
    assert [(c["name"], c["formats"]) for c in plugins["named"]["components"]] == [("named", [])]
    assert {p["origin"] for p in builtins} == {"built-in"}


def test_block_list(site: Path) -> None:
    plugins = {p["name"]: p for p in _plugins_json(site, QLCAPSULE_DISABLED_PLUGINS="good,qlc-broken")}
    assert plugins["good"]["status"] == "blocked"
    assert plugins["broken"]["status"] == "blocked"


def test_allow_list_and_autoload_off(site: Path) -> None:
    plugins = {p["name"]: p for p in _plugins_json(site, QLCAPSULE_LOAD_PLUGINS="good")}
    assert plugins["good"]["status"] == "loaded"
    assert plugins["broken"]["status"] == "skipped"
    plugins = {p["name"]: p for p in _plugins_json(site, QLCAPSULE_DISABLE_PLUGIN_AUTOLOAD="1")}
    assert plugins["good"]["status"] == "skipped"
    assert all(p["status"] != "skipped" for p in plugins.values() if p["distribution"] == "qlcapsule")


def test_plugins_text_output(site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-m", "qlcapsule.cli", "plugins"], capture_output=True, text=True, env=env, timeout=60
    )
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["kind", "name", "formats/provider", "version", "origin", "status", "description"]
    line = next(ln for ln in lines if ln.split()[:2] == ["plugin", "broken"])
    assert line.split()[2:5] == ["-", "0.0.1", "qlc-broken"]
    assert "failed: ImportError: no numpy here" in line
    listing = next(ln for ln in lines if ln.split()[:2] == ["exporter", "listing"])
    assert listing.split()[2:6] == ["listing", "1.2.3", "qlc-good", "available"]


def _module(name: str, **attrs: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


class _Dup2(Exporter):
    name = "dup"
    formats = ("dup",)

    def export(self, capsule, out, fmt, payload):  # type: ignore[no-untyped-def]
        out.write(b"2")


class _Dup3(_Dup2):
    pass


def test_duplicate_component_names_fail_only_the_later_registration() -> None:
    """pluggy calls the plugin registered last first: its registration of a name wins, the other fails by name."""
    early = _module("early", qlcapsule_register_exporters=hookimpl(lambda register: register(_Dup2)))
    late = _module("late", qlcapsule_register_exporters=hookimpl(lambda register: register(_Dup3)))
    reg = build_manager([("early", early), ("late", late)])
    assert reg.get("exporter", "dup") is _Dup3
    assert reg.plugins["late"].status == "loaded" and reg.plugins["late"].components == [("exporter", "dup")]
    assert reg.plugins["early"].status == "failed"
    assert "plugin 'early': exporter 'dup' is already registered by plugin 'late'" in (reg.plugins["early"].error or "")
    assert reg.pm.get_plugin("early") is None  # unregistered: no hook of it runs again


@pytest.mark.parametrize(("marks", "winner"), [({"tryfirst": True}, "early"), ({"trylast": True}, "late")])
def test_tryfirst_and_trylast_order_registration(marks: dict[str, bool], winner: str) -> None:
    """The first registration of a name wins: ``tryfirst`` claims it before the others, ``trylast`` after."""
    early = _module("early", qlcapsule_register_exporters=hookimpl(**marks)(lambda register: register(_Dup2)))
    late = _module("late", qlcapsule_register_exporters=hookimpl(lambda register: register(_Dup3)))
    reg = build_manager([("early", early), ("late", late)])
    assert reg.get("exporter", "dup") is {"early": _Dup2, "late": _Dup3}[winner]
    loser = "late" if winner == "early" else "early"
    assert reg.plugins[loser].status == "failed" and reg.plugins[winner].status == "loaded"


def test_a_zip_of_a_plugin_cannot_take_a_builtin_name_without_tryfirst() -> None:
    """Built-ins are registered after third-party plugins, so pluggy calls them first and they keep their names."""

    class FakeZip(_Dup2):
        name = "zip"

    rogue = _module("rogue", qlcapsule_register_exporters=hookimpl(lambda register: register(FakeZip)))
    reg = build_manager([("rogue", rogue)])
    assert reg.get("exporter", "zip") is not FakeZip
    assert "already registered by plugin 'exporters.zip'" in (reg.plugins["rogue"].error or "")


def test_specname_implements_a_hook_under_another_name() -> None:
    def add_exporters(register):  # type: ignore[no-untyped-def]
        register(_Listing)

    plugin = _module("named", add_exporters=hookimpl(specname="qlcapsule_register_exporters")(add_exporters))
    reg = build_manager([("named", plugin)])
    assert reg.get("exporter", "inproc-listing") is _Listing
    assert reg.plugins["named"].components == [("exporter", "inproc-listing")]


@pytest.mark.parametrize("style", ["wrapper", "hookwrapper"])
def test_a_wrapper_runs_around_the_other_registrations(style: str) -> None:
    calls: list[str] = []

    def plain(register):  # type: ignore[no-untyped-def]
        calls.append("plain")
        register(_Listing)

    def around(register):  # type: ignore[no-untyped-def]
        calls.append("before")
        result = yield
        calls.append("after")
        return result

    wrapped = _module("wrapped", qlcapsule_register_exporters=hookimpl(plain))
    wrapping = _module("wrapping", qlcapsule_register_exporters=hookimpl(**{style: True})(around))
    reg = build_manager([("wrapping", wrapping), ("wrapped", wrapped)])
    assert reg.get("exporter", "inproc-listing") is _Listing
    assert calls == ["before", "plain", "after"]
    assert reg.plugins["wrapping"].status == reg.plugins["wrapped"].status == "loaded"


def test_no_hook_is_historic_or_firstresult() -> None:
    """Registration collects from every plugin, once per kind (wrappers could not wrap a historic hook)."""
    reg = build_manager([])
    for name in HOOKS.values():
        opts = getattr(reg.pm.hook, name).spec.opts
        assert opts["historic"] is False and opts["firstresult"] is False


def test_a_hook_that_raises_fails_its_plugin_and_the_others_register() -> None:
    def boom(register):  # type: ignore[no-untyped-def]
        register(_Dup2)
        raise RuntimeError("exporter hook exploded")

    bad = _module("exploding", qlcapsule_register_exporters=hookimpl(tryfirst=True)(boom))
    good = _module("good4", qlcapsule_register_exporters=hookimpl(lambda register: register(_Listing)))
    reg = build_manager([("good4", good), ("exploding", bad)])
    assert reg.get("exporter", "inproc-listing") is _Listing
    assert reg.plugins["exploding"].status == "failed"
    assert reg.plugins["exploding"].error == "RuntimeError: exporter hook exploded"
    assert reg.plugins["exploding"].components == [] and "dup" not in reg.names("exporter")


def test_a_component_missing_an_abstract_method_fails_at_registration() -> None:
    class Half(Exporter):  # no export()
        name = "half"

    plugin = _module("halfway", qlcapsule_register_exporters=hookimpl(lambda register: register(Half)))
    reg = build_manager([("halfway", plugin)])
    reg.ensure("exporter")
    error = reg.plugins["halfway"].error or ""
    assert reg.plugins["halfway"].status == "failed" and "\n" not in error
    assert error == "PluginError: plugin 'halfway': Half does not implement export (abstract in qlcapsule.Exporter)"
    assert "half" not in reg.names("exporter")


def test_register_kept_for_later_is_refused() -> None:
    kept = []
    plugin = _module("keeper", qlcapsule_register_exporters=hookimpl(lambda register: kept.append(register)))
    reg = build_manager([("keeper", plugin)])
    reg.ensure("exporter")
    with pytest.raises(PluginError, match="outside a registration hook"):
        kept[0](_Listing)


def test_registering_a_non_component_is_refused() -> None:
    bad = _module("bad", qlcapsule_register_exporters=hookimpl(lambda register: register(object)))
    reg = build_manager([("bad", bad)])
    reg.ensure("exporter")  # hooks run when their kind is first needed
    assert reg.plugins["bad"].status == "failed"
    assert "not a qlcapsule.Exporter subclass" in (reg.plugins["bad"].error or "")


def test_unknown_component_lists_what_exists() -> None:
    reg = build_manager([])
    with pytest.raises(PluginError, match=r"unknown exporter 'nope' \(available: "):
        reg.get("exporter", "nope")


def test_fixture_registers_and_unregisters(qlcapsule_plugin, make_capsule) -> None:
    import io

    from qlcapsule.plugins.manager import registry

    plugin = _module("inproc", qlcapsule_register_exporters=hookimpl(lambda register: register(_Listing)))
    reg = qlcapsule_plugin(plugin, "inproc")
    cls = reg.get("exporter", "inproc-listing")
    out = io.BytesIO()
    from qlcapsule.steps.exporting import write_export

    write_export(cls.from_options({}), make_capsule({"x.txt": "x"}), out, "inproc-listing")
    assert out.getvalue() == b"capsule.yaml\nx.txt\n"
    assert registry() is reg


class _Listing(Exporter):
    name = "inproc-listing"
    formats = ("inproc-listing",)

    def export(self, capsule, out, fmt, payload):  # type: ignore[no-untyped-def]
        out.write("".join(p + "\n" for p in capsule.files()).encode())


def test_options_are_validated_with_the_field_named() -> None:
    from pydantic import Field

    from qlcapsule import Options, OptionsError

    class Opts(Options):
        level: int = Field(default=6, ge=0, le=9)

    class Leveled(Exporter):
        name = "leveled"
        Options = Opts

    with pytest.raises(OptionsError, match=r"level: Input should be less than or equal to 9"):
        Leveled.from_options({"level": 12})
    with pytest.raises(OptionsError, match=r"colour: unknown key"):
        Leveled.from_options({"colour": "red"})


def test_every_hookspec_has_a_test_and_docs() -> None:
    """Like datasette's test_plugin_hooks_have_tests: a new hook needs tests and docs."""
    specs = [n for n in dir(hookspecs) if n.startswith("qlcapsule_register_")]
    assert len(specs) == 6  # the five component kinds and commands
    tests_text = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    docs = (ROOT / "docs" / "plugins.md").read_text() if (ROOT / "docs" / "plugins.md").exists() else ""
    for spec in specs:
        assert tests_text.count(spec) >= 1, f"{spec} has no test"
        assert spec in docs, f"{spec} is not documented in docs/plugins.md"


def test_core_never_imports_the_plugins() -> None:
    """The boundary import-linter also checks in the lint env, enforced here without it."""
    offenders = []
    for path in (ROOT / "core" / "qlcapsule").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "qlcapsule_plugins"
            ]
    assert offenders == []


def test_plugins_import_only_the_public_api() -> None:
    """Built-ins are written exactly as third-party plugins: `qlcapsule` root only."""
    offenders = []
    for path in (ROOT / "plugins" / "qlcapsule_plugins").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.startswith("qlcapsule.")]
    assert offenders == [], "plugins must import only from the qlcapsule package root"


def test_the_public_api_is_one_list() -> None:
    """``__all__`` is made from ``_EXPORTS``; the TYPE_CHECKING imports name the same modules and names."""
    import qlcapsule

    assert qlcapsule.__all__ == ["__version__", *qlcapsule._EXPORTS]
    init = ROOT / "core" / "qlcapsule" / "__init__.py"
    guarded = next(
        n for n in ast.parse(init.read_text()).body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    )
    typed = {a.name: node.module for node in guarded.body if isinstance(node, ast.ImportFrom) for a in node.names}
    assert typed == qlcapsule._EXPORTS
    for name in qlcapsule._EXPORTS:
        assert getattr(qlcapsule, name) is not None, name


@pytest.mark.parametrize(
    ("hook", "kind", "base"),
    [
        ("qlcapsule_register_generators", "generator", "Generator"),
        ("qlcapsule_register_validators", "validator", "Validator"),
        ("qlcapsule_register_signers", "signer", "Signer"),
        ("qlcapsule_register_exporters", "exporter", "Exporter"),
        ("qlcapsule_register_deliverers", "deliverer", "Deliverer"),
    ],
)
def test_each_registration_hook_registers_its_kind(hook: str, kind: str, base: str) -> None:
    import qlcapsule

    parent = getattr(qlcapsule, base)
    methods = {m: lambda self, *a, **k: None for m in parent.__abstractmethods__}  # a complete component
    cls = type(f"Test{base}", (parent,), {"name": f"test-{kind}", **methods})
    plugin = _module(f"p-{kind}", **{hook: hookimpl(lambda register: register(cls))})
    reg = build_manager([(f"p-{kind}", plugin)])
    assert reg.get(kind, f"test-{kind}") is cls
    assert reg.plugins[f"p-{kind}"].components == [(kind, f"test-{kind}")]
    # registering into the wrong kind is refused and blames the plugin
    other = "exporter" if kind != "exporter" else "signer"
    wrong = _module("wrong", **{f"qlcapsule_register_{other}s": hookimpl(lambda register: register(cls))})
    reg = build_manager([("wrong", wrong)])
    reg.ensure()
    assert reg.plugins["wrong"].status == "failed"


def test_misspelled_hook_fails_only_that_plugin() -> None:
    typo = _module("typo", qlcapsule_register_exporter=hookimpl(lambda register: None))  # missing 's'
    good = _module("good2", qlcapsule_register_exporters=hookimpl(lambda register: register(_Listing)))
    reg = build_manager([("typo", typo), ("good2", good)])
    reg.ensure()
    assert reg.plugins["typo"].status == "failed"
    assert "unknown hook" in (reg.plugins["typo"].error or "")
    assert reg.get("exporter", "inproc-listing") is _Listing


def test_builtins_load_per_kind() -> None:
    """validate must not import the cloud deliverers: built-ins load by the kind asked for."""
    reg = build_manager([])
    reg.names("validator")
    statuses = {p.name: p.status for p in reg.plugins.values() if p.distribution == "qlcapsule"}
    assert all(s != "pending" for n, s in statuses.items() if n.startswith("validators."))
    assert all(s == "pending" for n, s in statuses.items() if n.startswith("deliverers."))
    reg.infos()
    assert all(p.status != "pending" for p in reg.plugins.values())


def test_builtins_and_third_party_plugins_share_one_pluggy_manager() -> None:
    """Every plugin, built-in or not, is registered in one manager and passes pluggy's own checks."""
    import pluggy

    import qlcapsule

    good = _module("good3", qlcapsule_register_exporters=hookimpl(lambda register: register(_Listing)))
    reg = build_manager([("good3", good)])
    reg.ensure()
    assert isinstance(reg.pm, pluggy.PluginManager)
    builtins = [p.name for p in reg.plugins.values() if p.distribution == "qlcapsule"]
    assert builtins and all(reg.plugins[n].status == "loaded" for n in builtins)
    names = {reg.pm.get_name(p) for p in reg.pm.get_plugins()}
    assert names >= {*builtins, "good3"}
    reg.pm.check_pending()  # raises PluginValidationError for a hook that matches no spec
    assert isinstance(qlcapsule.hookimpl, pluggy.HookimplMarker) and qlcapsule.hookimpl.project_name == "qlcapsule"
    assert isinstance(qlcapsule.hookspec, pluggy.HookspecMarker) and qlcapsule.hookspec.project_name == "qlcapsule"


def test_options_refuse_a_bool_only_where_no_bool_is_allowed() -> None:
    """``true`` is not a number for any component's options; bool and Any fields still take it."""
    from qlcapsule import Component, Options, OptionsError

    class Opts(Options):
        count: int = 1
        ratio: float | None = None
        flag: bool | int = 0
        anything: Any = None

    class C(Component):
        name = "c"
        Options = Opts

    for field in ("count", "ratio"):
        with pytest.raises(OptionsError, match=f"{field}: expected a number, not true"):
            C.from_options({field: True})
    ok = C.from_options({"count": "3", "ratio": 0.5, "flag": True, "anything": False})
    assert (ok.options.count, ok.options.ratio, ok.options.flag, ok.options.anything) == (3, 0.5, True, False)
