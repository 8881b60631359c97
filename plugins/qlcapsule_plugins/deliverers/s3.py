"""Deliver to Amazon S3 or any S3-compatible store (boto3, imported lazily).

Every object is sent with ``ChecksumAlgorithm=SHA256`` and the SHA-256 computed
locally, so the server can reject corrupted bytes; afterwards ``HeadObject``
(``ChecksumMode=ENABLED``) must report the same checksum and size before the
delivery counts (objects without a stored checksum are read back and hashed).
Files at or above ``multipart_threshold`` go up in parts, each with its own
SHA-256; any failure aborts the multipart upload, so no part is left billed and
no partial object appears. Objects are created with ``IfNoneMatch: *``: an
existing key is never replaced unless ``overwrite: true`` (an existing object
with the same SHA-256 counts as already delivered). The receipt carries a
presigned SigV4 GET URL (default 1 hour, at most 7 days).

Credentials: the standard boto3 chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
/``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, SSO, instance roles). Never in capsule.yaml.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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

log = get_logger("qlcapsule.deliverers.s3")
T = TypeVar("T")
MiB = 1024 * 1024
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")  # \Z: "$" would accept a final newline
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
}


class S3Options(Options):
    bucket: str = Field(description="bucket name")
    prefix: ObjectPrefix = Field(
        default="{name}/{version}/", description="key prefix; {name} and {version} are expanded"
    )
    region: str | None = Field(default=None, description="region (default: from the AWS config chain)")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint, e.g. http://127.0.0.1:9000")
    path_style: bool = Field(default=False, description="path-style addressing (most S3-compatible stores)")
    overwrite: bool = Field(default=False, description="replace an existing object with different content")
    presign: bool = Field(default=True, description="put a presigned GET URL in the receipt")
    url_expires_in: SignedUrlExpiry = Field(default=3600, description="presigned URL lifetime: seconds or 30m/1h/7d")
    multipart_threshold: int = Field(default=64 * MiB, ge=5 * MiB, description="bytes from which to upload in parts")
    part_size: int = Field(default=16 * MiB, ge=5 * MiB, le=5 * 1024 * MiB, description="bytes per part")
    concurrency: int = Field(default=4, ge=1, le=32, description="parts uploaded at the same time")
    attempts: int = Field(default=4, ge=1, le=10, description="attempts per request (bounded retries)")
    timeout: float = Field(default=DEFAULT_TIMEOUT[1], gt=0, le=3600, description="read timeout in seconds")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET.match(v) or ".." in v:
            raise ValueError(f"{v!r} is not a valid S3 bucket name (3-63 chars: a-z, 0-9, '.', '-')")
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class S3Deliverer(Deliverer):
    name = "s3"
    description = "Amazon S3 and S3-compatible stores (boto3)"
    requires = ("boto3",)
    extra = "qlcapsule[s3]"
    Options = S3Options

    options: S3Options

    def __init__(self, options: S3Options | None = None) -> None:
        super().__init__(options)
        self._client: Any = None

    # -- setup ---------------------------------------------------------------
    def _key(self, capsule: Capsule, art: Artifact) -> str:
        return capsule.expand(self.options.prefix) + art.name

    def describe(self, capsule: Capsule, artifact: Artifact) -> str:
        return f"s3://{self.options.bucket}/{self._key(capsule, artifact)}"

    def client(self) -> Any:
        if self._client is not None:
            return self._client
        import boto3  # noqa: PLC0415 -- extra: boto3 (pip install qlcapsule[s3])
        from botocore.config import Config  # noqa: PLC0415 -- extra: botocore (pip install qlcapsule[s3])

        session = boto3.session.Session(region_name=self.options.region)
        creds = session.get_credentials()
        if creds is None:
            raise CredentialsError(
                "s3: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            )
        frozen = creds.get_frozen_credentials()
        redact(frozen.secret_key)
        redact(frozen.token)
        config = Config(
            signature_version="s3v4",
            connect_timeout=DEFAULT_TIMEOUT[0],
            read_timeout=self.options.timeout,
            retries={"mode": "standard", "total_max_attempts": 1},  # retries are ours: bounded, logged, per request
            s3={"addressing_style": "path" if self.options.path_style else "auto"},
            region_name=self.options.region or session.region_name or "us-east-1",
        )
        self._client = session.client("s3", endpoint_url=self.options.endpoint_url, config=config)
        return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """One S3 request with bounded retries; SDK errors become qlcapsule errors with secrets scrubbed."""
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 -- extra: botocore (pip install qlcapsule[s3])

        def once() -> T:
            try:
                return fn()
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                code = exc.response.get("Error", {}).get("Code", "")
                if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
                    raise TransientError(f"s3 {what}: {scrub_error(exc)}") from None
                raise
            except BotoCoreError as exc:  # connection refused/reset, timeouts
                raise TransientError(f"s3 {what}: {scrub_error(exc)}") from None

        return retry(once, attempts=self.options.attempts, what=f"s3 {what}")

    def check(self, capsule: Capsule) -> None:
        from botocore.exceptions import ClientError  # noqa: PLC0415 -- extra: botocore (pip install qlcapsule[s3])

        client = self.client()
        try:
            self._call("HeadBucket", lambda: client.head_bucket(Bucket=self.options.bucket))
        except ClientError as exc:
            raise self._client_error(exc, f"bucket {self.options.bucket!r}") from None

    def _client_error(self, exc: Any, what: str) -> Exception:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = exc.response.get("Error", {}).get("Code", "")
        if status in (401, 403) or code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
            return CredentialsError(f"s3: {what}: access denied ({code or status}); check the AWS credentials")
        if status == 404 or code in ("NoSuchBucket", "NotFound"):
            return InputError(f"s3: {what}: not found")
        return RemoteError(f"s3: {what}: {scrub_error(exc)}")

    # -- delivery -------------------------------------------------------------
    def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
        from botocore.exceptions import ClientError  # noqa: PLC0415 -- extra: botocore (pip install qlcapsule[s3])

        receipts = []
        for art in artifacts:
            key = self._key(capsule, art)
            try:
                receipts.append(self._one(key, art, target))
            except ClientError as exc:
                raise self._client_error(exc, f"s3://{self.options.bucket}/{key}") from None
        return receipts

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError  # noqa: PLC0415 -- extra: botocore (pip install qlcapsule[s3])

        client = self.client()
        try:
            return self._call(
                "HeadObject", lambda: client.head_object(Bucket=self.options.bucket, Key=key, ChecksumMode="ENABLED")
            )
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise

    def _one(self, key: str, art: Artifact, target: str) -> Receipt:
        where = f"s3://{self.options.bucket}/{key}"
        existing = self._head(key)
        if existing is not None and self._same(existing, key, art):
            log.info("s3: %s already holds this artifact", where)
            return self._receipt(key, art, target, existing=True)
        if existing is not None and not self.options.overwrite:
            raise ConflictError(f"{where}: exists with different content; set 'overwrite: true' to replace it")
        self._abort_stale(key)
        if art.size >= self.options.multipart_threshold:
            expected = self._multipart(key, art)
        else:
            expected = self._put(key, art)
        try:
            self._verify(key, art, expected)
        except IntegrityError:
            if not self.options.overwrite:  # never leave an object that failed verification
                client = self.client()
                self._call("DeleteObject", lambda: client.delete_object(Bucket=self.options.bucket, Key=key))
            raise
        return self._receipt(key, art, target)

    def _verify(self, key: str, art: Artifact, expected: str) -> None:
        where = f"s3://{self.options.bucket}/{key}"
        head = self._head(key)
        if head is None:
            raise RemoteError(f"{where}: upload reported success but the object is not there")
        if head.get("ContentLength") != art.size:
            raise IntegrityError(f"{where}: server reports {head.get('ContentLength')} bytes, sent {art.size}")
        stored = head.get("ChecksumSHA256")
        if stored is None:  # a store without checksums: read the object back
            self._read_back(key, art)
            return
        # composite (multipart) checksums end in "-<parts>"; some stores omit the suffix
        want, _, parts = expected.partition("-")
        got, _, got_parts = stored.partition("-")
        if got != want or (got_parts and got_parts != parts):
            raise IntegrityError(f"{where}: server checksum {stored} differs from the uploaded {expected}")

    def _same(self, head: dict[str, Any], key: str, art: Artifact) -> bool:
        if head.get("ContentLength") != art.size:
            return False
        if head.get("Metadata", {}).get("sha256") == art.sha256:
            return True
        if head.get("ChecksumSHA256") == _b64(bytes.fromhex(art.sha256)):
            return True
        return False

    def _put(self, key: str, art: Artifact) -> str:
        client = self.client()
        checksum = _b64(bytes.fromhex(art.sha256))
        extra: dict[str, Any] = {} if self.options.overwrite else {"IfNoneMatch": "*"}

        def put() -> Any:
            with art.path.open("rb") as body:
                return client.put_object(
                    Bucket=self.options.bucket,
                    Key=key,
                    Body=body,
                    ContentLength=art.size,
                    ContentType=art.media_type,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=checksum,
                    Metadata={"sha256": art.sha256},
                    **extra,
                )

        self._conditional(key, art, lambda: self._call("PutObject", put))
        return checksum

    def _conditional(self, key: str, art: Artifact, fn: Callable[[], Any]) -> None:
        """Run a create; a 412 means someone (maybe our own lost-response retry) created the key first."""
        from botocore.exceptions import ClientError  # noqa: PLC0415 -- extra: botocore (pip install qlcapsule[s3])

        try:
            fn()
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 412:
                raise
            head = self._head(key)
            if head is None or not self._same(head, key, art):
                raise ConflictError(
                    f"s3://{self.options.bucket}/{key}: created by someone else during the upload; not overwriting"
                ) from None

    def _multipart(self, key: str, art: Artifact) -> str:
        client = self.client()
        bucket = self.options.bucket
        created = self._call(
            "CreateMultipartUpload",
            lambda: client.create_multipart_upload(
                Bucket=bucket,
                Key=key,
                ContentType=art.media_type,
                ChecksumAlgorithm="SHA256",
                Metadata={"sha256": art.sha256},
            ),
        )
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = []
        digests: list[bytes] = []

        def send(n: int, data: bytes, digest: bytes) -> dict[str, Any]:
            resp = self._call(
                f"UploadPart {n}",
                lambda: client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=n,
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_b64(digest),
                ),
            )
            return {"PartNumber": n, "ETag": resp["ETag"], "ChecksumSHA256": _b64(digest)}

        try:
            # Parts go up on `concurrency` threads; at most 2 x concurrency parts are in memory.
            with art.path.open("rb") as src, ThreadPoolExecutor(self.options.concurrency) as pool:
                pending: list[Future[dict[str, Any]]] = []
                number = 1
                while chunk := src.read(self.options.part_size):
                    digest = hashlib.sha256(chunk).digest()
                    digests.append(digest)
                    pending.append(pool.submit(send, number, chunk, digest))
                    number += 1
                    while len(busy := [f for f in pending if not f.done()]) >= 2 * self.options.concurrency:
                        wait(busy, return_when=FIRST_COMPLETED)
                    if any(f.done() and f.exception() for f in pending):
                        break
                try:
                    parts = [f.result() for f in pending]  # raises the first failure, in part order
                except BaseException:
                    for f in pending:
                        f.cancel()  # queued parts never start; running ones finish before the abort below
                    raise
            extra: dict[str, Any] = {} if self.options.overwrite else {"IfNoneMatch": "*"}
            self._conditional(
                key,
                art,
                lambda: self._call(
                    "CompleteMultipartUpload",
                    lambda: client.complete_multipart_upload(
                        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **extra
                    ),
                ),
            )
        except BaseException:
            self._abort(key, upload_id)
            raise
        # S3's checksum of a multipart object: SHA-256 over the parts' digests, "-<parts>"
        return f"{_b64(hashlib.sha256(b''.join(digests)).digest())}-{len(digests)}"

    def _abort(self, key: str, upload_id: str) -> None:
        client = self.client()
        try:
            self._call(
                "AbortMultipartUpload",
                lambda: client.abort_multipart_upload(Bucket=self.options.bucket, Key=key, UploadId=upload_id),
            )
            log.info("s3: aborted multipart upload of %s", key)
        except Exception as exc:  # noqa: BLE001 - the original error matters more; the next run cleans up
            log.warning(
                "s3: could not abort multipart upload %s of %s (%s); the next delivery of this key aborts it",
                upload_id,
                key,
                scrub_error(exc),
            )

    def _abort_stale(self, key: str) -> None:
        """Abort uploads left open for this exact key by an earlier, interrupted delivery."""
        client = self.client()
        resp = self._call(
            "ListMultipartUploads", lambda: client.list_multipart_uploads(Bucket=self.options.bucket, Prefix=key)
        )
        for up in resp.get("Uploads", []):
            if up.get("Key") == key:
                self._abort(key, up["UploadId"])

    def _read_back(self, key: str, art: Artifact) -> None:
        client = self.client()

        def get() -> str:
            h = hashlib.sha256()
            body = client.get_object(Bucket=self.options.bucket, Key=key)["Body"]
            for chunk in iter(lambda: body.read(1 << 20), b""):
                h.update(chunk)
            return h.hexdigest()

        got = self._call("GetObject", get)
        if got != art.sha256:
            raise IntegrityError(f"s3://{self.options.bucket}/{key}: read back sha256 {got[:12]}... differs")

    def _receipt(self, key: str, art: Artifact, target: str, *, existing: bool = False) -> Receipt:
        url = None
        if self.options.presign:
            url = self.client().generate_presigned_url(
                "get_object",
                Params={"Bucket": self.options.bucket, "Key": key},
                ExpiresIn=self.options.url_expires_in,
            )
        extra: dict[str, Any] = {"bucket": self.options.bucket, "key": key}
        if url:
            extra["url_expires_in"] = self.options.url_expires_in
        if existing:
            extra["existing"] = True
        return Receipt(
            provider=self.name,
            target=target,
            location=f"s3://{self.options.bucket}/{key}",
            sha256=art.sha256,
            size=art.size,
            url=url,
            extra=extra,
        )


@hookimpl
def qlcapsule_register_deliverers(register: Register) -> None:
    register(S3Deliverer)
