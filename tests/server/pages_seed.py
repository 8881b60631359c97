"""Publications for the pages' tests, built with qlcapsule's public API (a lock and, when signed, a DSSE
envelope) and sent through the real publish API; the text fields carry markup, so every page shows whether
publisher text is escaped."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

XSS = '<img src=x onerror="window.__xss=1">'
XSS_PATH = 'docs/<img src=x onerror="window.__xss=1">.md'
#: the help page a seeded finding links to (as zizmor's findings carry theirs)
HELP = "https://docs.zizmor.sh/audits/#template-injection"


def publication(
    name: str,
    version: str,
    *,
    key: Path | None = None,
    files: dict[str, str] | None = None,
    template: tuple[str, str] | None = None,
    commit: str | None = None,
    parents: list[str] | None = None,
    tags: list[str] | None = None,
    findings: list[dict[str, Any]] | None = None,
    score: float | None = 0.9,
    receipts: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    from qlcapsule import Envelope, LockEntry, Statement, capsule_digest

    files = files or {"app.py": f"print({name!r}, {version!r})\n"}
    definition = None
    if labels is not None:  # sealed in the lock and sent as the publication's capsule.yaml
        definition = f"name: {name}\nversion: {version}\nlabels:\n" + "".join(
            f"  {k}: {v}\n" for k, v in labels.items()
        )
        files = {**files, "capsule.yaml": definition}
    entries = [
        LockEntry(p, hashlib.sha256(t.encode()).hexdigest(), len(t.encode()), "644") for p, t in sorted(files.items())
    ]
    digest = capsule_digest(entries)
    lock = {
        "lockVersion": 1,
        "algorithm": "sha256",
        "name": name,
        "version": version,
        "digest": digest,
        "files": [e._asdict() for e in entries],
    }
    envelope = None
    if key is not None:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        generator = {"template": template[0], "version": template[1]} if template else None
        payload = Statement.build(
            name=name,
            version=version,
            digest=digest,
            files=len(entries),
            created=dt.datetime.now(dt.timezone.utc),
            generator=generator,
        )
        private = load_pem_private_key(key.read_bytes(), None)
        sig = private.sign(Envelope(payload=payload).pae())  # type: ignore[call-arg,union-attr]
        envelope = json.dumps(
            {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": Envelope(payload=payload).payload_type,
                "signatures": [{"keyid": "hint", "sig": base64.b64encode(sig).decode()}],
            }
        )
    capsule = {
        "name": name,
        "version": version,
        "digest": digest,
        "score": score,
        "findings": findings or [],
        "artifacts": [],
        "receipts": receipts or [],
        "commit": commit,
    }
    pub: dict[str, Any] = {"capsule": capsule, "lock": json.dumps(lock), "repository": f"/srv/store-{name}.git"}
    if envelope:
        pub["envelope"] = envelope
    if definition is not None:
        pub["definition"] = definition
    pub["parents"] = parents or []
    pub["tags"] = tags or []
    return pub


def seed(call: Any, token: str, key: Path) -> None:
    """A small catalog: a lineage with a merge, a template two versions ahead, findings and deliveries, and
    markup in every publisher-controlled text field."""
    c = [f"{i:040x}" for i in range(1, 6)]
    finding = {
        "rule": "python.syntax",
        "severity": "error",
        "message": f"bad {XSS}",
        "path": XSS_PATH,
        "validator": "python",
        "extra": {"help_uri": "javascript:alert(1)"},  # not https: shown as text, never a link
    }
    helped = {
        "rule": "zizmor.template-injection",
        "severity": "warning",
        "message": "template expansion in run",
        "path": ".github/workflows/ci.yml",
        "line": 7,
        "validator": "zizmor",
        "extra": {"help_uri": HELP},
    }
    crafted = {**helped, "line": 9, "extra": {"help_uri": 'https://docs.zizmor.sh/"><img src=x onerror=1>'}}
    pubs = [
        publication("web", "1.0.0", key=key, commit=c[0], template=("tpl-svc", "1.0.0"), tags=["v1.0.0"]),
        publication(
            "web",
            "1.1.0",
            key=key,
            commit=c[1],
            parents=[c[0]],
            template=("tpl-svc", "1.0.0"),
            files={"app.py": "x = 1\n", XSS_PATH: "hi\n"},
            findings=[finding, helped, crafted],
            score=0.5,
        ),
        publication("web", "1.2.0-rc", key=key, commit=c[2], parents=[c[0]], template=("tpl-svc", "1.0.0")),
        publication("web", "2.0.0", key=key, commit=c[3], parents=[c[1], c[2]], template=("tpl-svc", "1.0.0")),
        publication("api", "0.1.0", key=key, template=("tpl-svc", "3.0.0")),
        publication("api", "0.2.0", key=None, template=None, score=None, labels={"team": "payments", "tier": "gold"}),
    ]
    for pub in pubs:
        status, body = call("/api/v1/publish", token, "POST", pub)
        assert status in (200, 201), body
    for target, status_, detail in (("prod-s3", "delivered", None), (f"t{XSS}", "failed", f"boom {XSS}")):
        report = {"capsule": "web", "version": "2.0.0", "target": target, "provider": "s3", "status": status_}
        status, body = call("/api/v1/deliveries", token, "POST", {**report, "detail": detail, "bytes": 1234})
        assert status == 200, body
