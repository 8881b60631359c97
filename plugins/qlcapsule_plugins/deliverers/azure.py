"""Deliver to Azure Blob Storage (azure-storage-blob, imported lazily).

Small files (below ``block_threshold``) go up in one Put Blob with Content-MD5,
which the service checks and stores; larger ones are staged block by block, each
block with its own Content-MD5 checked by the service, and become visible only
when the block list is committed, so a failed upload never leaves a partial blob
(uncommitted blocks are discarded by the service). Creates are conditional
(``If-None-Match: *``): an existing blob is never replaced unless ``overwrite: true``
(one with the same SHA-256 counts as already delivered). Before success the
service's size and Content-MD5 are compared, and block uploads are read back and
hashed. The receipt carries a read-only SAS URL (default 1 hour, at most 7 days).

Credentials: ``AZURE_STORAGE_CONNECTION_STRING`` (with ``AccountKey`` to sign SAS
URLs, or ``SharedAccessSignature``). Never in capsule.yaml.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import Field, field_validator

from qlcapsule import (
    DEFAULT_TIMEOUT,
    Artifact,
    Capsule,
    ConflictError,
    CredentialsError,
    Deliverer,
    InputError,
    IntegrityError,
    ObjectPrefix,
    Options,
    Receipt,
    Register,
    RemoteError,
    SignedUrlExpiry,
    TransientError,
    get_logger,
    hookimpl,
    read_secret,
    retry,
    scrub_error,
)

log = get_logger("qlcapsule.deliverers.azure")
T = TypeVar("T")
MiB = 1024 * 1024
ENV = "AZURE_STORAGE_CONNECTION_STRING"
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]\Z")  # \Z: "$" would accept a final newline


class AzureOptions(Options):
    container: str = Field(description="container name")
    prefix: ObjectPrefix = Field(
        default="{name}/{version}/", description="blob name prefix; {name} and {version} expanded"
    )
    overwrite: bool = Field(default=False, description="replace an existing blob with different content")
    presign: bool = Field(default=True, description="put a read-only SAS URL in the receipt")
    url_expires_in: SignedUrlExpiry = Field(default=3600, description="SAS lifetime: seconds or 30m/1h/7d")
    block_threshold: int = Field(
        default=64 * MiB, ge=64 * 1024, le=5000 * MiB, description="bytes from which to stage blocks"
    )
    block_size: int = Field(default=8 * MiB, ge=64 * 1024, le=4000 * MiB, description="bytes per block")
    attempts: int = Field(default=4, ge=1, le=10, description="attempts per request (bounded retries)")
    timeout: float = Field(default=DEFAULT_TIMEOUT[1], gt=0, le=3600, description="read timeout in seconds")

    @field_validator("container")
    @classmethod
    def _container(cls, v: str) -> str:
        if not _CONTAINER.match(v):
            raise ValueError(f"{v!r} is not a valid container name (3-63 chars: a-z, 0-9, single '-')")
        return v


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


class AzureDeliverer(Deliverer):
    name = "azure"
    description = "Azure Blob Storage (azure-storage-blob)"
    requires = ("azure.storage.blob",)
    extra = "qlcapsule[azure]"
    Options = AzureOptions

    options: AzureOptions

    def __init__(self, options: AzureOptions | None = None) -> None:
        super().__init__(options)
        self._service: Any = None

    def _blob_name(self, capsule: Capsule, art: Artifact) -> str:
        return capsule.expand(self.options.prefix) + art.name

    def describe(self, capsule: Capsule, artifact: Artifact) -> str:
        return f"azure://{self.options.container}/{self._blob_name(capsule, artifact)}"

    def service(self) -> Any:
        if self._service is not None:
            return self._service
        from azure.storage.blob import BlobServiceClient  # noqa: PLC0415 -- extra: azure (pip install qlcapsule[azure])

        conn = read_secret(ENV, what="Azure Storage connection string")
        assert conn is not None
        try:
            self._service = BlobServiceClient.from_connection_string(
                conn,
                connection_timeout=DEFAULT_TIMEOUT[0],
                read_timeout=self.options.timeout,
                retry_total=0,  # retries are ours: bounded, logged, per request
            )
        except ValueError as exc:
            raise CredentialsError(f"{ENV}: not a usable connection string ({scrub_error(exc)})") from None
        return self._service

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError  # noqa: PLC0415 -- extra: azure (pip install qlcapsule[azure])

        def once() -> T:
            try:
                return fn()
            except (ServiceRequestError, ServiceResponseError) as exc:
                raise TransientError(f"azure {what}: {scrub_error(exc)}") from None
            except HttpResponseError as exc:
                if (exc.status_code or 0) >= 500 or exc.status_code in (408, 429):
                    raise TransientError(f"azure {what}: HTTP {exc.status_code} {exc.reason or ''}".strip()) from None
                raise

        return retry(once, attempts=self.options.attempts, what=f"azure {what}")

    def _error(self, exc: Any, what: str) -> Exception:
        status = getattr(exc, "status_code", None)
        code = getattr(exc, "error_code", None) or ""
        if status in (401, 403):
            return CredentialsError(f"azure: {what}: access denied ({code or status}); check {ENV}")
        if status == 404:
            return InputError(f"azure: {what}: not found")
        return RemoteError(f"azure: {what}: HTTP {status} {code}".strip())

    def check(self, capsule: Capsule) -> None:
        from azure.core.exceptions import HttpResponseError  # noqa: PLC0415 -- extra: azure (pip install qlcapsule[azure])

        container = self.service().get_container_client(self.options.container)
        try:
            self._call("GetContainerProperties", container.get_container_properties)
        except HttpResponseError as exc:
            raise self._error(exc, f"container {self.options.container!r}") from None

    def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
        from azure.core.exceptions import HttpResponseError  # noqa: PLC0415 -- extra: azure (pip install qlcapsule[azure])

        out = []
        for art in artifacts:
            name = self._blob_name(capsule, art)
            try:
                out.append(self._one(name, art, target))
            except HttpResponseError as exc:
                raise self._error(exc, f"{self.options.container}/{name}") from None
        return out

    def _props(self, blob: Any) -> Any:
        from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415 -- extra: azure (pip install qlcapsule[azure])

        try:
            return self._call("GetBlobProperties", blob.get_blob_properties)
        except ResourceNotFoundError:
            return None

    @staticmethod
    def _same(props: Any, art: Artifact) -> bool:
        return props.size == art.size and (props.metadata or {}).get("sha256") == art.sha256

    def _one(self, name: str, art: Artifact, target: str) -> Receipt:
        from azure.core import MatchConditions  # noqa: PLC0415 -- extra: azure (pip install qlcapsule[azure])
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError  # noqa: PLC0415 -- extra: azure (pip install qlcapsule[azure])
        from azure.storage.blob import ContentSettings  # noqa: PLC0415 -- extra: azure (pip install qlcapsule[azure])

        where = f"azure://{self.options.container}/{name}"
        blob = self.service().get_blob_client(self.options.container, name)
        props = self._props(blob)
        if props is not None and self._same(props, art):
            return self._receipt(blob, art, target, existing=True)
        if props is not None and not self.options.overwrite:
            raise ConflictError(f"{where}: exists with different content; set 'overwrite: true' to replace it")
        cond: dict[str, Any] = {} if self.options.overwrite else {"match_condition": MatchConditions.IfMissing}
        meta = {"sha256": art.sha256}
        blocks = art.size >= self.options.block_threshold
        try:
            if blocks:
                md5 = self._stage_and_commit(blob, art, meta, cond)
            else:
                data = art.path.read_bytes()
                md5 = _md5(data)
                settings = ContentSettings(content_type=art.media_type, content_md5=bytearray(md5))
                self._call(
                    "PutBlob",
                    lambda: blob.upload_blob(
                        data,
                        overwrite=self.options.overwrite,  # False sends If-None-Match: *
                        validate_content=True,  # Content-MD5 header: the service rejects corrupted bytes
                        content_settings=settings,
                        metadata=meta,
                    ),
                )
        except (ResourceExistsError, ResourceModifiedError):
            now = self._props(blob)
            if now is None or not self._same(now, art):
                raise ConflictError(f"{where}: created by someone else during the upload; not overwriting") from None
        try:
            self._verify(blob, art, md5, where, read_back=blocks)
        except IntegrityError:
            if not self.options.overwrite:  # never leave a blob that failed verification
                self._call("DeleteBlob", blob.delete_blob)
            raise
        return self._receipt(blob, art, target)

    def _verify(self, blob: Any, art: Artifact, md5: bytes, where: str, *, read_back: bool) -> None:
        props = self._props(blob)
        if props is None:
            raise RemoteError(f"{where}: upload reported success but the blob is not there")
        if props.size != art.size:
            raise IntegrityError(f"{where}: service reports {props.size} bytes, sent {art.size}")
        stored = props.content_settings.content_md5
        if stored is not None and bytes(stored) != md5:
            raise IntegrityError(f"{where}: service Content-MD5 {base64.b64encode(bytes(stored)).decode()} differs")
        if read_back:
            self._read_back(blob, art, where)

    def _stage_and_commit(self, blob: Any, art: Artifact, meta: dict[str, str], cond: dict[str, Any]) -> bytes:
        from azure.storage.blob import BlobBlock, ContentSettings  # noqa: PLC0415 -- extra: azure (pip install qlcapsule[azure])

        whole = hashlib.md5(usedforsecurity=False)
        ids: list[BlobBlock] = []
        with art.path.open("rb") as src:
            n = 0
            while chunk := src.read(self.options.block_size):
                whole.update(chunk)
                # block ids: same length for every block, base64 (the SDK encodes)
                block_id = f"qlc-{art.sha256[:16]}-{n:06d}"
                self._call(f"PutBlock {n}", functools.partial(blob.stage_block, block_id, chunk, validate_content=True))
                ids.append(BlobBlock(block_id=block_id))
                n += 1
        md5 = whole.digest()
        settings = ContentSettings(content_type=art.media_type, content_md5=bytearray(md5))
        self._call(
            "PutBlockList",
            lambda: blob.commit_block_list(ids, content_settings=settings, metadata=meta, **cond),
        )
        return md5

    def _read_back(self, blob: Any, art: Artifact, where: str) -> None:
        def get() -> str:
            h = hashlib.sha256()
            for chunk in blob.download_blob().chunks():
                h.update(chunk)
            return h.hexdigest()

        got = self._call("GetBlob", get)
        if got != art.sha256:
            raise IntegrityError(f"{where}: read back sha256 {got[:12]}... differs from {art.sha256[:12]}...")

    def _receipt(self, blob: Any, art: Artifact, target: str, *, existing: bool = False) -> Receipt:
        url = None
        extra: dict[str, Any] = {"container": self.options.container, "blob": blob.blob_name}
        if self.options.presign:
            url = self._sas_url(blob)
            if url:
                extra["url_expires_in"] = self.options.url_expires_in
        if existing:
            extra["existing"] = True
        return Receipt(
            provider=self.name,
            target=target,
            location=f"azure://{self.options.container}/{blob.blob_name}",
            sha256=art.sha256,
            size=art.size,
            url=url,
            extra=extra,
        )

    def _sas_url(self, blob: Any) -> str | None:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas  # noqa: PLC0415 -- extra: azure (pip install qlcapsule[azure])

        key = getattr(self.service().credential, "account_key", None)
        if not key:
            log.warning("azure: the connection string has no AccountKey; no SAS URL in the receipt")
            return None
        now = dt.datetime.now(dt.timezone.utc)
        sas = generate_blob_sas(
            account_name=blob.account_name,
            container_name=self.options.container,
            blob_name=blob.blob_name,
            account_key=key,
            permission=BlobSasPermissions(read=True),
            start=now - dt.timedelta(minutes=5),  # tolerate clock skew
            expiry=now + dt.timedelta(seconds=self.options.url_expires_in),
            protocol=None,
        )
        return f"{blob.url}?{sas}"


@hookimpl
def qlcapsule_register_deliverers(register: Register) -> None:
    register(AzureDeliverer)
