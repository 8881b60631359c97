"""The ``secrets`` validator: private keys, cloud keys and tokens committed by mistake.

A finding names the kind of secret, the file, line and column — never the
secret itself (not even a prefix), so reports, logs and SARIF uploads are
safe to share. Binary files are skipped.

A line can be allowed explicitly with a trailing ``pragma: allowlist secret``
(the detect-secrets convention) or ``qlcapsule: allow-secret`` comment, and
AWS's documentation keys (ending in ``EXAMPLE``) are ignored.
"""

from __future__ import annotations

import re
from typing import Iterable

from qlcapsule import Capsule, Finding, Rule, Severity, Validator, hookimpl

# (rule id, what it is, regex). Each regex matches the secret, nothing is captured for output.
_PATTERNS: tuple[tuple[str, str, str], ...] = (
    (
        "secrets.private-key",
        "a private key",
        r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
    ),
    ("secrets.aws-access-key", "an AWS access key ID", r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    (
        "secrets.aws-secret-key",
        "an AWS secret access key",
        r"(?i:aws_?secret_?access_?key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])",
    ),
    ("secrets.github-token", "a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{82})\b"),
    ("secrets.gitlab-token", "a GitLab token", r"\bgl(?:pat|dt|rt|ptt|cbt)-[A-Za-z0-9_-]{20,}"),
    ("secrets.slack-token", "a Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("secrets.google-api-key", "a Google API key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
    ("secrets.stripe-key", "a Stripe secret key", r"\b[rs]k_live_[0-9A-Za-z]{24,}\b"),
    (
        "secrets.password-assignment",
        "a hard-coded password",
        r"\b(?i:password|passwd|secret_key|api_key|apikey|auth_token|access_token)\b[\"']?\s*[:=]\s*[\"']"
        r"(?!\$\{|\{\{|<|(?i:changeme|example|dummy|xxx)|\*\*\*)[^\"'\s]{12,}[\"']",
    ),
)
_ALLOW = re.compile(r"pragma:\s*allowlist secret|qlcapsule:\s*allow-secret")
_COMBINED = re.compile("|".join(f"(?P<g{i}>{p[2]})" for i, p in enumerate(_PATTERNS)))
# the cheap test that lets most files skip the regex scan entirely
_HINTS = (b"PRIVATE KEY", b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"ecret", b"gh", b"github_pat_", b"gl", b"xox", b"AIza", b"k_live_",
          b"assw", b"ECRET", b"api", b"API", b"oken", b"OKEN", b"pikey")  # fmt: skip


class SecretsValidator(Validator):
    name = "secrets"
    description = "no private keys, cloud keys or tokens in the files (the secret is never printed)"
    patterns = ("**",)
    rules = tuple(
        Rule(
            rule,
            f"{what} appears in a file",
            Severity.WARNING if rule == "secrets.password-assignment" else Severity.ERROR,
        )
        for rule, what, _ in _PATTERNS
    )

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        if b"\x00" in data[:8192] or not any(h in data for h in _HINTS):
            return
        text = data.decode("utf-8", "replace")
        for m in _COMBINED.finditer(text):
            index = int((m.lastgroup or "g0")[1:])
            rule, what, _ = _PATTERNS[index]
            if rule == "secrets.aws-access-key" and m.group().endswith("EXAMPLE"):
                continue
            start = m.start()
            line_start = text.rfind("\n", 0, start) + 1
            line_end = text.find("\n", start)
            if _ALLOW.search(text[line_start : line_end if line_end >= 0 else len(text)]):
                continue
            line = text.count("\n", 0, start) + 1
            column = start - line_start + 1
            severity = Severity.WARNING if rule == "secrets.password-assignment" else Severity.ERROR
            yield Finding(
                rule, severity, f"{what} appears here (value not shown); remove it and rotate it", path, line, column
            )


@hookimpl
def qlcapsule_register_validators(register):  # type: ignore[no-untyped-def]
    register(SecretsValidator)
