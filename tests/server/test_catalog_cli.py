"""The operator's commands: bad input is one line and exit 2, never a traceback; tokens are shown once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from click.testing import CliRunner

from qlcapsule.cli import main


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_token_create_shows_the_token_once_and_refuses_a_taken_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    code, out = _run("catalog", "token", "create", "--database", url, "--name", "ci", "--scope", "publish", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["token"].startswith("qlc_") and created["scopes"] == ["publish"]
    code, out = _run("catalog", "token", "create", "--database", url, "--name", "ci")
    assert code == 2 and out.strip().endswith("--name: a token named 'ci' exists; revoke it or pick another name")
    code, out = _run("catalog", "token", "create", "--database", url, "--name", "x", "--scope", "root")
    assert code == 2 and "--scope: expected one or more of read, publish, admin, got root" in out
    stored = b"".join(f.read_bytes() for f in tmp_path.glob("c.db*")).decode("latin-1")
    assert created["token"] not in stored and hashlib.sha256(created["token"].encode()).hexdigest() in stored
    assert _run("catalog", "token", "revoke", "--database", url, "--name", "ci") == (0, "revoked ci\n")
    code, out = _run("catalog", "token", "revoke", "--database", url, "--name", "ci")
    assert code == 2 and "no live token named 'ci'" in out


def test_serve_refuses_a_bad_trust_file_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    code, out = _run("serve", "--database", url, "--trust", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert out.strip().endswith("missing.yaml: trust file not found") and "Traceback" not in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("keys: nope\n", encoding="utf-8")
    code, out = _run("serve", "--database", url, "--trust", str(bad))
    assert code == 2 and "a trust file is a non-empty list of keys" in out


def test_publish_refuses_a_report_that_is_not_one(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CATALOG_TOKEN", "qlc_x")
    report = tmp_path / "report.json"
    report.write_text('{"ok": true}', encoding="utf-8")
    code, out = _run("catalog", "publish", "--url", "http://127.0.0.1:9", "--token-env", "CATALOG_TOKEN", str(report))
    assert code == 2 and "not a 'qlcapsule ship --json' report (no 'capsules' list)" in out
    report.write_text("[" * 100 + "]" * 100, encoding="utf-8")
    code, out = _run("catalog", "publish", "--url", "http://127.0.0.1:9", "--token-env", "CATALOG_TOKEN", str(report))
    assert code == 2 and "JSON nested 100 levels deep; at most 32 are accepted" in out
