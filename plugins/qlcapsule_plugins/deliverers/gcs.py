"""Deliver to Google Cloud Storage (google-cloud-storage, imported lazily).

Objects are created with ``if_generation_match=0`` (only if absent) unless
``overwrite: true``; an existing object with the same SHA-256 counts as already
delivered. Files at or above ``resumable_threshold`` use a resumable upload in
``chunk_size`` pieces; an unfinished resumable session never becomes an object.
The client checks the upload's CRC32C; afterwards the object's CRC32C and MD5 as
stored by the service are compared with the ones computed locally before the
delivery counts. The receipt carries a V4 signed GET URL (default 1 hour, at
most 7 days), signed with a service-account key.

Credentials: Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``
pointing at a service-account key file, gcloud, or the metadata server). With
``endpoint`` (an emulator such as fake-gcs-server) the client is anonymous and
the key file, when present, is only used to sign URLs.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
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
    redact,
    retry,
    scrub_error,
)

log = get_logger("qlcapsule.deliverers.gcs")
T = TypeVar("T")
MiB = 1024 * 1024
ENV = "GOOGLE_APPLICATION_CREDENTIALS"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]\Z")  # \Z: "$" would accept a final newline


class GcsOptions(Options):
    bucket: str = Field(description="bucket name")
    prefix: ObjectPrefix = Field(
        default="{name}/{version}/", description="object name prefix; {name} and {version} expanded"
    )
    project: str | None = Field(default=None, description="project id (default: from the credentials)")
    endpoint: str | None = Field(default=None, description="API endpoint of an emulator, e.g. http://127.0.0.1:4443")
    overwrite: bool = Field(default=False, description="replace an existing object with different content")
    presign: bool = Field(default=True, description="put a V4 signed GET URL in the receipt")
    url_expires_in: SignedUrlExpiry = Field(default=3600, description="signed URL lifetime: seconds or 30m/1h/7d")
    resumable_threshold: int = Field(default=8 * MiB, ge=256 * 1024, description="bytes from which to upload resumably")
    chunk_size: int = Field(default=8 * MiB, ge=256 * 1024, description="resumable chunk size, a multiple of 256 KiB")
    attempts: int = Field(default=4, ge=1, le=10, description="attempts per request (bounded retries)")
    timeout: float = Field(default=DEFAULT_TIMEOUT[1], gt=0, le=3600, description="read timeout in seconds")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET.match(v):
            raise ValueError(f"{v!r} is not a valid GCS bucket name")
        return v

    @field_validator("chunk_size")
    @classmethod
    def _chunk(cls, v: int) -> int:
        if v % (256 * 1024):
            raise ValueError("must be a multiple of 262144 (256 KiB)")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/") if v else v


def _digests(path: Path) -> tuple[str, str]:
    """(crc32c, md5) of a file, base64 as GCS reports them."""
    import google_crc32c  # noqa: PLC0415 -- extra: google_crc32c (pip install qlcapsule[gcs])

    crc = google_crc32c.Checksum()
    md5 = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            crc.update(chunk)
            md5.update(chunk)
    return base64.b64encode(crc.digest()).decode(), base64.b64encode(md5.digest()).decode()


class GcsDeliverer(Deliverer):
    name = "gcs"
    description = "Google Cloud Storage (google-cloud-storage)"
    requires = ("google.cloud.storage", "google_crc32c")
    extra = "qlcapsule[gcs]"
    Options = GcsOptions

    options: GcsOptions

    def __init__(self, options: GcsOptions | None = None) -> None:
        super().__init__(options)
        self._client: Any = None
        self._signer: Any = None

    def _object(self, capsule: Capsule, art: Artifact) -> str:
        return capsule.expand(self.options.prefix) + art.name

    def describe(self, capsule: Capsule, artifact: Artifact) -> str:
        return f"gs://{self.options.bucket}/{self._object(capsule, artifact)}"

    def _key_file(self) -> Any:
        """Service-account credentials from the key file named by GOOGLE_APPLICATION_CREDENTIALS, or None."""
        path = os.environ.get(ENV)
        if not path:
            return None
        try:
            info = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"{ENV}: cannot read the key file ({type(exc).__name__})") from None
        if not isinstance(info, dict):
            raise CredentialsError(f"{ENV}: the key file is not a JSON object")
        redact(info.get("private_key"))
        redact(info.get("private_key_id"))
        if info.get("type") != "service_account":
            return None
        from google.oauth2 import service_account  # noqa: PLC0415 -- extra: google (pip install qlcapsule[gcs])

        try:
            return service_account.Credentials.from_service_account_info(
                info, scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
            )
        except (ValueError, KeyError) as exc:
            raise CredentialsError(f"{ENV}: not a usable service-account key ({scrub_error(exc)})") from None

    def client(self) -> Any:
        if self._client is not None:
            return self._client
        from google.cloud import storage  # noqa: PLC0415 -- extra: google (pip install qlcapsule[gcs])

        key = self._key_file()
        if self.options.endpoint:
            from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415 -- extra: google (pip install qlcapsule[gcs])

            creds: Any = AnonymousCredentials()
            project: str | None = self.options.project or "emulator"
            options: dict[str, Any] | None = {"api_endpoint": self.options.endpoint}
        else:
            import google.auth  # noqa: PLC0415 -- extra: google (pip install qlcapsule[gcs])
            from google.auth.exceptions import DefaultCredentialsError  # noqa: PLC0415 -- extra: google (pip install qlcapsule[gcs])

            try:
                creds, found = google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
            except DefaultCredentialsError:
                raise CredentialsError(
                    f"gcs: no Google credentials found (set {ENV} to a service-account key file, or run "
                    "'gcloud auth application-default login')"
                ) from None
            project = self.options.project or found
            options = None
        self._signer = key if key is not None else (creds if hasattr(creds, "sign_bytes") else None)
        self._client = storage.Client(project=project, credentials=creds, client_options=options)
        return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        import requests  # noqa: PLC0415 -- extra: requests (not a core dependency: it comes with the s3, gcs, github and gitlab extras)
        from google.api_core import exceptions as gexc  # noqa: PLC0415 -- extra: google (pip install qlcapsule[gcs])

        def once() -> T:
            try:
                return fn()
            except (gexc.ServerError, gexc.TooManyRequests) as exc:
                raise TransientError(f"gcs {what}: HTTP {exc.code}") from None
            except (requests.ConnectionError, requests.Timeout, ConnectionError) as exc:
                raise TransientError(f"gcs {what}: {scrub_error(exc)}") from None
            except Exception as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if isinstance(status, int) and (status >= 500 or status == 429):  # resumable-media errors
                    raise TransientError(f"gcs {what}: HTTP {status}") from None
                raise

        return retry(once, attempts=self.options.attempts, what=f"gcs {what}")

    def _error(self, exc: Exception, what: str) -> Exception:
        code = getattr(exc, "code", None)
        if code in (401, 403):
            return CredentialsError(f"gcs: {what}: access denied (HTTP {code}); check {ENV}")
        if code == 404:
            return InputError(f"gcs: {what}: not found")
        return RemoteError(f"gcs: {what}: {scrub_error(exc)}")

    def check(self, capsule: Capsule) -> None:
        from google.api_core import exceptions as gexc  # noqa: PLC0415 -- extra: google (pip install qlcapsule[gcs])

        client = self.client()
        if self.options.presign and self._signer is None:
            raise CredentialsError(
                f"gcs: signed URLs need a service-account key: set {ENV} to its key file, or set 'presign: false'"
            )
        try:
            self._call("GetBucket", lambda: client.get_bucket(self.options.bucket, timeout=self._timeout(), retry=None))
        except gexc.GoogleAPICallError as exc:
            raise self._error(exc, f"bucket {self.options.bucket!r}") from None

    def _timeout(self) -> tuple[float, float]:
        return (DEFAULT_TIMEOUT[0], self.options.timeout)

    def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
        from google.api_core import exceptions as gexc  # noqa: PLC0415 -- extra: google (pip install qlcapsule[gcs])

        out = []
        bucket = self.client().bucket(self.options.bucket)
        for art in artifacts:
            name = self._object(capsule, art)
            try:
                out.append(self._one(bucket, name, art, target))
            except gexc.GoogleAPICallError as exc:
                raise self._error(exc, f"gs://{self.options.bucket}/{name}") from None
        return out

    def _existing(self, bucket: Any, name: str) -> Any:
        return self._call("GetObject", lambda: bucket.get_blob(name, timeout=self._timeout(), retry=None))

    def _one(self, bucket: Any, name: str, art: Artifact, target: str) -> Receipt:
        from google.api_core import exceptions as gexc  # noqa: PLC0415 -- extra: google (pip install qlcapsule[gcs])

        where = f"gs://{self.options.bucket}/{name}"
        crc, md5 = _digests(art.path)
        found = self._existing(bucket, name)
        if found is not None and found.size == art.size and found.crc32c == crc and found.md5_hash == md5:
            return self._receipt(found, art, target, existing=True)
        if found is not None and not self.options.overwrite:
            raise ConflictError(f"{where}: exists with different content; set 'overwrite: true' to replace it")
        blob = bucket.blob(
            name, chunk_size=self.options.chunk_size if art.size >= self.options.resumable_threshold else None
        )
        blob.metadata = {"sha256": art.sha256}
        cond: dict[str, Any] = {} if self.options.overwrite else {"if_generation_match": 0}

        def upload() -> None:
            blob.upload_from_filename(
                str(art.path),
                content_type=art.media_type,
                checksum="crc32c",  # the client compares the service's CRC32C and raises on a mismatch
                timeout=self._timeout(),
                retry=None,
                **cond,
            )

        try:
            self._call("Upload", upload)
        except gexc.PreconditionFailed:
            now = self._existing(bucket, name)
            if now is None or now.crc32c != crc or now.md5_hash != md5:
                raise ConflictError(f"{where}: created by someone else during the upload; not overwriting") from None
        stored = self._existing(bucket, name)
        if stored is None:
            raise RemoteError(f"{where}: upload reported success but the object is not there")
        if stored.size != art.size or stored.crc32c != crc or (stored.md5_hash and stored.md5_hash != md5):
            if not self.options.overwrite:  # never leave an object that failed verification
                gen = stored.generation
                self._call(
                    "DeleteObject", lambda: stored.delete(if_generation_match=gen, timeout=self._timeout(), retry=None)
                )
            raise IntegrityError(
                f"{where}: service reports size {stored.size} crc32c {stored.crc32c} md5 {stored.md5_hash}, "
                f"uploaded {art.size} {crc} {md5}"
            )
        return self._receipt(stored, art, target)

    def _receipt(self, blob: Any, art: Artifact, target: str, *, existing: bool = False) -> Receipt:
        url = None
        extra: dict[str, Any] = {"bucket": self.options.bucket, "object": blob.name, "generation": blob.generation}
        if self.options.presign and self._signer is not None:
            kwargs: dict[str, Any] = {}
            if self.options.endpoint:
                kwargs["api_access_endpoint"] = self.options.endpoint
            url = blob.generate_signed_url(
                version="v4",
                expiration=dt.timedelta(seconds=self.options.url_expires_in),
                method="GET",
                credentials=self._signer,
                **kwargs,
            )
            extra["url_expires_in"] = self.options.url_expires_in
        if existing:
            extra["existing"] = True
        return Receipt(
            provider=self.name,
            target=target,
            location=f"gs://{self.options.bucket}/{blob.name}",
            sha256=art.sha256,
            size=art.size,
            url=url,
            extra=extra,
        )


@hookimpl
def qlcapsule_register_deliverers(register: Register) -> None:
    register(GcsDeliverer)
