"""Small traps of the command line (issue 17, point 8), each closed: what a user typed by mistake is one line, exit 2."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

# -- sign --key PUBLIC ---------------------------------------------------------------------------------------------


def _openssh_public() -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH) + b"\n"


@pytest.mark.parametrize("form", ["pem", "openssh"])
@pytest.mark.parametrize("type_args", [(), ("--type", "ed25519")])
def test_signing_with_a_public_key_says_it_is_a_public_key(
    qlcapsule_cli, make_capsule, tmp_path: Path, form: str, type_args: tuple[str, ...]
) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule()
    if form == "pem":
        assert qlcapsule_cli("keygen", "-o", str(tmp_path / "k.key")).exit_code == 0
        pub = tmp_path / "k.key.pub"
    else:
        pub = tmp_path / "id.pub"
        pub.write_bytes(_openssh_public())
    pub.chmod(0o644)  # as a public key is: readable by all
    res = qlcapsule_cli("sign", str(capsule.root), "--key", str(pub), *type_args)
    assert res.exit_code == 2
    assert res.stderr == f"error: {pub}: a public key; signing needs the private key\n"
    assert not (capsule.root / "capsule.sig").exists()


# -- keygen -o ---------------------------------------------------------------------------------------------------


def test_keygen_does_not_create_missing_directories(qlcapsule_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "no" / "such" / "dir" / "key"
    res = qlcapsule_cli("keygen", "-o", str(target))
    assert res.exit_code == 2 and "no such directory" in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "no").exists()
    (tmp_path / "file").write_text("x")
    res = qlcapsule_cli("keygen", "-o", str(tmp_path / "file" / "key"))
    assert res.exit_code == 2 and "is not a directory" in res.stderr


def _locked(root: Path) -> list[str]:
    return [f["path"] for f in json.loads((root / "capsule.lock").read_text())["files"]]


def test_keygen_refuses_to_put_a_private_key_into_a_capsule(
    qlcapsule_cli, make_capsule, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule({"app.py": "x = 1\n", "sub/a.txt": "a\n"})
    before = sorted(p.name for p in capsule.root.rglob("*"))
    for target in (capsule.root / "signing.priv", capsule.root / "sub" / "ci.secret"):
        res = qlcapsule_cli("keygen", "-o", str(target))
        assert res.exit_code == 2, res.output
        assert "would be inside the capsule" in res.stderr and "capsule.yaml" in res.stderr
    monkeypatch.chdir(capsule.root)
    res = qlcapsule_cli("keygen", "-o", "ci.secret")
    assert res.exit_code == 2 and "capsule in ., " in res.stderr
    assert sorted(p.name for p in capsule.root.rglob("*")) == before  # nothing written
    # the default name: *.key is an output, excluded by default, so written where no seal takes it
    assert qlcapsule_cli("keygen").exit_code == 0
    assert qlcapsule_cli("keygen", "-o", "signing.pem").exit_code == 2  # *.pem is content: refused
    assert qlcapsule_cli("seal", ".").exit_code == 0
    assert "qlcapsule.key" not in _locked(capsule.root)
    # outside the capsule, or excluded by it: written
    assert qlcapsule_cli("keygen", "-o", str(tmp_path / "outside.key")).exit_code == 0
    (capsule.root / "capsule.yaml").write_text("name: demo\nversion: 1.0.0\nexclude: ['*.priv']\n")
    assert qlcapsule_cli("keygen", "-o", "signing.priv").exit_code == 0
    assert qlcapsule_cli("seal", ".").exit_code == 0
    assert "signing.priv" not in _locked(capsule.root) and "signing.priv.pub" in _locked(capsule.root)


# -- export -o - to a terminal -----------------------------------------------------------------------------------


def test_export_to_stdout_refuses_a_terminal_and_streams_into_a_pipe(make_capsule) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule()
    command = [sys.executable, "-m", "qlcapsule", "export", str(capsule.root), "-f", "zip", "-o", "-"]
    env = {**os.environ, "QLCAPSULE_NO_PROGRESS": "1"}
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(command, stdout=slave, stderr=subprocess.PIPE, env=env, timeout=60)
        shown = b""
        while select.select([master], [], [], 0)[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 2
    assert proc.stderr.decode() == (
        "error: -o -: stdout is a terminal, and the export is binary; give a file (-o FILE) or pipe it\n"
    )
    assert shown == b""  # not one byte of the archive on the screen
    piped = subprocess.run(command, capture_output=True, env=env, timeout=60)
    assert piped.returncode == 0 and piped.stdout[:4] == b"PK\x03\x04"
