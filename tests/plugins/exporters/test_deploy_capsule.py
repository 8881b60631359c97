"""The catalog server's own deployment: deploy/catalog, shipped with qlcapsule's own exporters (issue 20).

The capsule must verify and validate clean (its Dockerfile through the dockerfile validator's BuildKit rules
and hadolint), follow the package's version, and ship, exactly as its README says, into a docker build
context and a Helm chart whose manifests are what a deployment needs and agree with the Dockerfile and the
server (port, user, probe paths, environment variables).

Not tested here, and not testable on this machine: building the image (no docker daemon runs; `docker info`
fails) and installing the chart on a cluster (`kubectl apply --dry-run=client` needs an API server for its
schemas). The chart is rendered by the tests' Go-template renderer and each manifest checked against
Kubernetes' own schemas (kubernetes-validate, strict), as the helm exporter's tests do.
"""

from __future__ import annotations

import json
import re
import shlex
import tarfile
from pathlib import Path

import kubernetes_validate
import pygit2
import pytest
import yaml
from exportcase import copy_capsule
from gotemplate import render_chart

import qlcapsule
from qlcapsule.signing.signatures import ENV_TRUST
from qlcapsule_plugins.validators import _engines
from qlcapsule_plugins.validators.dockerfile import Instruction, parse
from qlcapsule_server.app import create_app
from qlcapsule_server.commands import serve
from qlcapsule_server.config import ENV_DATABASE, Settings

ROOT = Path(__file__).resolve().parents[3]
CAPSULE = ROOT / "deploy" / "catalog"
NAME = "qlcapsule-catalog"
K8S_VERSION = "1.30.0"


def _definition() -> dict:
    return yaml.safe_load((CAPSULE / "capsule.yaml").read_text())


def _dockerfile() -> list[Instruction]:
    instructions, errors = parse((CAPSULE / "Dockerfile").read_text())
    assert errors == []
    return instructions


def _one(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, (keyword, found)
    return found[0]


def _exec_form(instruction: Instruction) -> list[str]:
    args = instruction.args
    if instruction.keyword == "HEALTHCHECK":
        args = args[args.index("CMD ") + 4 :]
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), instruction
    return value


def test_the_capsule_follows_the_package_version() -> None:
    """A release that bumps ``qlcapsule.__version__`` must bump the capsule, its pin and its image label."""
    version = qlcapsule.__version__
    assert _definition()["version"] == version, "deploy/catalog/capsule.yaml: version (CONTRIBUTING.md, Releasing)"
    pins = [
        line for line in (CAPSULE / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")
    ]
    assert pins == [f"qlcapsule[server]=={version}"], "deploy/catalog/requirements.txt"
    label = _one(_dockerfile(), "LABEL").args
    assert f'org.opencontainers.image.version="{version}"' in label, "deploy/catalog/Dockerfile: LABEL"


def test_the_committed_capsule_verifies_and_validates_clean(qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    res = qlcapsule_cli("verify", str(CAPSULE), "--json")
    assert res.exit_code == 0, res.stdout + res.stderr  # sealed: the lock is the committed files' ('qlcapsule seal')
    verified = json.loads(res.stdout)["result"]
    assert (verified["capsule"], verified["version"], verified["integrity"]) == (NAME, qlcapsule.__version__, "ok")
    assert _engines.binary("hadolint") is not None, "hadolint (the dev extra) must be installed to check the Dockerfile"
    res = qlcapsule_cli("validate", str(CAPSULE), "--json")
    assert res.exit_code == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)["result"]["capsules"][0]
    assert report["counts"] == {"error": 0, "warning": 0, "note": 0}, res.stdout
    ran = report["validators"]
    assert ran["dockerfile"]["files"] == 1 and ran["hadolint"]["files"] == 1
    assert ran["requirements"]["files"] == 1


def test_the_image_runs_the_server_as_the_chart_expects() -> None:
    """What the Dockerfile says against what the server accepts: the command line, the port and the probes."""
    instructions = _dockerfile()
    entrypoint = _exec_form(_one(instructions, "ENTRYPOINT"))
    cmd = _exec_form(_one(instructions, "CMD"))
    assert entrypoint == ["qlcapsule"] and cmd[0] == "serve"
    params = serve.make_context("serve", cmd[1:]).params  # the options exist and parse, as the CLI would
    assert params["host"] == "0.0.0.0" and params["port"] == int(_one(instructions, "EXPOSE").args)
    assert f"http://127.0.0.1:{params['port']}/healthz" in " ".join(_exec_form(_one(instructions, "HEALTHCHECK")))
    user = _one(instructions, "USER").args
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", user), f"USER {user}: numeric and not root (runAsNonRoot)"
    assert user.split(":")[0] == str(_definition()["exports"]["helm"]["run_as_user"])
    assert _definition()["exports"]["helm"]["port"] == params["port"]


@pytest.fixture
def shipped(qlcapsule_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # type: ignore[no-untyped-def]
    """README.md's release commands in a copy of the repository (a git repository holding deploy/catalog): dist/."""
    repo = tmp_path / "repo"
    copy_capsule(CAPSULE, repo / "deploy" / "catalog")
    pygit2.init_repository(str(repo))
    key = tmp_path / "release.key"
    assert qlcapsule_cli("keygen", "--type", "ed25519", "-o", str(key)).exit_code == 0
    monkeypatch.setenv("QLCAPSULE_RELEASE_KEY", key.read_text())
    monkeypatch.chdir(repo)
    res = qlcapsule_cli("ship", "deploy/catalog", "--no-seal", "--key-env", "QLCAPSULE_RELEASE_KEY")
    assert res.exit_code == 0, res.stdout + res.stderr
    verified = qlcapsule_cli("verify", "deploy/catalog", "--key", f"{key}.pub")
    assert verified.exit_code == 0 and "signed by ed25519" in verified.stdout, verified.stdout + verified.stderr
    assert pygit2.Repository(str(repo)).references.get(f"refs/capsules/{NAME}/heads/main") is not None
    return repo / "dist"


def test_ship_writes_the_docker_context_and_the_chart(shipped: Path) -> None:
    version = qlcapsule.__version__
    assert sorted(p.name for p in shipped.iterdir()) == [
        f"{NAME}-{version}-docker-context.tar",
        f"{NAME}-{version}.tgz",
    ]
    with tarfile.open(shipped / f"{NAME}-{version}.tgz") as tf:
        chart = yaml.safe_load(tf.extractfile(f"{NAME}/Chart.yaml").read())  # type: ignore[union-attr]
    lock = json.loads((shipped.parent / "deploy" / "catalog" / "capsule.lock").read_text())
    assert chart["version"] == chart["appVersion"] == version
    assert chart["annotations"]["qlcapsule.dev/digest"] == f"sha256:{lock['digest']}"


def test_the_docker_context_holds_the_dockerfile_and_what_it_copies(shipped: Path) -> None:
    with tarfile.open(shipped / f"{NAME}-{qlcapsule.__version__}-docker-context.tar") as tf:
        context = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert context["Dockerfile"] == (CAPSULE / "Dockerfile").read_bytes()  # the capsule's own, not a generated one
    assert {"capsule.lock", "capsule.sig", "capsule.yaml"} <= set(context)
    copied = []
    for ins in _dockerfile():
        if ins.keyword in ("COPY", "ADD"):
            words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
            copied += words[:-1]
    assert copied, "the Dockerfile copies its requirements"
    for source in copied:
        assert context.get(source) == (CAPSULE / source).read_bytes(), source


def _manifests(shipped: Path) -> dict[str, dict]:
    with tarfile.open(shipped / f"{NAME}-{qlcapsule.__version__}.tgz") as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]
    rendered = render_chart(files, release="catalog")
    out = {}
    for name, text in rendered.items():
        if name.endswith(".yaml"):
            doc = yaml.safe_load(text)
            if doc is not None:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
                out[doc["kind"]] = doc
    return out


def test_the_chart_renders_what_the_deployment_needs(shipped: Path, tmp_path: Path) -> None:
    manifests = _manifests(shipped)
    assert sorted(manifests) == ["Deployment", "Service"]  # the Ingress is off until a host is given
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"ghcr.io/qlcapsule/{NAME}:{qlcapsule.__version__}"
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert manifests["Service"]["spec"]["ports"][0] == {
        "port": 8000,
        "targetPort": "http",
        "protocol": "TCP",
        "name": "http",
    }
    # the probes are routes of the server itself
    routes = {getattr(r, "path", None) for r in create_app(Settings(database_url=f"sqlite:///{tmp_path}/c.db")).routes}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"} and "/healthz" in routes
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"} and "/readyz" in routes
    # the database URL from a Secret, the trust file from another, mounted where the server is told to read it
    env = {e["name"]: e for e in container["env"]}
    assert set(env) == {ENV_DATABASE, ENV_TRUST}
    assert env[ENV_DATABASE]["valueFrom"] == {"secretKeyRef": {"name": f"{NAME}-database", "key": "url"}}
    (mount,) = container["volumeMounts"]
    (volume,) = pod["volumes"]
    assert volume == {"name": mount["name"], "secret": {"secretName": f"{NAME}-trust"}} and mount["readOnly"]
    assert env[ENV_TRUST]["value"] == mount["mountPath"] + "/trust.yaml"
    # non-root, as the Dockerfile's USER, with the 'restricted' Pod Security Standard's settings
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
