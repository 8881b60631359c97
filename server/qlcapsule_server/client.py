"""The Python client: publish a ship report to a catalog server (``qlcapsule catalog publish``), and a
delivery's steps as they happen (``ship --publish``'s live half).

Standard library only (urllib), so ``qlcapsule ship --publish`` works without the ``[server]`` extra. The
token goes only to the URL the operator gave: never over plain HTTP to another machine, and never along a
redirect (a redirect is refused). The server's answer is untrusted: it is size-bounded and only its ``error``
line (scrubbed) is shown.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from qlcapsule import (
    CredentialsError,
    InputError,
    RemoteError,
    TransientError,
    UsageError,
    VerificationError,
    is_loopback,
    retry,
    scrub,
)

MAX_ANSWER = 1024 * 1024
TIMEOUT = 30.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise RemoteError(f"{req.full_url}: the server redirected ({code}); the token is not sent on")


def check_url(url: str) -> str:
    """The catalog's base URL: https, or http to this machine only (a token must not cross a network in clear)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url: expected http(s)://HOST[:PORT], got {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UsageError(f"--url: {parts.hostname} is not this machine; use https so the token is not sent in clear")
    return url.rstrip("/")


def request(
    url: str, token: str | None, method: str = "GET", data: Any = None, *, timeout: float | None = None
) -> tuple[int, Any]:
    """One JSON request to the catalog; returns (status, body). 5xx and lost connections are retried, except
    with a ``timeout``: then one attempt, which takes at most about that long (a live status must not hold a
    delivery up)."""
    body = None if data is None else json.dumps(data).encode("utf-8")
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    opener = urllib.request.build_opener(_NoRedirect)

    def once() -> tuple[int, Any]:
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with opener.open(req, timeout=timeout or TIMEOUT) as answer:
                return answer.status, _read(answer)
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code >= 500:
                    raise TransientError(f"{url}: HTTP {exc.code}: {error_line(exc.code, _read(exc))}") from None
                return exc.code, _read(exc)
        except urllib.error.URLError as exc:
            raise TransientError(f"{url}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:  # a read that timed out, a connection cut mid-answer
            raise TransientError(f"{url}: {type(exc).__name__}: {exc or 'no answer'}") from None

    return retry(once, attempts=1 if timeout else 3, what=f"{method} {url}")


def _read(answer: Any) -> Any:
    raw = answer.read(MAX_ANSWER + 1)
    if len(raw) > MAX_ANSWER:
        raise RemoteError("the catalog's answer is larger than 1 MiB")
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        return None


def error_line(status: int, answer: Any) -> str:
    """The server's ``error`` line (scrubbed, bounded), else the status."""
    text = answer.get("error") if isinstance(answer, dict) else None
    return scrub(" ".join(str(text or f"HTTP {status}").split()))[:500]


def publication(shipped: dict[str, Any], *, repository: str | None = None) -> dict[str, Any]:
    """The body of ``POST /api/v1/publish`` for one ``ship --json`` capsule entry: the entry itself with its
    capsule.lock, capsule.sig and capsule.yaml (for its labels) as they are on disk in the shipped directory."""
    root = Path(str(shipped.get("path") or "."))
    try:
        lock = (root / "capsule.lock").read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{root / 'capsule.lock'}: {exc.strerror or exc} (publish a report of a real ship)") from None
    sig = root / "capsule.sig"
    envelope = sig.read_text(encoding="utf-8") if sig.is_file() else None
    definition = root / "capsule.yaml"  # the exact bytes (no newline translation): the server checks its SHA-256
    body: dict[str, Any] = {
        "capsule": shipped,
        "lock": lock,
        "envelope": envelope,
        "definition": definition.read_bytes().decode("utf-8") if definition.is_file() else None,
        "repository": repository or shipped.get("store"),
    }
    store, commit = shipped.get("store"), shipped.get("commit")
    if isinstance(store, str) and isinstance(commit, str):
        from .gitstore import commit_facts  # noqa: PLC0415 -- start-up: pygit2 loads only when a report names its store; publish stays stdlib-only for ship

        body.update(commit_facts(store, commit))
    return body


def publish(url: str, token: str, report: dict[str, Any], *, timeout: float | None = None) -> list[dict[str, Any]]:
    """Publish every capsule of a ``qlcapsule ship --json`` report (``ship --publish`` calls this).

    ``report`` is the JSON answer ``ship --json`` prints, or its ``result``. A capsule published before
    (the same digest) is merged: its artifacts and receipts are added. ``timeout``: see :func:`request`.

    Returns the server's answer per capsule. Raises CredentialsError (401/403), VerificationError (the server
    refused the signature, 422), InputError (other 4xx) or RemoteError (unreachable, 5xx after retries).
    """
    base = check_url(url)
    if isinstance(report, dict) and "command" in report and isinstance(report.get("result"), dict):
        report = report["result"]  # the --json answer of 'qlcapsule ship': its result is the report
    capsules = report.get("capsules") if isinstance(report, dict) else None
    if not isinstance(capsules, list):
        raise InputError("report: not a 'qlcapsule ship --json' report (no 'capsules' list)")
    out = []
    for shipped in capsules:
        if not isinstance(shipped, dict) or not shipped.get("ok", True) or shipped.get("dry_run"):
            continue  # a failed or dry-run ship recorded nothing worth publishing
        status, answer = request(f"{base}/api/v1/publish", token, "POST", publication(shipped), timeout=timeout)
        if status in (401, 403):
            raise CredentialsError(f"{base}: {error_line(status, answer)}")
        if status == 422:
            raise VerificationError(
                f"{base}: refused {shipped.get('name')}@{shipped.get('version')}: {error_line(status, answer)}"
            )
        if status >= 400 or not isinstance(answer, dict):
            raise InputError(f"{base}: {error_line(status, answer)}")
        out.append(answer)
    return out


def publish_status(url: str, token: str, status: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
    """Record one delivery step (``POST /api/v1/deliveries``): ``{"capsule", "version", "target", "provider",
    "status", "url", "detail", "bytes"}``; the version must be published first.

    Returns the server's answer (``{"status", "changed"}``). Raises CredentialsError (401/403), InputError
    (the version is not in the catalog, or another 4xx) or RemoteError (unreachable, 5xx).
    """
    base = check_url(url)
    code, answer = request(f"{base}/api/v1/deliveries", token, "POST", status, timeout=timeout)
    if code in (401, 403):
        raise CredentialsError(f"{base}: {error_line(code, answer)}")
    if code >= 400 or not isinstance(answer, dict):
        raise InputError(f"{base}: {error_line(code, answer)}")
    return answer
