"""The option models of the built-in exporters (pydantic; imported on first use, see ``_lazyoptions``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from qlcapsule import Options

from ._lazyoptions import check_prefix


class TarOptions(Options):
    level: int | None = Field(
        default=None, description="compression level (gzip 1-9, default 6; xz 0-9, default 6; zstd 1-22, default 3)"
    )
    prefix: str = Field(default="", description="directory every entry is put under, e.g. 'orders-1.0.0/'")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return check_prefix(v)


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


class HelmOptions(Options):
    image: str | None = Field(default=None, description="image repository (default: the capsule name)")
    tag: str | None = Field(default=None, description="image tag (default: the capsule version)")
    port: int = Field(default=8000, ge=1, le=65535, description="container and service port")
    replicas: int = Field(default=1, ge=0, description="replicaCount")
    resources: dict[str, dict[str, str]] = Field(default_factory=_default_resources, description="requests/limits")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables of the container")
    service_type: str = Field(default="ClusterIP", pattern="^(ClusterIP|NodePort|LoadBalancer)$")
    ingress_host: str = Field(default="", description="when set, the Ingress is enabled for this host")
    ingress_class: str = ""


class TerraformOptions(Options):
    image: str | None = Field(default=None, description="image repository (default: the capsule name)")
    tag: str | None = Field(default=None, description="image tag (default: the capsule version)")
    namespace: str = Field(default="default", description="Kubernetes namespace")
    port: int = Field(default=8000, ge=1, le=65535)
    replicas: int = Field(default=1, ge=0)
    provider_version: str = Field(default=">= 2.23.0", description="hashicorp/kubernetes version constraint")


class DockerOptions(Options):
    base_image: str = Field(default="python:3.12-slim", description="FROM image of the generated Dockerfile")
    port: int = Field(default=8000, ge=1, le=65535, description="EXPOSEd and published port")
    command: list[str] | None = Field(
        default=None, description="CMD of the generated Dockerfile (default: serve the files on PORT)"
    )
    workdir: str = Field(default="/app", pattern="^/", description="where the capsule is copied in the image")
    compression: str = Field(default="none", pattern="^(none|gzip)$", description="none (ctx.tar) or gzip")


class OciOptions(Options):
    compression: str = Field(default="gzip", pattern="^(gzip|zstd|none)$", description="layer compression")
    tag: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", description="ref name (default: the version)"
    )
