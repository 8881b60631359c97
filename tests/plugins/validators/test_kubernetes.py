"""The kubernetes validator: manifests against kubernetes-validate's strict schemas, on their YAML lines."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from vcase import findings

from qlcapsule_plugins.validators import kubernetes

GOOD = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
    - port: 80
      targetPort: 8080
  selector: {app: web}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list]
"""

BAD = GOOD.replace("replicas: 2", 'replicas: "two"').replace("      containers:", "      contianers:")


def test_valid_manifests_have_no_findings_and_the_engine_agrees(tmp_path):
    assert findings(tmp_path, {"k8s/app.yaml": GOOD}, "kubernetes") == []
    version = kubernetes.kubernetes_version()
    for doc in yaml.safe_load_all(GOOD):
        kubernetes_validate.validate(doc, version, strict=True)


def test_every_error_on_its_line_and_the_engine_rejects_the_same_document(tmp_path):
    found = findings(tmp_path, {"deploy/app.yml": BAD}, "kubernetes")
    assert [(f.rule, f.line, f.column, f.message) for f in found] == [
        ("kubernetes.schema", 6, 13, "spec.replicas: 'two' is not of type 'integer', 'null'"),
        ("kubernetes.schema", 12, 5, "spec.template.spec: 'containers' is a required property"),
        ("kubernetes.schema", 13, 7, "spec.template.spec.contianers: unexpected key 'contianers'"),
    ]
    assert {f.extra["help_uri"] for f in found} == {kubernetes.API_DOCS}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(next(yaml.safe_load_all(BAD)), kubernetes.kubernetes_version(), strict=True)


def test_custom_resources_and_other_yaml_are_not_checked(tmp_path):
    files = {
        "crd.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {anything: 1}\n",
        "Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
        "notes.yaml": "kind: note\ntext: apiVersion is a word here\n",
    }
    assert findings(tmp_path, files, "kubernetes") == []


def test_kind_and_api_version_never_name_a_path(tmp_path, monkeypatch):
    """They come from the file: a value that is not a Kubernetes type name never reaches a schema lookup."""
    looked_up: list[tuple[str, str]] = []
    real = kubernetes._validator.__wrapped__

    def recording(kind: str, api_version: str) -> object:
        looked_up.append((kind, api_version))
        return real(kind, api_version)

    monkeypatch.setattr(kubernetes, "_validator", recording)
    files = {
        "evil.yaml": "apiVersion: ../../../etc/v1\nkind: ../passwd\nmetadata: {name: x}\n",
        "other-tool.yaml": "apiVersion: '1.0'\nkind: config\n",
        "ok.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    }
    assert findings(tmp_path, files, "kubernetes") == []
    assert looked_up == [("ConfigMap", "v1")]


def test_documents_past_the_bound_are_not_checked_and_a_note_says_so(tmp_path):
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: 1}\n"  # data values are strings
    text = "---\n".join([bad] * (kubernetes.MAX_DOCS + 5))
    found = findings(tmp_path, {"many.yaml": text}, "kubernetes")
    assert [f.rule for f in found].count("kubernetes.schema") == kubernetes.MAX_DOCS
    (note,) = [f for f in found if f.rule == "kubernetes.limit"]
    assert f"only the first {kubernetes.MAX_DOCS}" in note.message


def test_a_file_over_the_size_bound_is_not_parsed(tmp_path):
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n" + "  k: v\n" * (kubernetes.MAX_BYTES // 6)
    (found,) = findings(tmp_path, {"big.yaml": text}, "kubernetes")
    assert found.rule == "kubernetes.limit" and "not checked" in found.message


def test_helm_templates_are_skipped(tmp_path):
    files = {
        "chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
        "chart/templates/deploy.yaml": BAD,
    }
    assert findings(tmp_path, files, "kubernetes") == []


def test_the_engine_is_listed_as_an_extra():
    engine = kubernetes.engine()
    assert engine.present and engine.optional and engine.version == kubernetes_validate.__version__
    assert "qlcapsule[kubernetes]" in engine.install
