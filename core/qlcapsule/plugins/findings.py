"""Findings: what validators report, and the score computed from them."""

from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass, field
from typing import Any


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"

    @property
    def rank(self) -> int:
        return {"error": 2, "warning": 1, "note": 0}[self.value]


@dataclass(frozen=True)
class Rule:
    """A check a validator can report: ``id`` like ``python.syntax``."""

    id: str
    description: str
    severity: Severity = Severity.ERROR
    help_uri: str | None = None


@dataclass(frozen=True)
class Engine:
    """An external engine a validator runs (a schema library, zizmor, hadolint), as found installed.

    ``version`` is None when the engine is missing; ``install`` is the command that
    brings it (``pip install 'qlcapsule[hadolint]'``). ``optional`` engines come with
    an extra; a missing one that is not optional means the install is broken, and
    validation says so in a finding instead of checking less in silence.
    """

    name: str
    version: str | None
    install: str
    purpose: str
    optional: bool = False

    @property
    def present(self) -> bool:
        return self.version is not None


@dataclass
class Finding:
    """One problem found in a capsule. Lines and columns are 1-based."""

    rule: str
    severity: Severity
    message: str
    path: str | None = None
    line: int | None = None
    column: int | None = None
    end_line: int | None = None
    end_column: int | None = None
    validator: str = ""
    capsule: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return {k: v for k, v in data.items() if v not in (None, {}, "")}

    def location(self) -> str:
        where = self.path or "."
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return where

    def text(self) -> str:
        return f"{self.location()}: {self.severity.value}: {self.message} [{self.rule}]"


def meets(severity: Severity, fail_on: str) -> bool:
    """True when a finding of ``severity`` fails a run with ``--fail-on fail_on``."""
    if fail_on == "never":
        return False
    return severity.rank >= Severity(fail_on).rank


# -- secrets ---------------------------------------------------------------------------
# What the ``secrets`` validator looks for. It lives here, in core, because no report may
# show a secret whichever validator quotes it: validation passes every finding's message
# through :func:`redact_secrets`, so a plugin that quotes a line cannot leak one.

_NL = r"(?:\r?\n|\\r\\n|\\n)"  # a line break, or one escaped inside a JSON/YAML string
_PEM_LABEL = r"(?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?"
#: names a password assignment ends with; a bare "secret" only as the whole name, since Helm's
#: existingSecret, imagePullSecret or tlsSecret name a Kubernetes Secret, not a value
_PW_KEYWORDS = (
    r"passw(?:or)?d|passphrase|(?<![A-Za-z0-9_.-])secret"
    r"|(?:client|app|api|jwt|webhook|signing|session|shared)[_.-]?secret"
    r"|secret[_.-]?key|api[_.-]?key|(?:auth|access|api|bearer|refresh)[_.-]?token"
)


@dataclass(frozen=True)
class SecretPattern:
    """One kind of secret: ``regex`` matches it in context; the named group ``value``
    (when set) is the secret itself, else the whole match is."""

    rule: str
    what: str
    regex: str
    value: str | None = None
    severity: Severity = Severity.ERROR


SECRET_PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern(
        "secrets.private-key",
        "a private key",
        # a BEGIN marker alone is not a key (parsers and docs name the markers): it takes
        # base64 body lines and the matching END marker, or a body running to the end of the file
        rf"-----BEGIN (?P<pk_label>{_PEM_LABEL})-----[ \t]*{_NL}"
        rf"(?:[ \t]*[A-Za-z][A-Za-z0-9-]*:[^\r\n\\]*{_NL})*(?:[ \t]*{_NL})?"  # Proc-Type, DEK-Info, Version
        rf"(?P<pk_body>(?:[ \t]*[A-Za-z0-9+/=]+[ \t]*(?:{_NL}|\Z))+)"
        r"(?:[ \t]*-----END (?P=pk_label)-----|\s*\Z)",
    ),
    SecretPattern("secrets.aws-access-key", "an AWS access key ID", r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    SecretPattern(
        "secrets.aws-secret-key",
        "an AWS secret access key",
        r"(?i:aws_?secret_?access_?key)[\"']?\s*[:=]\s*[\"']?(?P<aws_value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
        "aws_value",
    ),
    SecretPattern(
        "secrets.github-token",
        "a GitHub token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{82})\b",
    ),
    SecretPattern("secrets.gitlab-token", "a GitLab token", r"\bgl(?:pat|dt|rt|ptt|cbt)-[A-Za-z0-9_-]{20,}"),
    SecretPattern(
        "secrets.slack-token",
        "a Slack token",
        # each kind has a numeric segment after its prefix, which docs' "xoxb-your-token" lacks
        r"\b(?:xox[abposr]-\d+-[A-Za-z0-9-]{8,}|xoxe(?:\.xox[bp])?-\d-[A-Za-z0-9]{100,}|xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]{20,})",
    ),
    SecretPattern(
        "secrets.slack-webhook",
        "a Slack webhook URL",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<slack_hook>[A-Za-z0-9_/+-]{30,160})",
        "slack_hook",
    ),
    SecretPattern("secrets.google-api-key", "a Google API key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
    SecretPattern("secrets.stripe-key", "a Stripe secret key", r"\b[rs]k_live_[0-9A-Za-z]{24,}\b"),
    SecretPattern("secrets.twilio-key", "a Twilio API key", r"\bSK[0-9a-fA-F]{32}\b"),
    SecretPattern(
        "secrets.npm-token",
        "an npm token",
        r"\bnpm_[A-Za-z0-9]{36}\b|:_authToken[ \t]*=[ \t]*(?P<npm_value>[A-Za-z0-9_+/=-]{20,200})",
        "npm_value",
    ),
    SecretPattern(
        "secrets.azure-storage-key",
        "an Azure storage or shared access key",
        r"(?i:accountkey|sharedaccesskey)[ \t]*=[ \t]*(?P<az_value>[A-Za-z0-9+/]{40,100}={0,2})",
        "az_value",
    ),
    SecretPattern(
        "secrets.jwt",
        "a JSON Web Token",
        # starts only where a run of base64url starts: a long run of "eyJ" without dots stays linear
        r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}(?:\.[A-Za-z0-9_-]+)?",
        severity=Severity.WARNING,
    ),
    SecretPattern(
        "secrets.url-credentials",
        "a password in a URL",
        r"://(?P<url_user>[^\s/:@'\"<>]*):(?P<url_pass>[^\s/@'\"<>]+)@",
        "url_pass",
        Severity.WARNING,
    ),
    SecretPattern(
        "secrets.password-assignment",
        "a hard-coded password",
        # the keyword ends the name (DB_PASSWORD, dbPassword, db.password, "password"); the value is quoted,
        # or bare to the end of the line where bare values are literals (the validator decides that)
        # (the lookahead of the keywords' first letters makes scanning other text several times faster)
        rf"(?=[PpSsCcAaJjWwBbRr])(?P<pw_key>(?i:{_PW_KEYWORDS}))(?![A-Za-z0-9_.-])[\"']?[ \t]*(?:=>|:=|[:=])[ \t]*"
        r"(?P<pw_q>[\"']?)(?P<pw_value>[^\s\"'`]{8,200})(?P=pw_q)",
        "pw_value",
        Severity.WARNING,
    ),
)

_redactors: list[tuple[re.Pattern[str], str | None]] = []


def redact_secrets(text: str) -> str:
    """``text`` with every secret :data:`SECRET_PATTERNS` would match replaced by ``***``.

    Matching ignores case here (a validator may have upper-cased what it quotes), and
    placeholders are hidden too: hiding a little too much is harmless in a message.
    """
    if len(text) < 10:
        return text
    if not _redactors:
        _redactors.extend((re.compile(p.regex, re.IGNORECASE), p.value) for p in SECRET_PATTERNS)
    for regex, group in _redactors:
        text = regex.sub(lambda m, g=group: _mask(m, g), text)  # type: ignore[misc]
    return text


def _mask(m: re.Match[str], group: str | None) -> str:
    if group is None or m.group(group) is None:
        return "***"
    start, end = m.span(group)
    whole = m.group()
    return whole[: start - m.start()] + "***" + whole[end - m.start() :]


#: the longest stretch of source text a message quotes
QUOTE_LIMIT = 120


def clip(text: object, limit: int = QUOTE_LIMIT) -> str:
    """Source text for a message: secrets hidden, cut to ``limit`` characters with '…'.

    Secrets are hidden before cutting, so a cut never leaves part of one.
    """
    shown = redact_secrets(str(text))
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def quote(text: object, limit: int = QUOTE_LIMIT) -> str:
    """:func:`clip`, ``repr``-quoted: ``'foo[ @ https://x:***@h/p.whl'``."""
    return repr(clip(text, limit))
