"""The helm exporter: helm-package layout, and rendered manifests valid for Kubernetes."""

from __future__ import annotations

import io
import json
import re
import tarfile

import jsonschema
import kubernetes_validate
import pytest
import yaml
from gotemplate import render_chart as render

from qlcapsule import Capsule, OptionsError
from qlcapsule.steps.exporting import write_export
from qlcapsule.testing import check_exporter
from qlcapsule_plugins.exporters.helm import HelmExporter

K8S_VERSION = "1.30.0"


def chart(capsule: Capsule, **options: object) -> dict[str, bytes]:
    buf = io.BytesIO()
    write_export(HelmExporter.from_options(options), capsule, buf, "helm")
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]


def test_layout_matches_helm_package(demo_capsule: Capsule) -> None:
    data = check_exporter(HelmExporter, demo_capsule)
    assert HelmExporter().filename(demo_capsule, "helm") == "demo-1.2.3.tgz"
    assert data[3] & 0x14 == 0x14 and b"Helm\x00" in data[:80]  # gzip FEXTRA + FCOMMENT like helm
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = tf.getnames()
        assert all(m.isfile() for m in tf.getmembers())
    assert names[:3] == ["demo/Chart.yaml", "demo/values.yaml", "demo/values.schema.json"]
    assert names[3:8] == [
        f"demo/templates/{t}" for t in ("NOTES.txt", "_helpers.tpl", "deployment.yaml", "ingress.yaml", "service.yaml")
    ]


def test_chart_yaml_and_values(demo_capsule: Capsule) -> None:
    files = chart(demo_capsule, image="ghcr.io/acme/demo", port=9000, env={"LOG_LEVEL": "debug"})
    meta = yaml.safe_load(files["demo/Chart.yaml"])
    assert meta["apiVersion"] == "v2" and meta["name"] == "demo"
    assert meta["version"] == "1.2.3" and meta["appVersion"] == "1.2.3"
    assert meta["annotations"]["qlcapsule.dev/digest"] == f"sha256:{demo_capsule.digest}"
    values = yaml.safe_load(files["demo/values.yaml"])
    assert values["image"]["repository"] == "ghcr.io/acme/demo"
    assert values["service"]["port"] == 9000 and values["env"] == {"LOG_LEVEL": "debug"}
    assert {"replicaCount", "resources"} <= set(values)
    schema = json.loads(files["demo/values.schema.json"])
    jsonschema.validate(values, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**values, "replicaCount": "three"}, schema)


@pytest.mark.parametrize("ingress", [False, True])
def test_rendered_manifests_validate_against_kubernetes(demo_capsule: Capsule, ingress: bool) -> None:
    over = {"ingress": {"enabled": True, "className": "nginx"}} if ingress else {}
    files = chart(demo_capsule, env={"A": "1", "B": "two"})
    rendered = render(files, over)
    kinds = []
    for name, text in rendered.items():
        if name == "NOTES.txt":
            assert "rel" in text and demo_capsule.digest in text
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            kinds.append(doc["kind"])
            assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"
    assert sorted(kinds) == (["Deployment", "Ingress", "Service"] if ingress else ["Deployment", "Service"])
    deploy = yaml.safe_load(rendered["deployment.yaml"])
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "demo:1.2.3"
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "two"}]
    assert (
        deploy["spec"]["template"]["metadata"]["annotations"]["qlcapsule.dev/digest"] == f"sha256:{demo_capsule.digest}"
    )


def test_a_broken_manifest_is_caught_by_the_validator() -> None:
    """The other side of the check: kubernetes-validate does refuse a bad Deployment."""
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "one"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"image": 'ghcr.io/x"y'}, "image: 'ghcr.io/x\"y' is not an image repository"),
        ({"image": "ghcr.io/acme/demo:1.0"}, "is not an image repository"),  # the tag is its own option
        ({"tag": "1.0 beta"}, "tag: '1.0 beta' is not an image tag"),
        ({"ingress_class": "a: b"}, "ingress_class: 'a: b' is not empty or a DNS-1123 name"),
        ({"ingress_host": "x.example.com\nspec: {}"}, "ingress_host: .* is not empty or a DNS host name"),
        ({"env": {"1 bad": "x"}}, "'1 bad' is not an environment variable name"),
        ({"resources": {"limits": {"cpu": "lots"}}}, "resources.limits.cpu: 'lots' is not a Kubernetes quantity"),
        ({"resources": {"limit": {"cpu": "1"}}}, "resources: unknown key 'limit' \\(use requests, limits\\)"),
        ({"env_secrets": {"DB": "orders-db"}}, "env_secrets.DB: 'orders-db' is not SECRET/KEY"),
        ({"env_secrets": {"DB": "Orders/url"}}, "is not SECRET/KEY"),  # a Secret's name is lower-case
        ({"env_secrets": {"DB": "db/.."}}, "is not SECRET/KEY"),
        ({"env": {"DB": "x"}, "env_secrets": {"DB": "db/url"}}, "env_secrets: DB also set in env"),
        ({"secret_mounts": {"etc/trust": "trust"}}, "'etc/trust' is not an absolute path"),
        ({"secret_mounts": {"/etc/trust": "a_b"}}, "'a_b' is not a Secret's name"),
        ({"ingress_tls_secret": "Orders_TLS"}, "ingress_tls_secret: 'Orders_TLS' is not empty or a Secret's name"),
        ({"liveness_path": "healthz"}, "liveness_path: 'healthz' is not empty or an absolute URL path"),
        ({"readiness_path": "/ready z"}, "readiness_path: .* is not empty or an absolute URL path"),
        ({"run_as_user": 0}, "run_as_user: .*greater than or equal to 1"),  # root is what it is there to avoid
        ({"port": True}, "port: expected a number, not true"),  # pydantic's lax mode made this port 1
        ({"replicas": False}, "replicas: expected a number, not false"),
    ],
)
def test_options_that_would_break_the_chart_are_refused(options: dict, expected: str) -> None:
    with pytest.raises(OptionsError, match=expected):
        HelmExporter.from_options(options)


def test_resources_given_in_part_keep_the_other_defaults(demo_capsule: Capsule) -> None:
    """``--option resources.limits.cpu=1`` (the example in ``export --help``) changes that one quantity."""
    values = yaml.safe_load(chart(demo_capsule, resources={"limits": {"cpu": "1"}})["demo/values.yaml"])
    assert values["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }
    values = yaml.safe_load(chart(demo_capsule, resources={"limits": {"memory": ""}})["demo/values.yaml"])
    assert values["resources"]["limits"] == {"cpu": "500m"}  # an empty value drops a default


def test_a_build_version_renders_valid_labels_and_image(demo_capsule: Capsule) -> None:
    """SemVer build metadata (``+build.5``) is valid in neither a label value nor an image tag."""
    text = (demo_capsule.root / "capsule.yaml").read_text()
    (demo_capsule.root / "capsule.yaml").write_text(re.sub(r"(?m)^version: .*$", "version: 1.0.0-rc.1+build.5", text))
    capsule = Capsule.load(demo_capsule.root)
    capsule.seal()
    files = chart(capsule, env={"QUOTED": 'say "hi"\nnext: line\\'})
    assert yaml.safe_load(files["demo/Chart.yaml"])["appVersion"] == "1.0.0-rc.1+build.5"
    rendered = render(files, {"ingress": {"enabled": True}})
    label = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
    for name in ("deployment.yaml", "service.yaml", "ingress.yaml"):
        doc = yaml.safe_load(rendered[name])
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        for key, value in doc["metadata"]["labels"].items():
            assert len(value) <= 63 and label.fullmatch(value), (name, key, value)
    container = yaml.safe_load(rendered["deployment.yaml"])["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "demo:1.0.0-rc.1_build.5"
    assert container["env"] == [{"name": "QUOTED", "value": 'say "hi"\nnext: line\\'}]


DEPLOYMENT_OPTIONS: dict[str, object] = {
    "env": {"LOG_LEVEL": "info"},
    "env_secrets": {"DATABASE_URL": "demo-db/url", "API_TOKEN": "demo.tokens/api"},
    "secret_mounts": {"/etc/demo/trust": "demo-trust", "/etc/demo/tls": "demo-tls"},
    "liveness_path": "/healthz",
    "readiness_path": "/readyz",
    "run_as_user": 10001,
}


def _pod(rendered: dict[str, str]) -> dict:
    deploy = yaml.safe_load(rendered["deployment.yaml"])
    kubernetes_validate.validate(deploy, K8S_VERSION, strict=True)
    return deploy["spec"]["template"]["spec"]


def test_what_a_deployment_needs_renders_valid_manifests(demo_capsule: Capsule) -> None:
    """Probes, variables from Secrets, Secrets mounted as files, and a non-root "restricted" security context."""
    files = chart(demo_capsule, **DEPLOYMENT_OPTIONS)
    values = yaml.safe_load(files["demo/values.yaml"])
    jsonschema.validate(values, json.loads(files["demo/values.schema.json"]))
    pod = _pod(render(files))
    container = pod["containers"][0]
    assert container["env"] == [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "demo.tokens", "key": "api"}}},
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "demo-db", "key": "url"}}},
    ]
    assert container["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"}}
    assert container["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "http"}}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"]}
    assert {m["mountPath"]: volumes[name] for name, m in mounts.items()} == {
        "/etc/demo/trust": "demo-trust",
        "/etc/demo/tls": "demo-tls",
    }
    assert all(m["readOnly"] is True for m in mounts.values())
    # the Pod Security Standard "restricted" (kubernetes.io/docs/concepts/security/pod-security-standards)
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_without_those_options_the_pod_is_as_before(demo_capsule: Capsule) -> None:
    pod = _pod(render(chart(demo_capsule)))
    container = pod["containers"][0]
    assert "securityContext" not in pod and "volumes" not in pod
    assert not {"env", "volumeMounts", "livenessProbe", "readinessProbe", "securityContext"} & set(container)
    only_secrets = _pod(render(chart(demo_capsule, env_secrets={"DB": "db/url"})))["containers"][0]
    assert only_secrets["env"] == [{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]


def test_the_values_schema_refuses_a_secret_without_its_key(demo_capsule: Capsule) -> None:
    """``helm install --set secretEnv.DB.secret=x`` without the key fails Helm's schema check, not the API server."""
    files = chart(demo_capsule, **DEPLOYMENT_OPTIONS)
    values = yaml.safe_load(files["demo/values.yaml"])
    schema = json.loads(files["demo/values.schema.json"])
    for bad in (
        {**values, "secretEnv": {"DB": {"secret": "db"}}},
        {**values, "secretMounts": [{"mountPath": "relative", "secret": "s"}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_an_ingress_with_tls_names_its_host_and_secret(demo_capsule: Capsule) -> None:
    files = chart(demo_capsule, ingress_host="demo.example.org", ingress_tls_secret="demo-tls")
    ingress = yaml.safe_load(render(files)["ingress.yaml"])
    kubernetes_validate.validate(ingress, K8S_VERSION, strict=True)
    assert ingress["spec"]["tls"] == [{"hosts": ["demo.example.org"], "secretName": "demo-tls"}]
    assert ingress["spec"]["rules"][0]["host"] == "demo.example.org"
    plain = yaml.safe_load(render(chart(demo_capsule, ingress_host="demo.example.org"))["ingress.yaml"])
    assert "tls" not in plain["spec"]
