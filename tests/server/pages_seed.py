"""Publications for the pages' tests and the catalog bench, built with qlcapsule's own lock and DSSE envelope
writers and sent through the real publish API; the text fields carry markup, so every page shows whether
publisher text is escaped."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from qlcapsule import Envelope, Lock

XSS = '<img src=x onerror="window.__xss=1">'
XSS_PATH = 'docs/<img src=x onerror="window.__xss=1">.md'
#: the help page a seeded finding links to (as zizmor's findings carry theirs)
HELP = "https://docs.zizmor.sh/audits/#template-injection"


def sealed(name: str, version: str, files: dict[str, str]) -> Lock:
    """The lock of a capsule holding ``files`` (mode 644), by the core's own lock writer."""
    from qlcapsule.format.lock import build_lock
    from qlcapsule.format.tree import FileEntry

    return build_lock(
        name,
        version,
        [FileEntry(p, hashlib.sha256(t.encode()).hexdigest(), len(t.encode()), "644") for p, t in files.items()],
    )


def lock_text(lock: Lock) -> str:
    """capsule.lock as the core writes it."""
    from qlcapsule.format.lock import render_lock

    return render_lock(lock).decode("utf-8")


def signed(private: Any, payload: bytes, keyid: str) -> str:
    """The DSSE envelope (capsule.sig) of ``payload`` signed by ``private`` (a cryptography key), as the core writes it."""
    from qlcapsule.signing.envelope import EnvelopeSignature

    envelope = Envelope(payload=payload)
    envelope.signatures.append(EnvelopeSignature(keyid, private.sign(envelope.pae())))
    return envelope.to_json().decode("utf-8")


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
    from qlcapsule import Statement

    files = files or {"app.py": f"print({name!r}, {version!r})\n"}
    definition = None
    if labels is not None:  # sealed in the lock and sent as the publication's capsule.yaml
        definition = f"name: {name}\nversion: {version}\nlabels:\n" + "".join(
            f"  {k}: {v}\n" for k, v in labels.items()
        )
        files = {**files, "capsule.yaml": definition}
    lock = sealed(name, version, files)
    digest, entries = lock.digest, lock.files
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
        envelope = signed(load_pem_private_key(key.read_bytes(), None), payload, "hint")
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
    pub: dict[str, Any] = {"capsule": capsule, "lock": lock_text(lock), "repository": f"/srv/store-{name}.git"}
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
