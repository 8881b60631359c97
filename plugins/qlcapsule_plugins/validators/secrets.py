"""The ``secrets`` validator: private keys, cloud keys and tokens committed by mistake.

A finding names the kind of secret, the file, line and column — never the
secret itself (not even a prefix), so reports, logs and SARIF uploads are
safe to share. Binary files are skipped. The patterns live in core
(:data:`qlcapsule.plugins.findings.SECRET_PATTERNS`): validation hides whatever they
match in every other validator's messages too.

A line can be allowed explicitly with a trailing ``pragma: allowlist secret``
(the detect-secrets convention) or ``qlcapsule: allow-secret`` comment, and
AWS's documentation keys (ending in ``EXAMPLE``) are ignored. A private key
needs its base64 body, not just the BEGIN marker that parsers and docs name;
a password whose value is its own name, an environment variable's name or a
placeholder is not reported.
"""

from __future__ import annotations

import re
from typing import Iterable

from qlcapsule import SECRET_PATTERNS, Capsule, Finding, Register, Rule, Validator, hookimpl

#: what counts as a secret and how to allow a line: the rules' help page (SARIF ``helpUri``)
HELP = "https://github.com/qlcapsule/qlcapsule/blob/main/docs/validation.md#validators-and-rules"
_ALLOW = re.compile(r"pragma:\s*allowlist secret|qlcapsule:\s*allow-secret")
_COMBINED = re.compile("|".join(f"(?P<g{i}>{p.regex})" for i, p in enumerate(SECRET_PATTERNS)))
# the cheap test that lets most files skip the regex scan entirely
_HINTS = (b"PRIVATE KEY", b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"ecret", b"gh", b"github_pat_", b"gl", b"xox", b"AIza", b"k_live_",
          b"assw", b"ECRET", b"api", b"API", b"oken", b"OKEN", b"pikey", b"://")  # fmt: skip
#: base64 characters a key body needs: with its END marker, and without (a file cut short)
_KEY_BODY, _KEY_BODY_NO_END = 64, 256
_PLACEHOLDER = re.compile(
    r"changeme|example|dummy|placeholder|redacted|sample|your|fake|replace|x{4}|\*{3}|\.{3}",
    re.IGNORECASE,
)
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _real(rule: str, m: re.Match[str]) -> bool:
    """False for a match that only looks like a secret (a marker, a name, a placeholder)."""
    if rule == "secrets.aws-access-key":
        return not m.group().endswith("EXAMPLE")
    if rule == "secrets.private-key":
        body = m.group("pk_body").replace("\\n", "").replace("\\r", "")
        chars = re.sub(r"[^A-Za-z0-9+/]", "", body)
        needed = _KEY_BODY if "-----END" in m.group() else _KEY_BODY_NO_END
        return len(chars) >= needed and len(set(chars)) >= 16  # not XXXX... filler
    if rule == "secrets.password-assignment":
        key, value = _norm(m.group("pw_key")), m.group("pw_value")
        return not (
            key in _norm(value) or _ENV_NAME.fullmatch(value) or _PLACEHOLDER.search(value) or len(set(value)) < 4
        )
    if rule == "secrets.url-credentials":
        user, password = m.group("url_user"), m.group("url_pass")
        return not (
            password == user
            or password.startswith(("$", "{", "%", "*"))
            or password.isdigit()  # host:port@ in an odd URL
            or len(password) < 6
            or _PLACEHOLDER.search(password)
            or _norm(password) in ("password", "passwd", "secret")
        )
    return True


class SecretsValidator(Validator):
    name = "secrets"
    description = "no private keys, cloud keys or tokens in the files (the secret is never printed)"
    patterns = ("**",)
    rules = tuple(Rule(p.rule, f"{p.what} appears in a file", p.severity, HELP) for p in SECRET_PATTERNS)

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        if b"\x00" in data[:8192] or not any(h in data for h in _HINTS):
            return
        text = data.decode("utf-8", "replace")
        for m in _COMBINED.finditer(text):
            pattern = SECRET_PATTERNS[int((m.lastgroup or "g0")[1:])]
            if not _real(pattern.rule, m):
                continue
            start = m.start()
            line_start = text.rfind("\n", 0, start) + 1
            line_end = text.find("\n", start)
            if _ALLOW.search(text[line_start : line_end if line_end >= 0 else len(text)]):
                continue
            line = text.count("\n", 0, start) + 1
            column = start - line_start + 1
            yield Finding(
                pattern.rule,
                pattern.severity,
                f"{pattern.what} appears here (value not shown); remove it and rotate it",
                path,
                line,
                column,
            )


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(SecretsValidator)
