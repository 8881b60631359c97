"""The tamper matrix: every change to a sealed capsule is detected and named."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

FILES = {
    "app/main.py": "print('hello')\n",
    "app/util.py": "X = 1\n",
    "run.sh": "#!/bin/sh\necho hi\n",
    "README.md": "# demo\n",
}


def _modify(root: Path) -> None:
    (root / "app/main.py").write_text("print('evil')\n")


def _modify_same_size(root: Path) -> None:
    (root / "app/main.py").write_text("print('hellO')\n")


def _truncate(root: Path) -> None:
    (root / "README.md").write_bytes(b"")


def _add(root: Path) -> None:
    (root / "app/backdoor.py").write_text("import os\n")


def _remove(root: Path) -> None:
    (root / "app/util.py").unlink()


def _rename(root: Path) -> None:
    (root / "app/util.py").rename(root / "app/utils.py")


def _chmod(root: Path) -> None:
    os.chmod(root / "README.md", 0o755)


def _chmod_exec_off(root: Path) -> None:
    os.chmod(root / "run.sh", 0o644)


def _symlink(root: Path) -> None:
    (root / "app/util.py").unlink()
    os.symlink("/etc/passwd", root / "app/util.py")


def _edit_lock_hash(root: Path) -> None:
    lock = json.loads((root / "capsule.lock").read_text())
    lock["files"][0]["sha256"] = "0" * 64
    (root / "capsule.lock").write_text(json.dumps(lock))


def _edit_lock_consistently(root: Path) -> None:
    # The attacker edits a file AND its lock entry, but cannot fix the digest without a new seal.
    (root / "app/main.py").write_text("print('evil')\n")
    lock = json.loads((root / "capsule.lock").read_text())
    import hashlib

    for f in lock["files"]:
        if f["path"] == "app/main.py":
            data = (root / "app/main.py").read_bytes()
            f["sha256"], f["size"] = hashlib.sha256(data).hexdigest(), len(data)
    (root / "capsule.lock").write_text(json.dumps(lock))


def _delete_lock(root: Path) -> None:
    (root / "capsule.lock").unlink()


def _edit_definition(root: Path) -> None:
    (root / "capsule.yaml").write_text("name: demo\nversion: 9.9.9\n")


def _definition_renamed_capsule(root: Path) -> None:
    (root / "capsule.yaml").write_text("name: other\nversion: 1.0.0\n")


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "modify": (_modify, "modified: app/main.py"),
    "modify-same-size": (_modify_same_size, "modified: app/main.py"),
    "truncate": (_truncate, "modified: README.md"),
    "add": (_add, "added: app/backdoor.py"),
    "remove": (_remove, "removed: app/util.py"),
    "rename": (_rename, "renamed: app/util.py -> app/utils.py"),
    "chmod+x": (_chmod, "mode changed: README.md"),
    "chmod-x": (_chmod_exec_off, "mode changed: run.sh"),
    "symlink": (_symlink, "modified: app/util.py (now a symlink; sealed as a regular file)"),
    "lock-hash-edited": (_edit_lock_hash, "digest does not match its file list"),
    "lock-and-file-edited": (_edit_lock_consistently, "digest does not match its file list"),
    "lock-deleted": (_delete_lock, "not sealed"),
    "definition-edited": (_edit_definition, "modified: capsule.yaml"),
    "definition-renamed": (_definition_renamed_capsule, "modified: capsule.yaml"),
}


@pytest.fixture
def sealed(make_capsule):
    capsule = make_capsule(FILES, name="demo", version="1.0.0")
    os.chmod(capsule.root / "run.sh", 0o755)
    capsule.seal()
    return capsule.root


def test_clean_capsule_verifies(sealed: Path, qlcapsule_cli) -> None:
    result = qlcapsule_cli("verify", str(sealed))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok demo@1.0.0")


@pytest.mark.parametrize("case", sorted(CASES))
def test_tamper_is_detected_and_named(case: str, sealed: Path, qlcapsule_cli, tmp_path: Path) -> None:
    mutate, expected = CASES[case]
    mutate(sealed)
    result = qlcapsule_cli("verify", str(sealed))
    assert result.exit_code == 1, result.output  # tampering, a symlink for a sealed file too
    assert expected in result.stderr, result.output
    assert result.stderr.count("\n") == 1, "one line, no traceback"
    assert "Traceback" not in result.output


def test_rename_names_both_sides(sealed: Path, qlcapsule_cli) -> None:
    _rename(sealed)
    result = qlcapsule_cli("status", str(sealed), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)["result"]
    assert data["removed"] == ["app/util.py"] and data["added"] == ["app/utils.py"]
    assert data["renamed"] == [{"from": "app/util.py", "to": "app/utils.py"}]


def test_status_lists_every_kind(sealed: Path, qlcapsule_cli) -> None:
    _modify(sealed)
    _add(sealed)
    _remove(sealed)
    _chmod(sealed)
    data = json.loads(qlcapsule_cli("status", str(sealed), "--json").stdout)["result"]
    assert data["modified"] == ["app/main.py"]
    assert data["added"] == ["app/backdoor.py"]
    assert data["removed"] == ["app/util.py"]
    assert data["mode_changed"] == ["README.md"]
    assert data["clean"] is False


def test_copy_of_capsule_still_verifies(sealed: Path, tmp_path: Path, qlcapsule_cli) -> None:
    copy = tmp_path / "elsewhere"
    shutil.copytree(sealed, copy)
    assert qlcapsule_cli("verify", str(copy)).exit_code == 0
