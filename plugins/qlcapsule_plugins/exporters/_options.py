"""The option models of the built-in exporters: each exporter's ``Options`` is its model here, validated once."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from qlcapsule import Options

from . import _k8s as k8s


def check_prefix(v: str) -> str:
    """A prefix is empty or a relative directory path ending in '/'."""
    if v == "":
        return v
    if not v.endswith("/") or v.startswith("/") or "\\" in v or any(p in ("", ".", "..") for p in v[:-1].split("/")):
        raise ValueError("must be a relative directory ending in '/', like 'orders-1.0.0/'")
    return v


class TarOptions(Options):
    level: int | None = Field(
        default=None, description="compression level (gzip 1-9, default 6; xz 0-9, default 6; zstd 1-22, default 3)"
    )
    prefix: str = Field(default="", description="directory every entry is put under, e.g. 'orders-1.0.0/'")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return check_prefix(v)

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, v: object) -> object:
        return None if v == "" else v  # "--option level=": the format's default (over capsule.yaml's)


class ZipOptions(Options):
    level: int = Field(default=6, ge=1, le=9, description="deflate level for compressible files (1-9)")
    prefix: str = Field(default="", description="directory every entry is put under, e.g. 'orders-1.0.0/'")
    workers: int | None = Field(default=None, ge=1, le=64, description="compression threads (default: CPU count)")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return check_prefix(v)


def _default_resources() -> dict[str, dict[str, str]]:
    return {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}


def _merge_resources(v: object) -> object:
    """Given requests/limits go over the defaults key by key; an empty value drops a default."""
    if not isinstance(v, dict):
        return v  # pydantic names the type error
    merged = _default_resources()
    for kind, given in v.items():
        if kind not in merged:
            raise ValueError(f"unknown key {kind!r} (use requests, limits)")
        if not isinstance(given, dict):
            return v
        for res, quantity in given.items():
            if quantity in ("", None):
                merged[kind].pop(res, None)
            else:
                merged[kind][res] = quantity
    return merged


def _like(pattern: str, what: str, max_length: int = 255) -> AfterValidator:
    """A string matching ``pattern``; else a message saying what was expected (not the regex)."""
    rx = re.compile(pattern)

    def check(v: str) -> str:
        if len(v) > max_length or not rx.match(v) or "\n" in v:
            raise ValueError(f"{v!r} is not {what}")
        return v

    return AfterValidator(check)


Image = Annotated[str, _like(k8s.IMAGE, "an image repository like 'ghcr.io/org/name' (no tag)")]
ImageRef = Annotated[str, _like(k8s.IMAGE_REF, "an image reference like 'python:3.12-slim'")]
Tag = Annotated[str, _like(k8s.TAG, "an image tag (letters, digits, '_', '.', '-'; at most 128)", 128)]
Host = Annotated[str, _like(f"^$|{k8s.HOST}", "empty or a DNS host name like 'orders.example.com'", 253)]
IngressClass = Annotated[str, _like(f"^$|{k8s.SUBDOMAIN}", "empty or a DNS-1123 name like 'nginx'", 253)]
Namespace = Annotated[str, _like(k8s.LABEL, "a Kubernetes namespace (lower-case DNS-1123 label)", 63)]
EnvName = Annotated[str, _like(k8s.ENV_NAME, "an environment variable name")]
AbsPath = Annotated[str, _like(k8s.ABS_PATH, "an absolute path without spaces or quotes")]
HttpPath = Annotated[str, _like(f"^$|{k8s.ABS_PATH}", "empty or an absolute URL path like '/healthz'")]
SecretName = Annotated[str, _like(k8s.SUBDOMAIN, "a Secret's name (a DNS-1123 name like 'orders-db')", 253)]
SecretKeyRef = Annotated[str, _like(k8s.SECRET_KEY_REF, "SECRET/KEY, a Secret's name and one of its keys", 507)]
Resources = dict[
    Annotated[str, _like(k8s.RESOURCE, "a resource name like 'cpu' or 'memory'")],
    Annotated[str, _like(k8s.QUANTITY, "a Kubernetes quantity like '500m' or '256Mi'", 64)],
]


class HelmOptions(Options):
    image: Image | None = Field(default=None, description="image repository (default: the capsule name)")
    tag: Tag | None = Field(default=None, description="image tag (default: the capsule version)")
    port: int = Field(default=8000, ge=1, le=65535, description="container and service port")
    replicas: int = Field(default=1, ge=0, description="replicaCount")
    resources: dict[str, Resources] = Field(
        default_factory=_default_resources,
        description="requests/limits, merged over the defaults (an empty value drops one)",
    )
    env: dict[EnvName, str] = Field(default_factory=dict, description="environment variables of the container")
    service_type: str = Field(
        default="ClusterIP", pattern="^(ClusterIP|NodePort|LoadBalancer)$", description="service.type of the chart"
    )
    ingress_host: Host = Field(default="", description="when set, the Ingress is enabled for this host")
    ingress_class: IngressClass = Field(default="", description="ingressClassName of the Ingress (with ingress_host)")
    ingress_tls_secret: Annotated[str, _like(f"^$|{k8s.SUBDOMAIN}", "empty or a Secret's name", 253)] = Field(
        default="", description="Secret holding the Ingress host's TLS certificate (empty: no TLS section)"
    )
    env_secrets: dict[EnvName, SecretKeyRef] = Field(
        default_factory=dict, description="environment variables read from Secrets: NAME -> SECRET/KEY"
    )
    secret_mounts: dict[AbsPath, SecretName] = Field(
        default_factory=dict, description="Secrets mounted read-only as directories: PATH -> SECRET"
    )
    liveness_path: HttpPath = Field(default="", description="HTTP path of the liveness probe (empty: none)")
    readiness_path: HttpPath = Field(default="", description="HTTP path of the readiness probe (empty: none)")
    run_as_user: int | None = Field(
        default=None,
        ge=1,
        le=2147483647,
        description="non-root UID (and GID) the pod runs as, with the 'restricted' Pod Security Standard's settings",
    )

    _resources = field_validator("resources", mode="before")(_merge_resources)

    @field_validator("env_secrets")
    @classmethod
    def _env_once(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        both = sorted(set(v) & set(info.data.get("env") or {}))
        if both:
            raise ValueError(f"{', '.join(both)} also set in env (a variable comes from one place)")
        return v


class TerraformOptions(Options):
    image: Image | None = Field(default=None, description="image repository (default: the capsule name)")
    tag: Tag | None = Field(default=None, description="image tag (default: the capsule version)")
    namespace: Namespace = Field(default="default", description="Kubernetes namespace")
    port: int = Field(default=8000, ge=1, le=65535, description="container and service port")
    replicas: int = Field(default=1, ge=0, description="number of pods")
    provider_version: str = Field(
        default=">= 2.23.0", pattern=r"^[0-9A-Za-z.,<>=!~ -]+$", description="hashicorp/kubernetes version constraint"
    )


class DockerOptions(Options):
    base_image: ImageRef = Field(default="python:3.12-slim", description="FROM image of the generated Dockerfile")
    port: int = Field(default=8000, ge=1, le=65535, description="EXPOSEd and published port")
    command: list[str] | None = Field(
        default=None, description="CMD of the generated Dockerfile (default: serve the files on PORT)"
    )
    workdir: AbsPath = Field(default="/app", description="where the capsule is copied in the image")
    compression: str = Field(default="none", pattern="^(none|gzip)$", description="none (ctx.tar) or gzip")


class OciOptions(Options):
    compression: str = Field(default="gzip", pattern="^(gzip|zstd|none)$", description="layer compression")
    tag: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", description="ref name (default: the version)"
    )
