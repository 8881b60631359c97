"""The oci deliverer against the real CNCF distribution registry (Debian ``docker-registry``).

Every read-back here is plain HTTP against the registry, independent of the deliverer.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fixtures_forge import CANARY_REGISTRY_PASSWORD
from operator_targets import add_operator_target, assert_capsule_target_refused

from qlcapsule import Capsule

pytestmark = pytest.mark.e2e

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _capsule(make_capsule: Any, host: str, root: Path | None = None, **options: Any) -> Capsule:
    opts = {"registry": host, "repository": "team/{name}", "plain_http": True, "retries": 2, **options}
    add_operator_target("reg", {"provider": "oci", "options": opts})
    definition = "name: orders\nversion: 1.2.0+build.7\ndescription: Orders service\n"
    kw = {"root": root} if root else {}
    return make_capsule({"app.py": "print('hi')\n"}, definition=definition, **kw)


def _run(qlcapsule_cli: Any, *args: str, env: dict[str, str] | None = None) -> Any:
    result = qlcapsule_cli("-vv", *args, env=env or {})
    assert CANARY_REGISTRY_PASSWORD not in result.output, "the registry password leaked"
    assert base64.b64encode(f"ci:{CANARY_REGISTRY_PASSWORD}".encode()).decode() not in result.output
    return result


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / "files" / name
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("fmt", ["oci", "oci-dir"])
def test_push_the_oci_export(make_capsule: Any, oci_registry: Any, qlcapsule_cli: Any, fmt: str) -> None:
    """The ``oci`` export (an image layout, tarball or directory) lands byte for byte; a second delivery uploads nothing."""
    cap = _capsule(make_capsule, oci_registry.host)
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-f", fmt, "--json")
    assert res.exit_code == 0, res.output
    (receipt,) = json.loads(res.stdout)["result"]["receipts"]
    extra = receipt["extra"]
    assert extra["kind"] == "layout" and extra["tag"] == "1.2.0_build.7" and extra["repository"] == "team/orders"
    assert receipt["location"] == f"oci://{oci_registry.host}/team/orders:1.2.0_build.7@{extra['manifest_digest']}"

    status, headers, manifest = oci_registry.get("/v2/team/orders/manifests/1.2.0_build.7", accept=MANIFEST)
    assert status == 200 and "sha256:" + hashlib.sha256(manifest).hexdigest() == extra["manifest_digest"]
    doc = json.loads(manifest)
    assert doc["artifactType"] == "application/vnd.qlcapsule.capsule.v1"
    assert doc["annotations"]["dev.qlcapsule.capsule.digest"] == f"sha256:{cap.digest}"
    layer = doc["layers"][0]
    status, _, blob = oci_registry.get(f"/v2/team/orders/blobs/{layer['digest']}")
    assert status == 200 and "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tf:
        assert tf.extractfile("app.py").read() == b"print('hi')\n"  # type: ignore[union-attr]
    # the receipt URL serves the manifest
    with urllib.request.urlopen(urllib.request.Request(receipt["url"], headers={"Accept": MANIFEST}), timeout=10) as r:
        assert r.read() == manifest

    again = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-f", fmt, "--json")
    assert again.exit_code == 0, again.output
    extra2 = json.loads(again.stdout)["result"]["receipts"][0]["extra"]
    assert extra2["existing"] is True and extra2["blobs_uploaded"] == 0
    assert extra2["manifest_digest"] == extra["manifest_digest"]


def test_helm_chart_is_pushed_like_helm_push(make_capsule: Any, oci_registry: Any, qlcapsule_cli: Any) -> None:
    """The ``helm`` export goes to <repository>/<chart>:<version> with Helm's media types."""
    cap = _capsule(make_capsule, oci_registry.host, repository="charts")
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-f", "helm", "--json")
    assert res.exit_code == 0, res.output
    (receipt,) = json.loads(res.stdout)["result"]["receipts"]
    assert receipt["extra"]["kind"] == "helm" and receipt["extra"]["repository"] == "charts/orders"
    status, _, manifest = oci_registry.get("/v2/charts/orders/manifests/1.2.0_build.7", accept=MANIFEST)
    assert status == 200
    doc = json.loads(manifest)
    assert doc["config"]["mediaType"] == "application/vnd.cncf.helm.config.v1+json"
    assert [layer["mediaType"] for layer in doc["layers"]] == ["application/vnd.cncf.helm.chart.content.v1.tar+gzip"]
    assert doc["layers"][0]["digest"] == f"sha256:{receipt['sha256']}"
    _, _, config = oci_registry.get(f"/v2/charts/orders/blobs/{doc['config']['digest']}")
    assert json.loads(config)["name"] == "orders" and json.loads(config)["version"] == "1.2.0+build.7"
    # the chart fetched by plain HTTP from the receipt URL is the delivered file
    with urllib.request.urlopen(receipt["url"], timeout=10) as r:
        chart = r.read()
    assert hashlib.sha256(chart).hexdigest() == receipt["sha256"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(chart))) as tf:
        assert "orders/Chart.yaml" in tf.getnames()


def test_large_file_goes_up_in_chunks(
    make_capsule: Any, oci_registry: Any, registry_proxy: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """Any other file becomes an OCI artifact layer; above chunk_size it is sent as PATCH chunks."""
    cap = _capsule(make_capsule, registry_proxy.host, chunk_size=16384)
    data = bytes(range(256)) * 400  # 100 KiB -> 7 chunks
    art = _file(tmp_path, "orders-1.2.0.zip", data)
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-a", str(art), "--json")
    assert res.exit_code == 0, res.output
    (receipt,) = json.loads(res.stdout)["result"]["receipts"]
    assert registry_proxy.count("PATCH", "/blobs/uploads/", 202) == 7
    status, _, manifest = oci_registry.get("/v2/team/orders/manifests/1.2.0_build.7", accept=MANIFEST)
    doc = json.loads(manifest)
    assert doc["artifactType"] == "application/vnd.qlcapsule.capsule.v1"
    assert doc["layers"][0]["annotations"]["org.opencontainers.image.title"] == "orders-1.2.0.zip"
    assert doc["layers"][0]["mediaType"] == "application/zip"
    status, _, blob = oci_registry.get(f"/v2/team/orders/blobs/sha256:{receipt['sha256']}")
    assert status == 200 and blob == data


def test_options_are_checked_before_any_request(
    make_capsule: Any, registry_proxy: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """Bad options: exit 2, one line naming the field, and not one request reaches the registry."""
    art = str(_file(tmp_path, "a.zip", b"zip"))
    cases = [
        ({"registry": "http://x"}, "registry"),
        ({"repository": "Team/Orders"}, "repository"),
        ({"tag": "bad tag"}, "tag"),
        ({"chunk_size": 10}, "chunk_size"),
        ({"mode": "docker"}, "mode"),
        ({"password": "x"}, "password: unknown key"),
    ]
    for i, (opts, needle) in enumerate(cases):
        cap = _capsule(make_capsule, registry_proxy.host, root=tmp_path / f"c{i}", **opts)
        res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-a", art)
        assert res.exit_code == 2, res.output
        line = res.stderr.strip().splitlines()[-1]
        ops = os.environ["QLCAPSULE_TARGETS_FILE"]  # the target is the operator's: its file and line are named
        assert line.startswith(f"error: {ops}:") and ": targets.reg.options" in line and needle in line, line
    assert registry_proxy.log == []


def test_basic_auth(make_capsule: Any, oci_registry_auth: Any, qlcapsule_cli: Any, tmp_path: Path) -> None:
    """htpasswd (bcrypt) auth: missing or wrong credentials are one line; env and docker config both work."""
    cap = _capsule(make_capsule, oci_registry_auth.host)
    art = str(_file(tmp_path, "a.zip", b"zip bytes"))
    res = _run(
        qlcapsule_cli,
        "deliver",
        str(cap.root),
        "-t",
        "reg",
        "-a",
        art,
        "--dry-run",
        env={"DOCKER_CONFIG": str(tmp_path / "nodocker")},
    )
    assert res.exit_code == 2
    assert (
        res.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"error: missing credential: registry {oci_registry_auth.host} needs a login; set QLCAPSULE_REGISTRY_USERNAME"
        )
    )
    bad = {"QLCAPSULE_REGISTRY_USERNAME": "ci", "QLCAPSULE_REGISTRY_PASSWORD": "wrong-password-123"}
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-a", art, env=bad)
    assert res.exit_code == 2 and "rejected the credentials (401)" in res.stderr, res.output
    assert "wrong-password-123" not in res.output
    good = {"QLCAPSULE_REGISTRY_USERNAME": "ci", "QLCAPSULE_REGISTRY_PASSWORD": CANARY_REGISTRY_PASSWORD}
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-a", art, "--json", env=good)
    assert res.exit_code == 0, res.output
    status, _, _ = oci_registry_auth.get("/v2/team/orders/manifests/1.2.0_build.7", accept=MANIFEST)
    assert status == 200
    # docker login's config.json
    cfg = tmp_path / "docker"
    cfg.mkdir()
    auth = base64.b64encode(f"ci:{CANARY_REGISTRY_PASSWORD}".encode()).decode()
    (cfg / "config.json").write_text(json.dumps({"auths": {oci_registry_auth.host: {"auth": auth}}}))
    art2 = str(_file(tmp_path, "b.zip", b"other zip"))
    cap2 = _capsule(make_capsule, oci_registry_auth.host, root=tmp_path / "c2", tag="{version}-b")
    res = _run(qlcapsule_cli, "deliver", str(cap2.root), "-t", "reg", "-a", art2, env={"DOCKER_CONFIG": str(cfg)})
    assert res.exit_code == 0, res.output
    assert oci_registry_auth.get("/v2/team/orders/manifests/1.2.0_build.7-b", accept=MANIFEST)[0] == 200


def test_tag_pointing_elsewhere_is_a_conflict(
    make_capsule: Any, oci_registry: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """An existing tag is not moved unless overwrite is set."""
    cap = _capsule(make_capsule, oci_registry.host)
    assert (
        _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-a", str(_file(tmp_path, "a.zip", b"1"))).exit_code
        == 0
    )
    other = str(_file(tmp_path, "a.zip", b"2"))
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-a", other)
    assert res.exit_code == 1 and "already points at sha256:" in res.stderr, res.output
    cap2 = _capsule(make_capsule, oci_registry.host, root=tmp_path / "ow", overwrite=True)
    res = _run(qlcapsule_cli, "deliver", str(cap2.root), "-t", "reg", "-a", other, "--json")
    assert res.exit_code == 0, res.output
    _, _, manifest = oci_registry.get("/v2/team/orders/manifests/1.2.0_build.7", accept=MANIFEST)
    assert json.loads(manifest)["layers"][0]["digest"] == "sha256:" + hashlib.sha256(b"2").hexdigest()


def test_registry_killed_mid_upload_leaves_no_manifest(
    make_capsule: Any, oci_registry: Any, registry_proxy: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """SIGKILL of the registry during the third chunk: exit 3, no tag; after a restart one retry pushes exactly once."""
    cap = _capsule(make_capsule, registry_proxy.host, chunk_size=16384)
    art = str(_file(tmp_path, "big.zip", bytes(range(256)) * 400))
    patches = iter(range(1, 1000))
    registry_proxy.fault = lambda method, path: "kill" if method == "PATCH" and next(patches) == 3 else None
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-a", art)
    assert res.exit_code == 3, res.output
    assert res.stderr.strip().splitlines()[-1].startswith("error: oci: ")
    assert registry_proxy.count("PUT", "/manifests/") == 0

    registry_proxy.fault = None
    oci_registry.start()  # same port, same storage
    assert oci_registry.get("/v2/team/orders/manifests/1.2.0_build.7", accept=MANIFEST)[0] == 404
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-a", art, "--json")
    assert res.exit_code == 0, res.output
    assert registry_proxy.count("PUT", "/manifests/1.2.0_build.7", 201) == 1
    status, _, body = oci_registry.get("/v2/team/orders/tags/list")
    assert status == 200 and json.loads(body)["tags"] == ["1.2.0_build.7"]


def test_server_error_on_manifest_is_retried_once(
    make_capsule: Any, oci_registry: Any, registry_proxy: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A 500 on the manifest PUT is retried: one failed attempt, one stored manifest."""
    cap = _capsule(make_capsule, registry_proxy.host)
    art = str(_file(tmp_path, "a.zip", b"zip bytes"))
    failed: list[str] = []

    def fault(method: str, path: str) -> int | None:
        if method == "PUT" and "/manifests/" in path and not failed:
            failed.append(path)
            return 500
        return None

    registry_proxy.fault = fault
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-a", art)
    assert res.exit_code == 0, res.output
    assert "event=retry" in res.stderr
    assert registry_proxy.count("PUT", "/manifests/", 500) == 1
    assert registry_proxy.count("PUT", "/manifests/", 201) == 1


def _upload_sessions(registry: Any, repository: str) -> dict[str, list[str]]:
    """The upload sessions in the registry's storage for ``repository`` and their files: an open one
    has ``startedat`` and ``data``; a cancelled one nothing (distribution 2.8 may leave a hash state)."""
    uploads = registry.root / "storage" / "docker" / "registry" / "v2" / "repositories" / repository / "_uploads"
    ids = sorted(p for p in uploads.iterdir()) if uploads.is_dir() else []
    return {p.name: sorted(f.name for f in p.iterdir() if f.is_file()) for p in ids}


@pytest.mark.parametrize("delete", ["answered", "stalled"])
def test_terminated_push_cancels_its_upload_session(
    make_capsule: Any, oci_registry: Any, registry_proxy: Any, tmp_path: Path, delete: str
) -> None:
    """SIGTERM while a chunk is in flight: the upload session is DELETEd and the process exits 143,
    promptly even when the registry does not answer the DELETE (bounded by CANCEL_TIMEOUT, not ``timeout``)."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    cap = _capsule(make_capsule, registry_proxy.host, chunk_size=16384, timeout=60, retries=1)
    art = str(_file(tmp_path, "big.zip", bytes(range(256)) * 400))
    in_flight, release = threading.Event(), threading.Event()
    patches: list[int] = []

    def fault(method: str, path: str) -> str | None:
        if method == "PATCH":
            patches.append(1)
            if len(patches) == 2:  # the second chunk stalls and never reaches the registry
                in_flight.set()
                release.wait(30)
                return "kill"
        if method == "DELETE" and delete == "stalled":
            release.wait(30)
        return None

    registry_proxy.fault = fault
    registry_proxy.on_kill = None  # "kill" only drops the connection here
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "nodocker")}
    cmd = [sys.executable, "-c", "from qlcapsule.cli import run; run()", "deliver", str(cap.root), "-t", "reg"]
    proc = subprocess.Popen([*cmd, "-a", art], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert in_flight.wait(30), "the push never reached the second chunk"
        (session,) = _upload_sessions(oci_registry, "team/orders").items()
        assert session[1] == ["data", "startedat"]  # open
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=40)
        took = time.monotonic() - started
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert err.decode().strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    assert registry_proxy.count("PUT", "/manifests/") == 0
    if delete == "answered":
        assert registry_proxy.count("DELETE", f"/blobs/uploads/{session[0]}", 204) == 1
        assert _upload_sessions(oci_registry, "team/orders") in ({}, {session[0]: []})  # cancelled
        assert took < 10, f"exiting took {took:.1f} s"
    else:
        assert 4 < took < 15, f"exiting took {took:.1f} s (the cancel must give up after 5 s, not after 60)"


# -- credentials, token realms and plain_http (issue 16) ----------------------------------------


def _rd_deliver(make_capsule: Any, qlcapsule_cli: Any, tmp_path: Path, registry: str, **env: str) -> Any:
    """Deliver through an operator targets file (the target is the operator's, not the capsule's)."""
    opts = {"registry": registry, "repository": "team/{name}", "plain_http": True, "retries": 2}
    tmp_path.mkdir(parents=True, exist_ok=True)
    targets = tmp_path / "operator-targets.yaml"
    targets.write_text(f"targets:\n  reg:\n    provider: oci\n    options: {json.dumps(opts)}\n")
    cap = make_capsule({"app.py": "print('hi')\n"}, definition="name: orders\nversion: 1.2.0\n")
    env = {
        "QLCAPSULE_REGISTRY_USERNAME": "ci",
        "QLCAPSULE_REGISTRY_PASSWORD": CANARY_REGISTRY_PASSWORD,
        "QLCAPSULE_TARGETS_FILE": str(targets),
        **env,
    }
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "reg", "-f", "oci", env=env)
    assert "Traceback" not in res.output and "internal error" not in res.output
    return res


@pytest.mark.parametrize("allowed", ["", "other.invalid", "registry.invalid:5001"])
def test_plain_http_only_for_loopback_unless_the_operator_allows(
    allowed: str, make_capsule: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """plain_http to a non-loopback name is refused before any connection (a .invalid name never resolves)."""
    res = _rd_deliver(
        make_capsule, qlcapsule_cli, tmp_path, "registry.invalid:5000", QLCAPSULE_PLAIN_HTTP_HOSTS=allowed
    )
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        (
            "error: oci: plain_http is only for loopback registries and registry.invalid:5000 is not one; "
            "the operator may allow it with QLCAPSULE_PLAIN_HTTP_HOSTS=registry.invalid:5000"
        )
    ]
    assert "event=retry" not in res.stderr


def _token_registry(tmp_path: Path, realm: str) -> Any:
    """The real docker-registry with token auth whose realm is ``realm`` (no token is ever issued)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from fixtures_forge import RegistryServer

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qlcapsule-e2e-token-issuer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    bundle = tmp_path / "token-ca.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    class TokenRegistry(RegistryServer):
        def _config(self) -> Path:
            cfg = super()._config()
            extra = (
                f"auth:\n  token:\n    realm: {realm}\n    service: qlcapsule-e2e\n"
                f"    issuer: qlcapsule-e2e-token-issuer\n    rootcertbundle: {bundle}\n"
            )
            cfg.write_text(cfg.read_text() + extra)
            return cfg

    return TokenRegistry(tmp_path / "token-registry").start()


def test_token_realm_on_another_port_gets_nothing(make_capsule: Any, qlcapsule_cli: Any, tmp_path: Path) -> None:
    """The real registry names a token service on another port: refused, naming it; it receives nothing."""
    from faultproxy import Recorder

    far = Recorder(404)
    reg = _token_registry(tmp_path, f"http://127.0.0.1:{far.port}/token")
    try:
        res = _rd_deliver(make_capsule, qlcapsule_cli, tmp_path, reg.host)
        assert far.heard == []
        assert res.exit_code == 3, res.output
        errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
        assert errors == [
            (
                f"error: oci: registry {reg.host} sent its token service to another host (127.0.0.1:{far.port}); "
                f"not sending credentials there (the operator may allow it: QLCAPSULE_OCI_TOKEN_HOSTS=127.0.0.1:{far.port})"
            )
        ]
        # the operator's allow list is the only way: then the token service is asked (and the password sent)
        allowed = _rd_deliver(
            make_capsule,
            qlcapsule_cli,
            tmp_path / "allowed",
            reg.host,
            QLCAPSULE_OCI_TOKEN_HOSTS=f"127.0.0.1:{far.port}",
        )
        assert far.heard and far.heard[0].path.startswith("/token?")
        assert far.carried(CANARY_REGISTRY_PASSWORD) == []  # Basic: base64, checked below
        assert far.carried(base64.b64encode(f"ci:{CANARY_REGISTRY_PASSWORD}".encode()).decode())
        assert allowed.exit_code != 0
    finally:
        reg.stop()
        far.stop()


def test_token_realm_over_plain_http_needs_a_loopback_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """An allowed realm host that is not loopback still needs https (checked before any connection)."""
    from qlcapsule.resilience import RedirectRefused
    from qlcapsule_plugins.deliverers.oci import RegistryClient

    monkeypatch.setenv("QLCAPSULE_OCI_TOKEN_HOSTS", "auth.invalid")
    client = RegistryClient("127.0.0.1:5000", plain_http=True, timeout=1, creds=("ci", CANARY_REGISTRY_PASSWORD))
    with pytest.raises(RedirectRefused, match=r"token service auth\.invalid:80 is plain http"):
        client._check_realm("http://auth.invalid/token")
    client._check_realm("https://auth.invalid/token")
    client._check_realm("http://127.0.0.1:5000/token")
    with pytest.raises(RedirectRefused, match=r"another host \(127\.0\.0\.1:5001\)"):
        client._check_realm("http://127.0.0.1:5001/token")


def test_a_capsule_defined_oci_target_is_refused(make_capsule: Any, qlcapsule_cli: Any, monkeypatch: Any) -> None:
    """The registry password never goes to a registry a pull request's capsule.yaml names."""
    from faultproxy import Recorder

    monkeypatch.setenv("QLCAPSULE_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("QLCAPSULE_REGISTRY_PASSWORD", CANARY_REGISTRY_PASSWORD)
    far = Recorder(401)
    try:
        opts = {"registry": far.url.removeprefix("http://"), "repository": "team/x", "plain_http": True}
        cap = make_capsule(
            {"app.py": "print('hi')\n"},
            definition=f"name: orders\nversion: 1.0.0\ntargets:\n  reg:\n    provider: oci\n    options: {json.dumps(opts)}\n",
        )
        basic = base64.b64encode(f"ci:{CANARY_REGISTRY_PASSWORD}".encode()).decode()
        assert_capsule_target_refused(qlcapsule_cli, cap.root, "reg", far, (CANARY_REGISTRY_PASSWORD, basic))
    finally:
        far.stop()
