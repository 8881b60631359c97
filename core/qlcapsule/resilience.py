"""Robustness helpers for anything that talks to a remote service.

Deliverers (built-in or third-party) import these from ``qlcapsule``:

- :func:`retry` — bounded exponential backoff with full jitter;
- :class:`CircuitBreaker` and :func:`breaker_for` — one breaker per provider, so a
  dead service fails fast instead of burning every retry of every artifact;
- :data:`DEFAULT_TIMEOUT` (connect, read) seconds — every network call gets one;
- :class:`TransientError` — raise it (or list SDK errors in ``retry_on``) for
  failures worth another attempt;
- :func:`read_secret` — read a credential from the environment and register it
  with :func:`qlcapsule.redact` so it never shows up in a log line;
- :func:`scrub_error` — one line from any SDK exception, with secrets removed;
- :func:`signed_url_expiry` — the signed-URL lifetime rule (default 1 hour,
  never more than 7 days);
- :func:`check_redirect` — the one redirect rule: credentials stay on the origin
  (scheme, host and port) they were configured for; :func:`guard_redirects` puts it
  on a ``requests.Session`` (the github and gitlab SDKs), the webhook opener and
  the OCI client call it themselves;
- :func:`is_loopback` and :func:`operator_allows` — which hosts get plain HTTP or
  a token service: loopback, or what the operator lists in an environment variable.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator

from .errors import CredentialsError, OptionsError, QlcapsuleError, RemoteError
from .log import event, get_logger, redact, scrub

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "SIGNED_URL_DEFAULT",
    "SIGNED_URL_MAX",
    "TransientError",
    "CircuitOpenError",
    "RedirectRefused",
    "MAX_REDIRECTS",
    "origin",
    "check_redirect",
    "guard_redirects",
    "is_loopback",
    "operator_allows",
    "CircuitBreaker",
    "breaker_for",
    "reset_breakers",
    "retry",
    "read_secret",
    "scrub_error",
    "signed_url_expiry",
    "SignedUrlExpiry",
    "Expandable",
    "ExpandableText",
    "ObjectPrefix",
]

log = get_logger("qlcapsule.resilience")
T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
#: (connect, read) seconds; every network call made by a deliverer uses a timeout
DEFAULT_TIMEOUT = (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT)

SIGNED_URL_DEFAULT = 3600
SIGNED_URL_MAX = 7 * 24 * 3600


class TransientError(RemoteError):
    """A remote failure that may go away on its own (5xx, throttling, reset connection)."""


class RedirectRefused(RemoteError):
    """A server redirected where the request (or its credentials) must not go; nothing was sent there."""


class CircuitOpenError(RemoteError):
    """The provider failed too often recently; calls fail fast until the cool-down ends."""


def retry(
    fn: Callable[[], T],
    *,
    attempts: int = 4,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    retry_on: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError),
    what: str = "request",
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Call ``fn`` until it succeeds, at most ``attempts`` times.

    Between attempts it sleeps ``uniform(0, min(max_delay, base_delay * 2**n))``
    ("full jitter", so many clients do not retry in lock-step). Only exceptions in
    ``retry_on`` are retried; the last one is re-raised unchanged. ``sleep`` and
    ``rng`` are injectable so tests never sleep.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for n in range(attempts):
        try:
            return fn()
        except retry_on as exc:
            if n == attempts - 1:
                raise
            delay = rng() * min(max_delay, base_delay * (2**n))
            event(
                log,
                "retry",
                what=what,
                attempt=n + 1,
                of=attempts,
                delay=round(delay, 3),
                error=scrub_error(exc),
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class CircuitBreaker:
    """Closed -> (``threshold`` consecutive failures) -> open -> (``cooldown`` s) -> half-open.

    In the half-open state one trial call is let through: success closes the
    breaker, failure opens it again. Only :class:`qlcapsule.QlcapsuleError`
    subclasses that are remote failures, and unexpected exceptions, count;
    bad options or credentials do not (they are the caller's fault, not the service's).
    """

    def __init__(
        self, name: str, *, threshold: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def before(self) -> None:
        """Raise :class:`CircuitOpenError` when calls must fail fast."""
        with self._lock:
            if self._state() == "open":
                assert self._opened_at is not None
                left = self.cooldown - (self._clock() - self._opened_at)
                raise CircuitOpenError(
                    f"{self.name}: {self._failures} consecutive failures; not trying again for {left:.0f} s"
                )

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._opened_at is not None or self._failures >= self.threshold:
                self._opened_at = self._clock()
                event(log, "circuit.open", provider=self.name, failures=self._failures)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` through the breaker."""
        self.before()
        try:
            result = fn()
        except QlcapsuleError as exc:
            if isinstance(exc, RemoteError) and not isinstance(exc, CircuitOpenError):
                self.failure()
            raise
        except Exception:
            self.failure()
            raise
        self.success()
        return result


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(provider: str, *, threshold: int = 5, cooldown: float = 30.0) -> CircuitBreaker:
    """The process-wide breaker of ``provider`` (created on first use)."""
    with _breakers_lock:
        if provider not in _breakers:
            _breakers[provider] = CircuitBreaker(provider, threshold=threshold, cooldown=cooldown)
        return _breakers[provider]


def reset_breakers() -> None:
    """Forget every breaker (tests, long-running processes after a config change)."""
    with _breakers_lock:
        _breakers.clear()


def read_secret(env: str, *, required: bool = True, what: str = "") -> str | None:
    """Read a credential from the environment variable ``env`` and register it for redaction.

    Raises :class:`qlcapsule.CredentialsError` naming the variable (never a value)
    when it is required and unset or empty.
    """
    value = os.environ.get(env)
    if not value:
        if required:
            hint = f" ({what})" if what else ""
            raise CredentialsError(f"missing credential: environment variable {env} is not set{hint}")
        return None
    redact(value)
    # Connection strings carry the secret as one of several fields; register each part.
    for part in re.split(r"[;\s]", value):
        key, sep, val = part.partition("=")
        if sep and key.lower() in {"accountkey", "sharedaccesssignature", "password", "secret", "token"}:
            redact(val)
    return value


_URL_SECRETS = re.compile(
    r"(?i)((?:X-Amz-Signature|X-Amz-Security-Token|X-Goog-Signature|Signature|sig|access_token|token)=)[^&\s\"']+"
)
_AUTH_HEADER = re.compile(
    r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic|token|aws4-hmac-sha256)\s+)?[^'\"\s,]+"
)


def scrub_error(exc: BaseException, *, limit: int = 300) -> str:
    """One line describing ``exc``: registered secrets, URL signatures and auth headers removed."""
    text = str(exc) or type(exc).__name__
    text = " ".join(text.split())
    text = _URL_SECRETS.sub(r"\1***", text)
    text = _AUTH_HEADER.sub(r"\1***", text)
    text = scrub(text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def signed_url_expiry(value: int | str | None, *, field: str = "url_expires_in") -> int:
    """Seconds a signed URL stays valid: ``None`` -> 1 hour; more than 7 days is refused.

    Accepts seconds (``3600``) or a duration (``"30m"``, ``"12h"``, ``"7d"``).
    """
    if value is None:
        return SIGNED_URL_DEFAULT
    if isinstance(value, bool):
        raise OptionsError(f"{field}: expected seconds or a duration like '1h'")
    if isinstance(value, int):
        seconds = value
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise OptionsError(f"{field}: {value!r} is not a duration (use seconds or e.g. '30m', '1h', '7d')")
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds < 1:
        raise OptionsError(f"{field}: must be at least 1 second")
    if seconds > SIGNED_URL_MAX:
        raise OptionsError(f"{field}: {value!r} is more than 7 days; signed URLs may live at most 7 days (604800 s)")
    return seconds


def _expiry_field(value: Any) -> int:
    try:
        return signed_url_expiry(value, field="")
    except OptionsError as exc:
        raise ValueError(exc.message.lstrip(": ")) from None


#: Use in a deliverer's ``Options``: ``url_expires_in: SignedUrlExpiry = 3600``.
#: Validated with the options (before any network call), stored as seconds.
SignedUrlExpiry = Annotated[int, BeforeValidator(_expiry_field)]


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KNOWN_PLACEHOLDERS = ("name", "version")


def _placeholders(value: str) -> str:
    unknown = [m for m in _PLACEHOLDER.findall(value) if m not in _KNOWN_PLACEHOLDERS]
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}} in {value[:80]!r} (known: {{name}}, {{version}})")
    return value


def _expandable(value: str) -> str:
    _placeholders(value)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{value[:80]!r} contains a control character")
    return value


def _object_prefix(value: str) -> str:
    if value.startswith("/") or "\\" in value:
        raise ValueError(f"{value[:80]!r}: an object name prefix must be relative and use '/'")
    if any(seg in (".", "..") for seg in value.split("/")):
        raise ValueError(f"{value[:80]!r}: '.' and '..' segments are not allowed in an object name prefix")
    return value


#: A string option where ``{name}`` and ``{version}`` are expanded (``Capsule.expand``); a typo
#: like ``{nme}`` is refused with the options, before anything is sent.
Expandable = Annotated[str, AfterValidator(_expandable)]
#: Free text (a commit message, a release title): :data:`Expandable` but several lines are fine.
ExpandableText = Annotated[str, AfterValidator(_placeholders)]
#: A bucket/container key prefix: :data:`Expandable`, relative, without ``.``/``..`` segments.
ObjectPrefix = Annotated[str, AfterValidator(_expandable), AfterValidator(_object_prefix)]


# -- redirects and hosts: where credentials may go ------------------------------------

#: a redirect chain longer than this is refused
MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SAFE_METHODS = ("GET", "HEAD")
#: the only request headers sent to another origin: none of them can carry a secret
_CROSS_ORIGIN_HEADERS = ("accept", "accept-encoding", "user-agent")


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an http(s) URL: lowercase, default port filled in.

    Two URLs are the same origin when all three are equal; a different port is a
    different host for every credential rule. Raises ValueError for anything else.
    """
    parts = urllib.parse.urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError("not an http(s) URL with a host")
    return scheme, host, parts.port or _DEFAULT_PORTS[scheme]


def _show(where: tuple[str, str, int]) -> str:
    scheme, host, port = where
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def check_redirect(method: str, status: int, url: str, location: str | None, *, what: str) -> tuple[str, bool]:
    """The one redirect rule: ``(absolute target, same origin)``, or :class:`RedirectRefused`.

    - same origin (scheme, host and port equal): may be followed with the
      credentials; a method other than GET/HEAD only on 307/308, which keep the
      method and body (301/302/303 would re-send it as a GET);
    - another origin: only GET and HEAD, and the caller sends none of its
      credential headers there (only ``Accept``, ``Accept-Encoding``, ``User-Agent``);
    - https to http, a target that is not http(s), or no ``Location``: refused.

    Messages name only the target's origin: redirect paths often carry signatures.
    """
    method = method.upper()
    if not location:
        raise RedirectRefused(f"{what}: the server answered {status} without a Location; not following it")
    try:
        target = urllib.parse.urljoin(url, location.strip())
        src, dst = origin(url), origin(target)
    except ValueError:
        raise RedirectRefused(
            f"{what}: the server answered {status} with an unusable Location; not following it"
        ) from None
    if src[0] == "https" and dst[0] == "http":
        raise RedirectRefused(f"{what}: the server redirected from https to plain http ({_show(dst)}); refusing")
    if src == dst:
        if method in _SAFE_METHODS or status in (307, 308):
            return target, True
        raise RedirectRefused(
            f"{what}: the server answered {status} to a {method}, which would re-send it as a GET; refusing"
        )
    if method in _SAFE_METHODS:
        return target, False
    raise RedirectRefused(
        f"{what}: the server redirected a {method} to another host ({_show(dst)}); refusing "
        f"(credentials for {_show(src)} never go anywhere else)"
    )


def guard_redirects(session: Any, *, what: str) -> Any:
    """Put :func:`check_redirect` on a ``requests.Session`` (PyGithub, python-gitlab); returns it.

    A response hook sees every 3xx before the client does, and follows it here, so
    it works for clients that let requests follow (python-gitlab) and for those that
    follow themselves (PyGithub): they only ever see the final answer. Same-origin
    hops go through ``session`` with the original headers; the first hop to another
    origin and every hop after it go through a bare session that sends only the
    headers in ``_CROSS_ORIGIN_HEADERS`` (no auth, no cookies, no ``PRIVATE-TOKEN``).
    """

    def hook(resp: Any, **kwargs: Any) -> Any:
        if not 300 <= resp.status_code < 400 or resp.status_code == 304:
            return None
        return _follow(session, resp, kwargs, what)

    session.hooks["response"].append(hook)
    return session


def _follow(session: Any, resp: Any, kwargs: dict[str, Any], what: str) -> Any:
    import requests  # noqa: PLC0415 -- extra: requests (not a core dependency: the session comes from an extra's SDK)

    req, bare = resp.request, None
    for _ in range(MAX_REDIRECTS):
        method = req.method or "GET"
        target, same = check_redirect(method, resp.status_code, req.url, resp.headers.get("location"), what=what)
        resp.close()
        if same and bare is None:
            if req.body is not None and not isinstance(req.body, (bytes, str)):
                raise RedirectRefused(f"{what}: the server answered {resp.status_code} to a streamed upload; refusing")
            nxt = req.copy()
            nxt.prepare_url(target, None)
            nxt.hooks = {"response": []}  # this loop follows the next hop, not a nested hook
            resp = session.send(nxt, allow_redirects=False, **kwargs)
        else:
            if bare is None:
                bare = requests.Session()
                bare.auth = _no_auth  # not even ~/.netrc: nothing but the safe headers goes there
            headers = {k: v for k, v in req.headers.items() if k.lower() in _CROSS_ORIGIN_HEADERS}
            prep = bare.prepare_request(requests.Request(method, target, headers=headers))
            resp = bare.send(prep, allow_redirects=False, **kwargs)
        req = resp.request
        if not 300 <= resp.status_code < 400 or resp.status_code == 304:
            return resp
    raise RedirectRefused(f"{what}: more than {MAX_REDIRECTS} redirects; not following")


def _no_auth(request: Any) -> Any:
    return request


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (brackets allowed): traffic that never leaves the machine."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def operator_allows(env: str, host: str, port: int) -> bool:
    """True when the environment variable ``env`` lists ``host`` (any port) or ``host:port``.

    The list is comma-separated ``host[:port]`` entries; it comes from the operator's
    environment, never from a capsule. An entry that is not ``host[:port]`` is an error
    naming the variable.
    """
    host = host.strip("[]").lower()
    for item in os.environ.get(env, "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            parts = urllib.parse.urlsplit("//" + item)
            if not parts.hostname or parts.path or parts.query or parts.username:
                raise ValueError
            want = parts.port
        except ValueError:
            raise OptionsError(f"{env}: {item[:80]!r} is not host[:port]") from None
        if parts.hostname == host and want in (None, port):
            return True
    return False
