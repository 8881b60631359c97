"""capsule.lock and capsule.sig are the capsule's own files and sit outside the lock.

Every reader (verify, seal, commit, export, ship, validate) refuses a symlink, which would
read, commit or export whatever it points at, and a FIFO, which would hang the reader.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qlcapsule import Capsule
from qlcapsule.signing.signatures import keygen, sign_capsule

SPECIAL = ["capsule.lock", "capsule.sig"]


def _signed(make_capsule, tmp_path: Path) -> Capsule:  # type: ignore[no-untyped-def]
    cap = make_capsule({"a.txt": "a\n"})
    keygen("ed25519", tmp_path / "k.key")
    sign_capsule(cap.root, tmp_path / "k.key")
    return cap


@pytest.mark.parametrize("special", SPECIAL)
def test_a_symlinked_own_file_is_never_followed(make_capsule, tmp_path: Path, qlcapsule_cli, special: str) -> None:  # type: ignore[no-untyped-def]
    cap = _signed(make_capsule, tmp_path)
    path = cap.root / special
    outside = tmp_path / f"outside-{special}"
    outside.write_bytes(path.read_bytes())  # identical bytes: a reader that follows it would succeed
    path.unlink()
    path.symlink_to(outside)
    store, out = tmp_path / "store.git", tmp_path / "out.tar"
    for args in (
        ["verify", str(cap.root)],
        ["commit", str(cap.root), "--store", str(store)],
        ["export", str(cap.root), "-f", "tar", "-o", str(out)],
    ):
        res = qlcapsule_cli(*args)
        assert res.exit_code == 2, (args, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert f"{special}: is a symlink; {special} must be a regular file" in lines[-1], (args, res.stderr)
        assert "Traceback" not in res.stderr
    assert not out.exists()
    assert not (store / "refs" / "capsules").exists() or not any((store / "refs" / "capsules").rglob("*"))


def test_validate_reports_a_symlinked_signature_as_a_finding(make_capsule, tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    cap = _signed(make_capsule, tmp_path)
    outside = tmp_path / "outside.sig"
    outside.write_bytes(cap.sig_path.read_bytes())
    cap.sig_path.unlink()
    cap.sig_path.symlink_to(outside)
    res = qlcapsule_cli("validate", str(cap.root), "--json")
    assert res.exit_code == 1, res.stdout + res.stderr
    assert "signature.malformed" in res.stdout and "is a symlink" in res.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("special", SPECIAL)
def test_a_fifo_own_file_fails_at_once_instead_of_hanging(make_capsule, tmp_path: Path, special: str) -> None:  # type: ignore[no-untyped-def]
    """Run in a child with a timeout: before the fix, open() on the FIFO blocked forever."""
    cap = _signed(make_capsule, tmp_path)
    path = cap.root / special
    path.unlink()
    os.mkfifo(path)
    env = dict(os.environ, QLCAPSULE_HOME=str(tmp_path / "home"), QLCAPSULE_NO_PROGRESS="1")
    commands = [["verify", str(cap.root)], ["commit", str(cap.root), "--store", str(tmp_path / "s.git")]]
    for args in commands:
        res = subprocess.run(
            [sys.executable, "-m", "qlcapsule", *args], capture_output=True, text=True, timeout=60, env=env
        )
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert f"{special}: is not a regular file" in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
    if special == "capsule.lock":  # seal replaces it (never writes through it)
        res = subprocess.run(
            [sys.executable, "-m", "qlcapsule", "seal", str(cap.root)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert res.returncode == 0, res.stderr
        assert path.is_file() and not path.is_symlink()
        Capsule.load(cap.root).verify_integrity()


def test_seal_replaces_a_symlinked_lock_instead_of_writing_through_it(make_capsule, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cap = make_capsule({"a.txt": "a\n"})
    outside = tmp_path / "victim.txt"
    outside.write_text("not yours\n")
    cap.lock_path.unlink()
    cap.lock_path.symlink_to(outside)
    Capsule.load(cap.root).seal()
    assert outside.read_text() == "not yours\n"
    assert not cap.lock_path.is_symlink()


def test_a_temp_file_left_by_a_killed_seal_is_not_sealed(make_capsule) -> None:  # type: ignore[no-untyped-def]
    cap = make_capsule({"a.txt": "a\n"})
    (cap.root / ".capsule.lock.0123456789abcdef.tmp").write_text("{half a lock")
    (cap.root / ".capsule.sig.fedcba9876543210.tmp").write_text("{half")
    (cap.root / ".capsule.lock.notatemp.tmp").write_text("a user's file\n")
    lock = Capsule.load(cap.root).seal().lock
    assert [f.path for f in lock.files] == [".capsule.lock.notatemp.tmp", "a.txt", "capsule.yaml"]
