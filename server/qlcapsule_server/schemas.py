"""The API's request and response bodies (pydantic): bounded strings and lists, unknown keys ignored only where
``qlcapsule ship --json`` may grow fields."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

HEX64 = r"^[0-9a-f]{64}$"
_NAME = Field(min_length=1, max_length=63)


def _without_query(url: str | None) -> str | None:
    """A delivered URL as the catalog keeps it: without its query or fragment. A presigned URL (S3, GCS, Azure
    SAS) is a bearer credential until it expires; whatever a publisher sends, the catalog never stores one."""
    return url.split("?", 1)[0].split("#", 1)[0] if url else url


#: a delivery's URL, kept without its query (see :func:`_without_query`)
DeliveredUrl = Annotated[str | None, Field(default=None, max_length=4096), AfterValidator(_without_query)]


class ArtifactIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: str = Field(max_length=64)
    name: str = Field(max_length=1024)
    path: str | None = Field(default=None, max_length=4096)
    sha256: str = Field(pattern=HEX64)
    size: int = Field(ge=0, le=2**53 - 1)


class ReceiptIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    provider: str = Field(max_length=64)
    target: str = Field(max_length=256)
    location: Annotated[str, Field(max_length=4096), AfterValidator(_without_query)]
    sha256: str = Field(max_length=64)
    size: int = Field(ge=0, le=2**53 - 1)
    url: DeliveredUrl = None
    time: str | None = Field(default=None, max_length=64)


class ShippedCapsule(BaseModel):
    """One entry of ``qlcapsule ship --json``'s ``capsules`` (the fields the catalog records)."""

    model_config = ConfigDict(extra="ignore")
    name: str = _NAME
    version: str = Field(min_length=1, max_length=256)
    digest: str = Field(pattern=HEX64)
    score: float | None = None
    findings: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    artifacts: list[ArtifactIn] = Field(default_factory=list, max_length=1_000)
    receipts: list[ReceiptIn] = Field(default_factory=list, max_length=1_000)
    commit: str | None = Field(default=None, max_length=64)
    store: str | None = Field(default=None, max_length=2048)
    dry_run: bool = False


class Publication(BaseModel):
    """``POST /api/v1/publish``: one shipped capsule with its lock and envelope, as the files' exact text."""

    model_config = ConfigDict(extra="forbid")
    capsule: ShippedCapsule
    lock: str = Field(min_length=2, description="capsule.lock, the file's text")
    envelope: str | None = Field(default=None, description="capsule.sig (a DSSE envelope), the file's text")
    definition: str | None = Field(
        default=None,
        max_length=1024 * 1024,
        description="capsule.yaml, the file's exact text: its labels are recorded when the lock seals this text",
    )
    #: the store the capsule lives in (a path or URL, for "the repositories it lives in")
    repository: str | None = Field(default=None, max_length=2048)
    committer: str | None = Field(default=None, max_length=512)
    parents: list[str] = Field(default_factory=list, max_length=16)
    tags: list[str] = Field(default_factory=list, max_length=64)
    branches: list[str] = Field(default_factory=list, max_length=64)


class Published(BaseModel):
    ref: str
    digest: str
    created: bool
    signature_status: str
    signature_reason: str | None = None
    signed_by: list[str]


class DeliveryStatusIn(BaseModel):
    """``POST /api/v1/deliveries``: a delivery step's status."""

    model_config = ConfigDict(extra="forbid")
    capsule: str = _NAME
    version: str = Field(min_length=1, max_length=256)
    target: str = Field(min_length=1, max_length=256)
    provider: str = Field(min_length=1, max_length=64)
    status: str = Field(pattern=r"^(planned|uploading|verifying|delivered|failed)$")
    url: DeliveredUrl = None
    detail: str | None = Field(default=None, max_length=4096)
    bytes: int | None = Field(default=None, ge=0, le=2**63 - 1)


class Page(BaseModel):
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


class SyncMove(BaseModel):
    """``POST /api/v1/sync``: ``catalog sync`` indexed ``ref`` of ``repository`` up to ``commit``."""

    model_config = ConfigDict(extra="forbid")
    repository: str = Field(min_length=1, max_length=2048)
    ref: str = Field(min_length=1, max_length=1024, pattern=r"^refs/capsules/")
    commit: str = Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")
    previous: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class WebhookIn(BaseModel):
    """``POST /api/v1/webhooks``: subscribe ``url`` to delivery events (all, or only these statuses)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2048)
    #: the HMAC secret; generated (and returned once) when not given
    secret: str | None = Field(default=None, min_length=16, max_length=256)
    statuses: list[str] = Field(default_factory=list, max_length=5)
