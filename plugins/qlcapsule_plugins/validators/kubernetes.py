"""The ``kubernetes`` validator: Kubernetes manifests against the API's own schemas (kubernetes-validate).

A YAML document is a manifest when its top level has a string ``apiVersion``
and ``kind`` (a ``Chart.yaml`` has no ``kind``; a workflow or Compose file
neither). Each is checked against the strict JSON Schema that
`kubernetes-validate <https://github.com/willthames/kubernetes-validate>`_
ships for its kind and API version (generated from Kubernetes' OpenAPI
definitions; strict: an unknown key such as ``contianers`` is an error), for
the newest Kubernetes version it ships, and evaluated by ``jsonschema`` the
way kubernetes-validate's ``validate`` builds it (the same schema files, the
same registry for ``_definitions.json``). Unlike that function, which stops at
the first error and reads the 1.8 MB definitions once per document, every
error is reported, each on its YAML node (``_jsonschema``), and one validator
per kind is built once per process.

A kind the package has no schema for (a custom resource, a typo in
``apiVersion``) is not checked: CRDs are everywhere and their schemas live in
the cluster. ``kind`` and ``apiVersion`` come from the file, so they are
matched against the shape Kubernetes gives them before they name a schema file
(never a path of the file's choosing); a document whose values have another
shape (other tools say ``apiVersion: "1.0"`` too) is not a manifest. Bounds, checked before any parsing: a
file over :data:`MAX_BYTES` is not read, and only the first :data:`MAX_DOCS`
documents are checked (a note says so). Helm chart ``templates/`` are Go
templates and are skipped. kubernetes-validate is an extra (its wheel is 22 MB,
108 MB installed: every Kubernetes version's schemas), in ``qlcapsule[all]``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import metadata
from typing import Any, Iterable, Sequence

from qlcapsule import Capsule, Engine, Finding, Register, Rule, Severity, Validator, hookimpl

from . import _jsonschema
from ._yaml import compose_all, helm_template, to_data

API_DOCS = "https://kubernetes.io/docs/reference/kubernetes-api/"
INSTALL = "pip install 'qlcapsule[kubernetes]'"
#: the largest manifest file read, and the most documents of one file checked
MAX_BYTES = 1024 * 1024
MAX_DOCS = 100
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]{0,62}\Z")
_API_VERSION = re.compile(r"(?:[a-z0-9][a-z0-9.-]{0,252}/)?v[0-9]+(?:(?:alpha|beta)[0-9]+)?\Z")


@lru_cache(maxsize=1)
def engine() -> Engine:
    """kubernetes-validate as installed now (an extra)."""
    try:
        version: str | None = metadata.version("kubernetes-validate")
    except metadata.PackageNotFoundError:
        version = None
    return Engine(
        "kubernetes-validate",
        version,
        INSTALL,
        "Kubernetes manifests against the API's JSON Schemas",
        optional=True,
    )


@lru_cache(maxsize=1)
def kubernetes_version() -> str:
    """The newest Kubernetes version whose schemas the installed kubernetes-validate ships (``1.37``)."""
    from kubernetes_validate import utils  # noqa: PLC0415 -- extra: kubernetes-validate may not be installed

    return utils.major_minor(utils.latest_version())


@lru_cache(maxsize=64)
def _validator(kind: str, api_version: str) -> Any:
    """The strict schema's validator for ``kind`` in ``api_version``, or None when none is shipped."""
    import jsonschema  # noqa: PLC0415 -- start-up: jsonschema loads only when a manifest is checked
    from kubernetes_validate import utils  # noqa: PLC0415 -- extra: kubernetes-validate may not be installed
    from referencing import Registry, Resource  # noqa: PLC0415 -- start-up: with jsonschema, for manifests only

    folder = f"kubernetes-json-schema/v{utils.latest_version()}-local-strict"
    # kubernetes-validate's naming: rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group}.json", kubernetes_version())
    except (FileNotFoundError, utils.InvalidSchemaError):
        return None
    definitions = utils.schema_contents(f"{folder}/_definitions.json", kubernetes_version())
    registry: Any = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


class KubernetesValidator(Validator):
    name = "kubernetes"
    description = "Kubernetes manifests: the API's strict JSON Schemas (kubernetes-validate, jsonschema)"
    patterns = ("*.yml", "*.yaml")
    rules = (
        Rule("kubernetes.schema", "the manifest does not match its kind's Kubernetes API schema", help_uri=API_DOCS),
        Rule("kubernetes.limit", "a manifest file too large or with too many documents to check", Severity.NOTE),
    )

    def engines(self) -> Sequence[Engine]:
        return (engine(),)

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        if b"kind" not in data or b"apiVersion" not in data or not engine().present:
            return  # not a manifest (the cheap test most YAML files fail), or the extra is missing
        if helm_template(capsule, path):
            return
        if len(data) > MAX_BYTES:
            message = f"{len(data)} bytes, more than the {MAX_BYTES} read: not checked against Kubernetes schemas"
            yield Finding("kubernetes.limit", Severity.NOTE, message, path, 1, 1)
            return
        docs, error = compose_all(data.decode("utf-8", "replace"))
        if error is not None:
            return  # the yaml validator reports it
        for index, root in enumerate(docs):
            if index == MAX_DOCS:
                message = f"{len(docs)} documents: only the first {MAX_DOCS} were checked against Kubernetes schemas"
                yield Finding("kubernetes.limit", Severity.NOTE, message, path, *_line(root))
                return
            yield from _check(root, path)


def _line(root: Any) -> tuple[int, int]:
    return root.start_mark.line + 1, root.start_mark.column + 1


def _check(root: Any, path: str) -> Iterable[Finding]:
    doc = to_data(root)
    if not isinstance(doc, dict):
        return
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        return
    if not _KIND.match(kind) or not _API_VERSION.match(api_version):
        return  # another tool's file that also says apiVersion and kind (apiVersion: "1.0"), never a schema path
    validator = _validator(kind, api_version)
    if validator is None:
        return  # a custom resource, or a kind this Kubernetes version does not serve: not checked
    found = _jsonschema.errors_of(validator, doc)
    yield from _jsonschema.located("kubernetes.schema", found, root, path, API_DOCS)


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(KubernetesValidator)
