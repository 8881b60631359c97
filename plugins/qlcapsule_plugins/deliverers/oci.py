"""Deliver to an OCI registry (distribution spec v1.1), Helm-chart compatible.

What is pushed, per artifact (``mode: auto`` decides by content):

- an **OCI image layout** tarball (the ``oci`` export): its blobs and manifest(s),
  byte for byte, tagged ``tag``;
- a **Helm chart** (``.tgz`` with ``<chart>/Chart.yaml``, the ``helm`` export): to
  ``<repository>/<chart name>:<chart version>`` with config media type
  ``application/vnd.cncf.helm.config.v1+json`` and layer
  ``application/vnd.cncf.helm.chart.content.v1.tar+gzip``, as ``helm push`` does,
  so ``helm pull oci://REGISTRY/REPOSITORY/CHART --version V`` works;
- **anything else** (zip, tar.gz, ...): one OCI artifact manifest (``artifactType``
  ``application/vnd.qlcapsule.capsule.v1``, empty config) with each file as a
  layer titled with its name, as ``oras push`` does.

Protocol: ``HEAD`` skips blobs the registry already has; a blob is uploaded with
``POST`` + ``PUT ?digest=`` (or chunked ``PATCH`` with ``Content-Range`` above
``chunk_size``), a failed or interrupted (Ctrl-C, SIGTERM) upload session is
cancelled with one ``DELETE`` bounded by :data:`CANCEL_TIMEOUT`; the
manifest is only ``PUT`` (with its exact bytes) after every blob is there, so a
failure never leaves a tag pointing at missing data. The registry's
``Docker-Content-Digest`` must equal the digest computed locally, and the manifest
is read back by digest before a receipt is returned.

Credentials: ``QLCAPSULE_REGISTRY_USERNAME`` + ``QLCAPSULE_REGISTRY_PASSWORD``, or
the ``auths`` entry for the registry in the docker config (``$DOCKER_CONFIG/config.json``
or ``~/.docker/config.json``, as written by ``docker login``/``helm registry login``;
credential helpers are not run). Both basic and bearer-token (``WWW-Authenticate:
Bearer realm=...``) challenges are answered.

Where the credentials may go is the operator's decision, never the registry's or
the capsule's: the bearer ``realm`` must be on the registry's own host and port, or
on a host listed in ``QLCAPSULE_OCI_TOKEN_HOSTS``, and use https unless it is a
loopback host; ``plain_http`` is only for loopback registries or hosts listed in
``QLCAPSULE_PLAIN_HTTP_HOSTS``. Upload locations must stay on the registry's origin,
and redirects are not followed (:func:`qlcapsule.resilience.check_redirect` names
the target and refuses).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.client
import io
import json
import os
import re
import tarfile
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import Field, field_validator

from qlcapsule import (
    Artifact,
    Capsule,
    ConflictError,
    CredentialsError,
    Deliverer,
    Expandable,
    InputError,
    IntegrityError,
    Options,
    OptionsError,
    Receipt,
    RedirectRefused,
    Register,
    RemoteError,
    TransientError,
    check_redirect,
    get_logger,
    hookimpl,
    is_loopback,
    operator_allows,
    origin,
    read_secret,
    redact,
    retry,
    scrub_error,
)

log = get_logger("qlcapsule.deliverers.oci")

#: operator-only allow lists (comma-separated host[:port]); a capsule cannot set them
TOKEN_HOSTS_ENV = "QLCAPSULE_OCI_TOKEN_HOSTS"
PLAIN_HTTP_ENV = "QLCAPSULE_PLAIN_HTTP_HOSTS"

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
HELM_CONFIG_TYPE = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
ARTIFACT_TYPE = "application/vnd.qlcapsule.capsule.v1"
#: seconds to wait for the DELETE that cancels an upload session (after a failure or Ctrl-C / SIGTERM)
CANCEL_TIMEOUT = 5.0
_ACCEPT = ", ".join([MANIFEST_TYPE, INDEX_TYPE, "application/vnd.docker.distribution.manifest.v2+json"])
# \Z: "$" would accept a final newline
_REPO = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*\Z")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")


def _oci_tag(value: str) -> str:
    return value.replace("+", "_")  # SemVer build metadata is not allowed in tags (Helm does the same)


class OciOptions(Options):
    registry: str = Field(pattern=r"^[A-Za-z0-9.-]+(:\d{1,5})?$", description="host[:port], e.g. ghcr.io")
    repository: Expandable = Field(description="e.g. team/{name}; lowercase; Helm charts go to <repository>/<chart>")
    tag: Expandable = Field(default="{version}", description="tag of the pushed manifest ('+' becomes '_')")
    mode: Literal["auto", "layout", "helm", "artifact"] = "auto"
    artifact_type: str = Field(default=ARTIFACT_TYPE, pattern=r"^[a-z0-9.+/-]+$")
    plain_http: bool = Field(
        default=False, description=f"talk HTTP instead of HTTPS: loopback registries, or hosts in {PLAIN_HTTP_ENV}"
    )
    overwrite: bool = Field(default=False, description="move an existing tag that points at other content")
    chunk_size: int = Field(default=8 << 20, ge=1024, le=1 << 30, description="blobs above this go in PATCH chunks")
    timeout: float = Field(default=60.0, gt=0, le=600, description="seconds per request")
    retries: int = Field(default=4, ge=1, le=10, description="attempts per step on transient errors")

    @field_validator("repository")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not _REPO.match(v.replace("{name}", "n").replace("{version}", "1")):
            raise ValueError(f"{v!r} is not a valid repository name (lowercase [a-z0-9._-] path components)")
        return v

    @field_validator("tag")
    @classmethod
    def _tag(cls, v: str) -> str:
        if not _TAG.match(_oci_tag(v.replace("{name}", "n").replace("{version}", "1.0.0"))):
            raise ValueError(f"{v!r} is not a valid tag ([A-Za-z0-9_][A-Za-z0-9._-], at most 128 characters)")
        return v


# -- what to push ---------------------------------------------------------------

Opener = Callable[[], "contextlib.AbstractContextManager[IO[bytes]]"]


@dataclass
class Blob:
    digest: str
    size: int
    open: Opener


@dataclass
class Push:
    """One manifest to push: its blobs first, then the manifest bytes under ``tag``."""

    repository: str
    tag: str
    manifest: bytes
    media_type: str
    blobs: list[Blob]
    artifacts: list[Artifact]
    kind: str
    children: list[tuple[bytes, str]] = field(default_factory=list)  # manifests an index refers to

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def _bytes_blob(data: bytes) -> Blob:
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), lambda: io.BytesIO(data))


def _file_blob(art: Artifact) -> Blob:
    return Blob("sha256:" + art.sha256, art.size, lambda: open(art.path, "rb"))  # noqa: SIM115


def _members(path: Path) -> dict[str, Any] | None:
    if path.is_dir():  # an ``oci-dir`` export: the layout as a directory
        return {p.relative_to(path).as_posix(): p for p in path.rglob("*") if p.is_file() and not p.is_symlink()}
    try:
        with tarfile.open(path, "r:*") as tf:
            return {m.name.removeprefix("./"): m for m in tf.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError):
        return None


def classify(art: Artifact) -> str:
    """``layout``, ``helm`` or ``artifact``, by the file's content."""
    members = _members(art.path)
    if members is None:
        return "artifact"
    if "oci-layout" in members and "index.json" in members:
        return "layout"
    if any(re.fullmatch(r"[^/]+/Chart\.yaml", n) for n in members):
        return "helm"
    return "artifact"


@contextlib.contextmanager
def _member(path: Path, name: str) -> Iterator[IO[bytes]]:
    if path.is_dir():
        with open(path / name, "rb") as fh:
            yield fh
        return
    with tarfile.open(path, "r:*") as tf:
        f = tf.extractfile(tf.getmember(name if name in tf.getnames() else f"./{name}"))
        assert f is not None
        yield f


def _read_member(path: Path, name: str, limit: int = 16 << 20) -> bytes:
    with _member(path, name) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{path}: {name} is larger than {limit} bytes")
    return data


def layout_push(art: Artifact, repository: str, tag: str) -> Push:
    """The manifest (or index) and blobs of an OCI image layout tarball."""
    members = _members(art.path) or {}
    try:
        index = json.loads(_read_member(art.path, "index.json"))
        descs = index["manifests"]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{art.path}: index.json is not an OCI image index") from None
    if not descs:
        raise InputError(f"{art.path}: index.json lists no manifest")

    def blob_name(digest: str) -> str:
        algo, _, hexd = digest.partition(":")
        name = f"blobs/{algo}/{hexd}"
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexd) or name not in members:
            raise InputError(f"{art.path}: blob {digest} is missing from the layout")
        return name

    blobs: dict[str, Blob] = {}
    manifests: list[tuple[bytes, str]] = []
    for desc in descs:
        raw = _read_member(art.path, blob_name(desc["digest"]))
        if "sha256:" + hashlib.sha256(raw).hexdigest() != desc["digest"]:
            raise IntegrityError(f"{art.path}: manifest {desc['digest']} does not match its digest")
        doc = json.loads(raw)
        mtype = doc.get("mediaType") or desc.get("mediaType") or MANIFEST_TYPE
        if mtype == INDEX_TYPE:
            raise InputError(f"{art.path}: nested image indexes are not supported")
        for d in [doc["config"], *doc.get("layers", [])]:
            name = blob_name(d["digest"])
            blobs[d["digest"]] = Blob(d["digest"], int(d["size"]), functools.partial(_member, art.path, name))
        manifests.append((raw, mtype))
    if len(manifests) == 1:
        raw, mtype = manifests[0]
        return Push(repository, tag, raw, mtype, list(blobs.values()), [art], "layout")
    raw_index = _read_member(art.path, "index.json")
    return Push(repository, tag, raw_index, INDEX_TYPE, list(blobs.values()), [art], "layout", children=manifests)


def helm_push(art: Artifact, repository: str) -> Push:
    """The chart pushed the way ``helm push`` does."""
    from qlcapsule import yamlsrc  # noqa: PLC0415 -- start-up: yaml loads only for a helm push

    members = _members(art.path) or {}
    chart_yaml = next(n for n in members if re.fullmatch(r"[^/]+/Chart\.yaml", n))
    raw = _read_member(art.path, chart_yaml)
    try:
        meta = yamlsrc.safe_load(raw.decode("utf-8"), chart_yaml)
        name, version = str(meta["name"]), str(meta["version"])
    except (InputError, UnicodeDecodeError, KeyError, TypeError):
        raise InputError(f"{art.path}: {chart_yaml} has no chart name and version") from None
    config = json.dumps({k: v for k, v in meta.items() if v is not None}, separators=(",", ":"), default=str).encode()
    cfg = _bytes_blob(config)
    layer = _file_blob(art)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": HELM_CONFIG_TYPE, "digest": cfg.digest, "size": cfg.size},
        "layers": [{"mediaType": HELM_LAYER_TYPE, "digest": layer.digest, "size": layer.size}],
        "annotations": {
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": version,
            **({"org.opencontainers.image.description": str(meta["description"])} if meta.get("description") else {}),
        },
    }
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    return Push(f"{repository}/{name}", _oci_tag(version), raw, MANIFEST_TYPE, [cfg, layer], [art], "helm")


def artifact_push(arts: Sequence[Artifact], capsule: Capsule, repository: str, tag: str, artifact_type: str) -> Push:
    """One OCI artifact manifest with every file as a titled layer (``oras push`` style)."""
    empty = _bytes_blob(EMPTY_BLOB)
    layers = [_file_blob(a) for a in arts]
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_TYPE, "digest": empty.digest, "size": empty.size},
        "layers": [
            {
                "mediaType": a.media_type,
                "digest": b.digest,
                "size": b.size,
                "annotations": {"org.opencontainers.image.title": a.name},
            }
            for a, b in zip(arts, layers, strict=True)
        ],
        "annotations": {
            "org.opencontainers.image.title": capsule.name,
            "org.opencontainers.image.version": capsule.version,
            "dev.qlcapsule.capsule.digest": f"sha256:{capsule.digest}",
        },
    }
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    return Push(repository, tag, raw, MANIFEST_TYPE, [empty, *layers], list(arts), "artifact")


# -- credentials --------------------------------------------------------------------


def registry_credentials(registry: str) -> tuple[str, str] | None:
    """(user, password) from the environment, else from the docker config; both registered for redaction."""
    user = os.environ.get("QLCAPSULE_REGISTRY_USERNAME")
    password = read_secret("QLCAPSULE_REGISTRY_PASSWORD", required=False)
    if user or password:
        if not (user and password):
            missing = "QLCAPSULE_REGISTRY_PASSWORD" if user else "QLCAPSULE_REGISTRY_USERNAME"
            raise CredentialsError(
                f"missing credential: environment variable {missing} is not set (registry {registry})"
            )
        return user, password
    cfg_dir = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    cfg = Path(cfg_dir) / "config.json"
    if not cfg.is_file():
        return None
    try:
        auths = json.loads(cfg.read_text(encoding="utf-8")).get("auths") or {}
    except (ValueError, OSError) as exc:
        raise CredentialsError(f"{cfg}: not readable docker config JSON ({type(exc).__name__})") from None
    for key, entry in auths.items():
        host = re.sub(r"^https?://", "", key).split("/", 1)[0]
        if host != registry or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            redact(entry["auth"])
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                raise CredentialsError(f"{cfg}: auths.{key}.auth is not base64 of user:password") from None
        else:
            user, password = entry.get("username", ""), entry.get("password", "")
        if user and password:
            redact(password)
            return user, password
    return None


# -- the registry client ----------------------------------------------------------------


class RegistryClient:
    """A small OCI distribution client: one connection per request, auth challenges answered."""

    def __init__(self, registry: str, *, plain_http: bool, timeout: float, creds: tuple[str, str] | None) -> None:
        self.registry = registry
        self.scheme = "http" if plain_http else "https"
        self.timeout = timeout
        self.creds = creds
        self._auth: str | None = None
        self._scope = ""

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.registry}"

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        _retried: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:
        full = url if "://" in url else self.base + url
        parts = urllib.parse.urlsplit(full)
        try:
            same = origin(full) == origin(self.base)
        except ValueError:
            same = False
        if not same:  # an upload Location the registry chose: the credentials stay on its origin
            raise RedirectRefused(f"oci: the registry sent us to another host ({parts.netloc}); refusing")
        hdrs = dict(headers or {})
        if self._auth:
            hdrs["Authorization"] = self._auth
        cls = http.client.HTTPConnection if self.scheme == "http" else http.client.HTTPSConnection
        conn = cls(parts.netloc, timeout=timeout or self.timeout)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(method, target, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            status, rh = resp.status, {k.lower(): v for k, v in resp.getheaders()}
        except (OSError, http.client.HTTPException) as exc:
            raise TransientError(
                f"oci: {method} {self.registry}{parts.path}: {scrub_error(exc) or type(exc).__name__}"
            ) from None
        finally:
            conn.close()
        if 300 <= status < 400 and status != 304:
            what = f"oci: {method} {parts.path}"
            target, _ = check_redirect(method, status, full, rh.get("location"), what=what)
            raise RedirectRefused(
                f"{what}: the registry redirected to {_origin_text(target)}; redirects are not followed"
            )
        if status == 401 and not _retried:
            self._answer(rh.get("www-authenticate", ""))
            seek = getattr(body, "seek", None)  # a stream is sent again from its start
            if seek is not None:
                seek(0)
            return self.request(method, url, body=body, headers=headers, timeout=timeout, _retried=True)
        if status == 401:
            raise CredentialsError(f"oci: registry {self.registry} rejected the credentials (401)")
        if status == 403:
            raise CredentialsError(f"oci: registry {self.registry} denied {method} {parts.path} (403)")
        if status == 429 or status >= 500:
            raise TransientError(f"oci: {method} {parts.path}: {status} {_registry_error(data)}".strip())
        return status, rh, data

    def _answer(self, challenge: str) -> None:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.creds:
                raise CredentialsError(
                    f"missing credential: registry {self.registry} needs a login; set QLCAPSULE_REGISTRY_USERNAME and "
                    "QLCAPSULE_REGISTRY_PASSWORD (or run docker login)"
                )
            self._auth = "Basic " + base64.b64encode(f"{self.creds[0]}:{self.creds[1]}".encode()).decode()
            redact(self._auth.split(" ", 1)[1])
            return
        if scheme.lower() == "bearer":
            self._auth = "Bearer " + self._token(dict(re.findall(r'(\w+)="([^"]*)"', params)))
            return
        raise RemoteError(f"oci: registry {self.registry} asked for unsupported auth {scheme or '(none)'!r}")

    def _token(self, params: dict[str, str]) -> str:
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RemoteError(f"oci: registry {self.registry} sent a bearer challenge without a realm")
        self._check_realm(realm)
        query = {"service": params.get("service", "")}
        scope = params.get("scope") or self._scope
        if scope:
            query["scope"] = scope
        parts = urllib.parse.urlsplit(realm)
        hdrs = {}
        if self.creds:
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{self.creds[0]}:{self.creds[1]}".encode()).decode()
        cls = http.client.HTTPConnection if parts.scheme == "http" else http.client.HTTPSConnection
        conn = cls(parts.netloc, timeout=self.timeout)
        try:
            conn.request("GET", parts.path + "?" + urllib.parse.urlencode(query), headers=hdrs)
            resp = conn.getresponse()
            data, status = resp.read(), resp.status
        except (OSError, http.client.HTTPException) as exc:
            raise TransientError(f"oci: token service {parts.netloc}: {scrub_error(exc)}") from None
        finally:
            conn.close()
        if status in (401, 403):
            if not self.creds:
                raise CredentialsError(
                    f"missing credential: registry {self.registry} needs a login; set QLCAPSULE_REGISTRY_USERNAME and "
                    "QLCAPSULE_REGISTRY_PASSWORD (or run docker login)"
                )
            raise CredentialsError(f"oci: token service {parts.netloc} rejected the credentials ({status})")
        if status != 200:
            raise TransientError(f"oci: token service {parts.netloc} answered {status}")
        try:
            doc = json.loads(data)
            token = doc.get("token") or doc.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise RemoteError(f"oci: token service {parts.netloc} returned no token")
        redact(token)
        return str(token)

    def _check_realm(self, realm: str) -> None:
        """The token service gets the password only on the registry's host or one the operator allows."""
        try:
            scheme, host, port = origin(realm)
        except ValueError:
            raise RemoteError(f"oci: registry {self.registry} sent an unusable bearer realm") from None
        _, reg_host, reg_port = origin(self.base)
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if (host, port) != (reg_host, reg_port) and not operator_allows(TOKEN_HOSTS_ENV, host, port):
            raise RedirectRefused(
                f"oci: registry {self.registry} sent its token service to another host ({shown}); not sending "
                f"credentials there (the operator may allow it: {TOKEN_HOSTS_ENV}={shown})"
            )
        if scheme != "https" and not is_loopback(host):
            raise RedirectRefused(
                f"oci: the token service {shown} is plain http; credentials go only over https or to a loopback host"
            )

    def use_repository(self, repository: str) -> None:
        """Ask bearer token services for push and pull on ``repository`` from now on."""
        if self._scope != f"repository:{repository}:pull,push":
            self._scope = f"repository:{repository}:pull,push"
            if self._auth and self._auth.startswith("Bearer "):
                self._auth = None  # a token is scoped to one repository


def _origin_text(url: str) -> str:
    scheme, host, port = origin(url)
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def check_plain_http(registry: str) -> None:
    """``plain_http`` only for a loopback registry or one the operator lists in ``QLCAPSULE_PLAIN_HTTP_HOSTS``."""
    _, host, port = origin(f"http://{registry}")
    if not is_loopback(host) and not operator_allows(PLAIN_HTTP_ENV, host, port):
        raise OptionsError(
            f"oci: plain_http is only for loopback registries and {registry} is not one; "
            f"the operator may allow it with {PLAIN_HTTP_ENV}={registry}"
        )


def _registry_error(data: bytes) -> str:
    try:
        errs = json.loads(data).get("errors") or []
        return "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errs)
    except (ValueError, AttributeError):
        return ""


# -- pushing -------------------------------------------------------------------------


class OciDeliverer(Deliverer):
    name = "oci"
    description = "push the OCI export, a Helm chart, or any file as an OCI artifact to a registry"
    Options = OciOptions

    options: OciOptions
    accepts_directories = True  # the ``oci-dir`` export

    def _names(self, capsule: Capsule) -> tuple[str, str]:
        repository, tag = capsule.expand(self.options.repository), _oci_tag(capsule.expand(self.options.tag))
        if not _REPO.match(repository):
            raise InputError(f"oci: repository {repository!r} is not a valid repository name")
        if not _TAG.match(tag):
            raise InputError(f"oci: tag {tag!r} is not a valid tag")
        return repository, tag

    def _client(self) -> RegistryClient:
        if self.options.plain_http:  # before credentials are read or anything is sent
            check_plain_http(self.options.registry)
        creds = registry_credentials(self.options.registry)
        return RegistryClient(
            self.options.registry, plain_http=self.options.plain_http, timeout=self.options.timeout, creds=creds
        )

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        return retry(fn, attempts=self.options.retries, what=f"oci {what}")

    _where: str = ""

    def describe(self, capsule: Capsule, artifact: Artifact) -> str:
        return f"{self._where} ({artifact.name})"

    def check(self, capsule: Capsule) -> None:
        repository, tag = self._names(capsule)
        self._where = f"oci://{self.options.registry}/{repository}:{tag}"
        client = self._client()
        client.use_repository(repository)
        status, _, _ = self._retry("ping", lambda: client.request("GET", "/v2/"))
        if status != 200:
            raise RemoteError(f"oci: {self.options.registry} is not an OCI registry (GET /v2/ answered {status})")

    def plan(self, capsule: Capsule, artifacts: Sequence[Artifact]) -> list[Push]:
        repository, tag = self._names(capsule)
        kinds = {id(a): self.options.mode if self.options.mode != "auto" else classify(a) for a in artifacts}
        pushes: list[Push] = []
        generic = [a for a in artifacts if kinds[id(a)] == "artifact"]
        for a in artifacts:
            if kinds[id(a)] == "layout":
                pushes.append(layout_push(a, repository, tag))
            elif kinds[id(a)] == "helm":
                pushes.append(helm_push(a, repository))
        if generic:
            pushes.append(artifact_push(generic, capsule, repository, tag, self.options.artifact_type))
        seen: dict[str, str] = {}
        for p in pushes:
            ref = f"{p.repository}:{p.tag}"
            if ref in seen:
                raise InputError(
                    f"oci: {seen[ref]} and {p.artifacts[0].name} would both be tagged {ref}; "
                    "deliver them to separate targets (targets.<name>.formats)"
                )
            seen[ref] = p.artifacts[0].name
        return pushes

    def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
        pushes = self.plan(capsule, artifacts)
        client = self._client()
        receipts = []
        for p in pushes:
            client.use_repository(p.repository)
            uploaded = sum(self._push_blob(client, p.repository, b) for b in p.blobs)
            for raw, mtype in p.children:
                self._push_manifest(client, p.repository, "sha256:" + hashlib.sha256(raw).hexdigest(), raw, mtype)
            existing = self._push_manifest(client, p.repository, p.tag, p.manifest, p.media_type)
            self._read_back(client, p)
            where = f"oci://{self.options.registry}/{p.repository}:{p.tag}@{p.digest}"
            for a in p.artifacts:
                url = f"{client.base}/v2/{p.repository}/manifests/{p.digest}"
                if p.kind != "layout":
                    url = f"{client.base}/v2/{p.repository}/blobs/sha256:{a.sha256}"
                receipts.append(
                    Receipt(
                        provider=self.name,
                        target=target,
                        location=where,
                        sha256=a.sha256,
                        size=a.size,
                        url=url,
                        extra={
                            "kind": p.kind,
                            "repository": p.repository,
                            "tag": p.tag,
                            "manifest_digest": p.digest,
                            "media_type": p.media_type,
                            "blobs_uploaded": uploaded,
                            "blobs_existing": len(p.blobs) - uploaded,
                            "existing": existing,
                        },
                    )
                )
        return receipts

    def _blob_there(self, client: RegistryClient, repo: str, blob: Blob) -> bool:
        status, headers, _ = self._retry(
            "blob check", lambda: client.request("HEAD", f"/v2/{repo}/blobs/{blob.digest}")
        )
        if status == 200:
            size = headers.get("content-length")
            return size is None or int(size) == blob.size
        if status == 404:
            return False
        raise RemoteError(f"oci: HEAD blob {blob.digest[:19]} answered {status}")

    def _push_blob(self, client: RegistryClient, repo: str, blob: Blob) -> bool:
        """Upload ``blob`` unless the registry has it; True when uploaded."""
        if self._blob_there(client, repo, blob):
            return False
        self._retry(f"blob upload {blob.digest[:19]}", lambda: self._upload(client, repo, blob))
        return True

    def _upload(self, client: RegistryClient, repo: str, blob: Blob) -> None:
        status, headers, data = client.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
        if status != 202 or "location" not in headers:
            raise RemoteError(f"oci: starting an upload to {repo} answered {status} {_registry_error(data)}".strip())
        location = headers["location"]
        try:
            with blob.open() as f:
                if blob.size <= self.options.chunk_size:
                    location = self._put(client, location, blob, body=f, length=blob.size)
                else:
                    offset = 0
                    while offset < blob.size:
                        chunk = f.read(min(self.options.chunk_size, blob.size - offset))
                        if not chunk:
                            raise InputError(f"oci: blob {blob.digest[:19]} is shorter than its size {blob.size}")
                        end = offset + len(chunk) - 1
                        status, headers, data = client.request(
                            "PATCH",
                            location,
                            body=chunk,
                            headers={
                                "Content-Type": "application/octet-stream",
                                "Content-Length": str(len(chunk)),
                                "Content-Range": f"{offset}-{end}",
                            },
                        )
                        if status != 202:
                            raise RemoteError(
                                f"oci: chunk {offset}-{end} answered {status} {_registry_error(data)}".strip()
                            )
                        location = headers.get("location", location)
                        offset = end + 1
                    self._put(client, location, blob, body=b"", length=0)
        except BaseException:  # also Ctrl-C and SIGTERM (Terminated): never leave the session open
            self._cancel(client, location)
            raise

    def _put(self, client: RegistryClient, location: str, blob: Blob, *, body: Any, length: int) -> str:
        sep = "&" if "?" in location else "?"
        status, headers, data = client.request(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(blob.digest)}",
            body=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
        )
        if status == 400 and b"DIGEST_INVALID" in data:
            raise IntegrityError(f"oci: the registry computed another digest than {blob.digest} (upload corrupted)")
        if status != 201:
            raise RemoteError(
                f"oci: finishing blob {blob.digest[:19]} answered {status} {_registry_error(data)}".strip()
            )
        got = headers.get("docker-content-digest")
        if got and got != blob.digest:
            raise IntegrityError(f"oci: registry stored blob {got}, expected {blob.digest}")
        return location

    def _cancel(self, client: RegistryClient, location: str) -> None:
        """DELETE the upload session, once, within :data:`CANCEL_TIMEOUT` seconds.

        Best effort: a dead or stalled registry cannot be told (its session expires on
        its own), and an interrupted command must still exit promptly. Never raises, so
        the error (or the Ctrl-C / SIGTERM) that got us here is the one reported.
        """
        try:
            status, _, data = client.request("DELETE", location, timeout=min(CANCEL_TIMEOUT, self.options.timeout))
        except Exception as exc:  # noqa: BLE001 - must not replace the original error
            log.info("could not cancel the upload session: %s", scrub_error(exc))
            return
        if status not in (202, 204, 404):
            log.info("cancelling the upload session answered %s %s", status, _registry_error(data))

    def _push_manifest(self, client: RegistryClient, repo: str, ref: str, raw: bytes, mtype: str) -> bool:
        """PUT the manifest under ``ref``; True when it was already there. Refuses to move a tag unless asked."""
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        status, headers, _ = self._retry(
            "manifest check", lambda: client.request("HEAD", f"/v2/{repo}/manifests/{ref}", headers={"Accept": _ACCEPT})
        )
        if status == 200:
            current = headers.get("docker-content-digest")
            if current == digest:
                return True
            if not self.options.overwrite and ref != digest:
                raise ConflictError(
                    f"oci: {self.options.registry}/{repo}:{ref} already points at {current or 'other content'}; "
                    "bump the version or set 'overwrite: true'"
                )

        def put() -> None:
            status, headers, data = client.request(
                "PUT",
                f"/v2/{repo}/manifests/{ref}",
                body=raw,
                headers={"Content-Type": mtype, "Content-Length": str(len(raw))},
            )
            if status != 201:
                raise RemoteError(f"oci: manifest {repo}:{ref} answered {status} {_registry_error(data)}".strip())
            if headers.get("docker-content-digest", digest) != digest:
                raise IntegrityError(
                    f"oci: registry stored manifest {headers['docker-content-digest']}, expected {digest}"
                )

        self._retry(f"manifest {ref}", put)
        return False

    def _read_back(self, client: RegistryClient, p: Push) -> None:
        status, _, data = self._retry(
            "read back",
            lambda: client.request("GET", f"/v2/{p.repository}/manifests/{p.digest}", headers={"Accept": p.media_type}),
        )
        if status != 200 or "sha256:" + hashlib.sha256(data).hexdigest() != p.digest:
            raise IntegrityError(f"oci: manifest {p.digest} does not read back from {p.repository} ({status})")
        for b in p.blobs:
            if not self._blob_there(client, p.repository, b):
                raise IntegrityError(f"oci: blob {b.digest} is missing from {p.repository} after the push")


@hookimpl
def qlcapsule_register_deliverers(register: Register) -> None:
    register(OciDeliverer)
