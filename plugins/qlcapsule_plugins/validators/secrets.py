"""The ``secrets`` validator: private keys, cloud keys and tokens committed by mistake.

A finding names the kind of secret, the file, line and column — never the
secret itself (not even a prefix), so reports, logs and SARIF uploads are
safe to share. Binary files are skipped. The patterns live in core
(:data:`qlcapsule.plugins.findings.SECRET_PATTERNS`): validation hides whatever they
match in every other validator's messages too.

A line can be allowed explicitly with a trailing ``pragma: allowlist secret``
(the detect-secrets convention) or ``qlcapsule: allow-secret`` comment, and
the well-known public keys (AWS's documentation keys ending in ``EXAMPLE``,
Azurite's development storage key) are ignored. A private key needs its
base64 body, not just the BEGIN marker that parsers and docs name; a JWT
needs a header that decodes to JSON naming its ``alg``; a password whose
value is a name, an environment variable's name, a template reference or a
placeholder is not reported, and a bare (unquoted) value counts only where a
bare value is a literal — not in source code, where it is an expression.
Each kind is scanned for on its own (and only in a file holding one of its
hint strings), so a match that is not reported (``access_token:`` with a value
too long to be a password) does not hide a secret of another kind inside it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import PurePosixPath
from typing import Callable, Iterable

from qlcapsule import SECRET_PATTERNS, Capsule, Finding, Register, Rule, Validator, hookimpl

#: what counts as a secret and how to allow a line: the rules' help page (SARIF ``helpUri``)
HELP = "https://github.com/qlcapsule/qlcapsule/blob/main/docs/validation.md#what-the-secrets-validator-finds"
_ALLOW = re.compile(r"pragma:\s*allowlist secret|qlcapsule:\s*allow-secret")
_GENERIC = ("secrets.password-assignment", "secrets.url-credentials")
#: the kinds known by their shape: an assignment whose value is one is left to its own rule and severity
_SHAPED = re.compile("|".join(p.regex for p in SECRET_PATTERNS if p.rule not in _GENERIC))
#: per rule, strings one of which every match holds: a file holding none is not scanned for that kind, so
#: most files run two or three of the patterns. Hints are looked for in the file and in it lower-cased.
_HINTS: dict[str, tuple[bytes, ...]] = {
    "secrets.private-key": (b"PRIVATE KEY",),
    "secrets.aws-access-key": (b"AKIA", b"ASIA", b"ABIA", b"ACCA"),
    "secrets.aws-secret-key": (b"aws",),
    "secrets.github-token": (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_"),
    "secrets.gitlab-token": (b"glpat-", b"gldt-", b"glrt-", b"glptt-", b"glcbt-"),
    "secrets.slack-token": (b"xox", b"xapp-"),
    "secrets.slack-webhook": (b"hooks.slack.com/",),
    "secrets.google-api-key": (b"AIza",),
    "secrets.stripe-key": (b"k_live_",),
    "secrets.twilio-key": (b"SK",),
    "secrets.npm-token": (b"npm_", b":_authToken"),
    "secrets.azure-storage-key": (b"accountkey", b"sharedaccesskey"),
    "secrets.jwt": (b"eyJ",),
    "secrets.url-credentials": (b"://",),
    "secrets.password-assignment": (b"pass", b"secret", b"key", b"token"),
}
#: each pattern on its own: alone, a pattern starting with a literal is searched for like a string, and a
#: match that is not a secret (an assignment of a name) cannot hide one of another kind inside it
_SCANS = [(i, re.compile(p.regex), _HINTS.get(p.rule)) for i, p in enumerate(SECRET_PATTERNS)]
#: matches kept per rule and file: validation lists 200 findings per file
_PER_RULE = 201
#: base64 characters a key body needs: with its END marker, and without (a file cut short)
_KEY_BODY, _KEY_BODY_NO_END = 64, 256
_PLACEHOLDER = re.compile(
    r"changeme|changeit|example|dummy|placeholder|redacted|sample|your|fake|replace|x{4}|\*{3}|\.{3}",
    re.IGNORECASE,
)
#: a value that is filled in later: ${VAR}, $(cmd), {{ jinja }}, {% %}, <angle>, %(fmt)s, #{ruby}, SOPS' ENC[...]
_REFERENCE = re.compile(r"^[$%{\[(*&!|>]|\$\{|\$\(|\{\{|\{%|[<>]|%\(|#\{|^ENC\[")
#: a value naming what it is rather than being it ("db_password", "my-secret", "API_TOKEN")
_NAMES = re.compile(r"passw(?:or)?d|passphrase|secret|token|api[_.-]?key")
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
#: where an unquoted value is an expression (a variable, a call), never a literal
_CODE_SUFFIXES = frozenset(
    ".py .pyi .js .mjs .cjs .jsx .ts .tsx .go .rb .java .kt .kts .scala .groovy .gradle .cs .fs .vb .php .rs .c .h"
    " .cc .cpp .hpp .m .mm .swift .dart .lua .pl .pm .r .jl .ex .exs .erl .clj .tf .hcl .nix .ps1".split()
)
#: how far past a bare value the validator looks for the end of its line
_LOOK_AHEAD = 1000
#: SHA-256 of Azurite's storage key, which Microsoft publishes for the local emulator
_AZURITE_KEY = "0011cc25eb4320717494d2703e8cba85743e71b500283c21c8b88147992f9059"


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _random(value: str, distinct: int) -> bool:
    """False for a value too uniform to be a secret (``XXXX``, ``0000``, ``T00000000/B00000000``)."""
    return len(set(value)) >= distinct and not _PLACEHOLDER.search(value)


def _private_key(m: re.Match[str], path: str) -> bool:
    body = m.group("pk_body").replace("\\n", "").replace("\\r", "")
    chars = re.sub(r"[^A-Za-z0-9+/]", "", body)
    needed = _KEY_BODY if "-----END" in m.group() else _KEY_BODY_NO_END
    return len(chars) >= needed and len(set(chars)) >= 16  # not XXXX... filler


def _jwt(m: re.Match[str], path: str) -> bool:
    header = m.group().split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    except (binascii.Error, ValueError):
        return False
    return raw.startswith(b"{") and b'"alg"' in raw  # every JWS and JWE header names its algorithm


def _npm(m: re.Match[str], path: str) -> bool:
    value = m.group("npm_value")
    return value is None or (not _ENV_NAME.fullmatch(value) and _random(value, 8))


def _azure(m: re.Match[str], path: str) -> bool:
    value = m.group("az_value")
    return _random(value, 10) and hashlib.sha256(value.encode()).hexdigest() != _AZURITE_KEY


def _bare_literal(m: re.Match[str], path: str) -> bool:
    """An unquoted value is a literal outside source code, when nothing but a comment follows it."""
    if PurePosixPath(path).suffix.lower() in _CODE_SUFFIXES:
        return False
    text, end = m.string, m.end()
    eol = text.find("\n", end, end + _LOOK_AHEAD)  # bounded: a 10 MiB line is not read once per match
    if eol < 0:
        if end + _LOOK_AHEAD < len(text):
            return False
        eol = len(text)
    rest = text[end:eol].strip()
    return not rest or rest[0] in "#;"


def _password(m: re.Match[str], path: str) -> bool:
    value = m.group("pw_value")
    if not m.group("pw_q") and not _bare_literal(m, path):
        return False
    return not (
        _REFERENCE.search(value)
        or len(set(value)) < 4
        or _ENV_NAME.fullmatch(value)
        or _NAMES.search(value.lower())
        or _PLACEHOLDER.search(value)
        or _SHAPED.search(value)
    )


def _url_password(m: re.Match[str], path: str) -> bool:
    user, password = m.group("url_user"), m.group("url_pass")
    return not (
        password == user
        or password.startswith(("$", "{", "%", "*"))
        or password.isdigit()  # host:port@ in an odd URL
        or len(password) < 6
        or _PLACEHOLDER.search(password)
        or _norm(password) in ("password", "passwd", "secret")
    )


#: per rule, what tells a real secret from a match that only looks like one (a marker, a name, a placeholder)
_CHECKS: dict[str, Callable[[re.Match[str], str], bool]] = {
    "secrets.private-key": _private_key,
    "secrets.aws-access-key": lambda m, path: not m.group().endswith("EXAMPLE"),
    "secrets.slack-webhook": lambda m, path: _random(m.group("slack_hook"), 10),
    "secrets.twilio-key": lambda m, path: _random(m.group(), 8),
    "secrets.npm-token": _npm,
    "secrets.azure-storage-key": _azure,
    "secrets.jwt": _jwt,
    "secrets.url-credentials": _url_password,
    "secrets.password-assignment": _password,
}


class SecretsValidator(Validator):
    name = "secrets"
    description = "no private keys, cloud keys or tokens in the files (the secret is never printed)"
    patterns = ("**",)
    rules = tuple(Rule(p.rule, f"{p.what} appears in a file", p.severity, HELP) for p in SECRET_PATTERNS)

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        if b"\x00" in data[:8192]:
            return
        lower = data.lower()
        scans = [(i, rx) for i, rx, hints in _SCANS if hints is None or any(h in data or h in lower for h in hints)]
        if not scans:
            return
        text = data.decode("utf-8", "replace")
        shown_to = line = line_start = 0
        line_end = -1  # where the line holding line_start ends; -1 before the first finding
        for start, end, i in sorted(_matches(text, path, scans), key=lambda t: (t[0], -t[1])):
            if start < shown_to:
                continue  # inside a secret already reported (a token as a URL's password, a key's body)
            shown_to = end
            if start > line_end:  # counted from the last finding's line, so a file is read once
                line += text.count("\n", line_start, start)
                line_start = text.rfind("\n", 0, start) + 1
                found = text.find("\n", start)
                line_end = found if found >= 0 else len(text)
            if _ALLOW.search(text, line_start, line_end):
                continue
            pattern = SECRET_PATTERNS[i]
            yield Finding(
                pattern.rule,
                pattern.severity,
                f"{pattern.what} appears here (value not shown); remove it and rotate it",
                path,
                line + 1,
                start - line_start + 1,
            )


def _matches(text: str, path: str, scans: list[tuple[int, re.Pattern[str]]]) -> list[tuple[int, int, int]]:
    """(start, end, index in SECRET_PATTERNS) of each pattern's first matches that are secrets."""
    out = []
    for i, regex in scans:
        check, pos, kept = _CHECKS.get(SECRET_PATTERNS[i].rule), 0, 0
        while kept < _PER_RULE and (m := regex.search(text, pos)):
            if check is not None and not check(m, path):
                # a rejected match may overlap a real one of the same kind: an assignment's value may hold the
                # next assignment (its name holds no other keyword), anything else is tried one character on
                pos = m.start("pw_value") if "pw_value" in regex.groupindex else m.start() + 1
                continue
            out.append((m.start(), m.end(), i))
            pos, kept = m.end(), kept + 1
    return out


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(SecretsValidator)
