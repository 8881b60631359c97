"""The ``helm`` validator: a light check of Helm charts (``Chart.yaml``).

``apiVersion`` (v1 or v2), ``name`` and a SemVer ``version`` are required;
``type`` is ``application`` or ``library``; each dependency names ``name`` and
``version``. Template files under ``templates/`` are Go templates, so the
``yaml`` validator leaves them alone; rendering them is Helm's job.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from qlcapsule import Capsule, Finding, Register, Rule, Severity, Validator, hookimpl, quote

from ._yaml import compose_all, key_node, node_at, position, to_data

_SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?\Z")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")


class HelmValidator(Validator):
    name = "helm"
    description = "Helm Chart.yaml: apiVersion, name, SemVer version, type, dependencies"
    patterns = ("Chart.yaml",)
    rules = (
        Rule("helm.chart", "Chart.yaml misses a required field or has a wrong value"),
        Rule("helm.dependency", "a chart dependency lacks name or version", Severity.ERROR),
    )

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        docs, error = compose_all(data.decode("utf-8", "replace"))
        if error is not None or not docs:
            return  # the yaml validator reports syntax
        root = docs[0]
        chart: Any = to_data(root)
        if not isinstance(chart, dict):
            yield Finding("helm.chart", Severity.ERROR, "Chart.yaml must be a mapping", path, 1, 1)
            return

        def at(*keys: Any) -> tuple[int, int]:
            return position(key_node(root, keys))

        for field in ("apiVersion", "name", "version"):
            if not chart.get(field):
                yield Finding("helm.chart", Severity.ERROR, f"missing required field {field!r}", path, 1, 1)
        api = chart.get("apiVersion")
        if api and api not in ("v1", "v2"):
            yield Finding(
                "helm.chart", Severity.ERROR, f"apiVersion {quote(api)} is not v1 or v2", path, *at("apiVersion")
            )
        name = chart.get("name")
        if name and not _NAME.match(str(name)):
            yield Finding(
                "helm.chart",
                Severity.ERROR,
                f"name {quote(name)} must be lowercase letters, digits and '-'",
                path,
                *at("name"),
            )
        version = chart.get("version")
        if version and not _SEMVER.match(str(version)):
            yield Finding(
                "helm.chart", Severity.ERROR, f"version {quote(version)} is not SemVer 2", path, *at("version")
            )
        kind = chart.get("type")
        if kind is not None and kind not in ("application", "library"):
            yield Finding(
                "helm.chart", Severity.ERROR, f"type {quote(kind)} is not application or library", path, *at("type")
            )
        deps = chart.get("dependencies") or []
        for i, dep in enumerate(deps if isinstance(deps, list) else []):
            where = position(node_at(root, ("dependencies", i)))
            if not isinstance(dep, dict):
                yield Finding("helm.dependency", Severity.ERROR, f"dependency {i + 1} must be a mapping", path, *where)
                continue
            for field in ("name", "version"):
                if not dep.get(field):
                    yield Finding(
                        "helm.dependency", Severity.ERROR, f"dependency {i + 1} has no {field!r}", path, *where
                    )


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(HelmValidator)
