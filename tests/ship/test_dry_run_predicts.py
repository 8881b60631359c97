"""``ship --dry-run`` then ``ship`` on 30+ varied inputs: the dry run predicts the real outcome and writes nothing.

Each case builds a situation (a fresh capsule, one shipped before, a bad key, a broken
capsule.yaml, ...) and gives the ``ship`` arguments. The test then runs the CLI twice:
``--dry-run`` first, checking that the capsule, the store, ./dist and the development
key's home are byte for byte as before, then the real run. Both must end with the same
exit code (the one the case expects), the same error line, and per capsule the same
verdict, failing step and digest.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qlcapsule.steps.ship import ShipOptions, ship
from qlcapsule.testing import write_capsule

Setup = Callable[[Path, Any], list[str]]


def _capsule(work: Path, name: str = "demo", extra: str = "", files: dict[str, str] | None = None) -> Path:
    root = work / name
    write_capsule(
        root, files or {"app.py": "print('hi')\n"}, definition=f"name: {name}\nversion: 1.0.0\n{extra}", seal=False
    )
    return root


def _shipped(work: Path, **options: Any) -> Path:
    root = _capsule(work)
    result = ship([root], ShipOptions(**options))
    assert result.ok, result.capsules[0].error
    return root


def _edit(root: Path, bump: str | None = None) -> None:
    with (root / "app.py").open("a") as f:
        f.write("# edited\n")
    if bump:
        y = root / "capsule.yaml"
        y.write_text(re.sub(r"(?m)^version: .*$", f"version: {bump}", y.read_text()))


def _key(cli: Any, work: Path, name: str = "release.key") -> Path:
    path = work.parent / name
    assert cli("keygen", "--type", "ed25519", "-o", str(path)).exit_code == 0
    return path


# -- the cases: name -> (expected exit code, setup returning the ship arguments) ------------------

CASES: dict[str, tuple[int, Setup]] = {}


def case(code: int) -> Callable[[Setup], Setup]:
    def register(fn: Setup) -> Setup:
        CASES[fn.__name__.removeprefix("case_")] = (code, fn)
        return fn

    return register


@case(0)
def case_fresh(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work))]


@case(0)
def case_fresh_without_validation_signing_or_store(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work)), "--no-validate", "--no-sign", "--no-commit"]


@case(0)
def case_unchanged_reship(work: Path, cli: Any) -> list[str]:
    return [str(_shipped(work))]


@case(0)
def case_edit_and_bump(work: Path, cli: Any) -> list[str]:
    root = _shipped(work)
    _edit(root, "1.0.1")
    return [str(root)]


@case(1)
def case_changed_without_bump(work: Path, cli: Any) -> list[str]:
    root = _shipped(work)
    _edit(root)
    return [str(root)]


@case(1)
def case_changed_without_bump_no_commit_local_artifact_there(work: Path, cli: Any) -> list[str]:
    root = _shipped(work, skip=frozenset({"commit"}))
    _edit(root)
    return [str(root), "--no-commit"]


@case(0)
def case_changed_without_bump_forced(work: Path, cli: Any) -> list[str]:
    root = _shipped(work)
    _edit(root)
    return [str(root), "--force"]


@case(1)
def case_changed_without_bump_forced_but_tagged(work: Path, cli: Any) -> list[str]:
    root = _shipped(work)
    assert cli("tag", "demo", "1.0.0", "--store", str(work / ".qlcapsule" / "store.git")).exit_code == 0
    _edit(root)
    return [str(root), "--force"]


@case(2)
def case_missing_key(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work)), "--key", str(work.parent / "nosuch.key")]


@case(2)
def case_junk_key(work: Path, cli: Any) -> list[str]:
    junk = work.parent / "junk.key"
    junk.write_bytes(b"\x00junk\xff")
    os.chmod(junk, 0o600)
    return [str(_capsule(work)), "--key", str(junk)]


@case(2)
def case_public_key_given_as_key(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work)), "--key", f"{_key(cli, work)}.pub"]


@case(2)
def case_key_env_unset(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work)), "--key-env", "QLCAPSULE_TEST_NO_SUCH_KEY"]


@case(0)
def case_release_key(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work)), "--key", str(_key(cli, work))]


@case(2)
def case_stale_signature_by_another_key_and_no_key(work: Path, cli: Any) -> list[str]:
    root = _shipped(work, key=str(_key(cli, work)))
    _edit(root, "1.0.1")
    return [str(root)]


@case(0)
def case_current_signature_by_another_key_and_no_key(work: Path, cli: Any) -> list[str]:
    return [str(_shipped(work, key=str(_key(cli, work))))]


@case(0)
def case_after_the_seal_hook(work: Path, cli: Any) -> list[str]:
    root = _shipped(work)
    _edit(root, "1.0.1")
    assert cli("hook", "seal", "--", str(root / "app.py")).exit_code == 1
    return [str(root)]


@case(0)
def case_resume_after_commit(work: Path, cli: Any) -> list[str]:
    root = _shipped(work, skip=frozenset({"export", "deliver"}))
    return [str(root)]


@case(0)
def case_edit_bump_without_signing(work: Path, cli: Any) -> list[str]:
    root = _shipped(work)
    _edit(root, "1.0.1")
    return [str(root), "--no-sign"]


@case(2)
def case_unknown_format(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work)), "-f", "rar"]


@case(2)
def case_bad_exporter_option(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work, extra="exports:\n  zip:\n    level: 99\n")), "-f", "zip"]


@case(2)
def case_directory_format_delivered(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work)), "-f", "oci-dir"]


@case(2)
def case_unknown_target(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work)), "-t", "prod"]


@case(2)
def case_capsule_defined_s3_target(work: Path, cli: Any) -> list[str]:
    extra = "targets:\n  cloud:\n    provider: s3\n    options:\n      bucket: releases\n"
    return [str(_capsule(work, extra=extra)), "-t", "cloud"]


@case(2)
def case_capsule_defined_local_target_outside(work: Path, cli: Any) -> list[str]:
    extra = "targets:\n  out:\n    provider: local\n    options:\n      path: ../elsewhere\n"
    return [str(_capsule(work, extra=extra)), "-t", "out"]


@case(2)
def case_broken_yaml(work: Path, cli: Any) -> list[str]:
    root = _capsule(work)
    (root / "capsule.yaml").write_text("name: demo\nversion: [1.0.0\n")
    return [str(root)]


@case(2)
def case_unknown_key_in_capsule_yaml(work: Path, cli: Any) -> list[str]:
    root = _capsule(work)
    (root / "capsule.yaml").write_text("name: demo\nverison: 1.0.0\n")
    return [str(root)]


@case(2)
def case_no_capsule_here(work: Path, cli: Any) -> list[str]:
    (work / "empty").mkdir()
    return [str(work / "empty")]


@case(1)
def case_validator_findings(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work, files={"app.py": "def broken(:\n"}))]


@case(1)
def case_warning_with_fail_on_warning(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work, extra="validate:\n  rules:\n    no-such-rule: false\n")), "--fail-on", "warning"]


@case(1)
def case_policy_needs_a_signature_that_is_switched_off(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work, extra="policy:\n  require_signature: true\n")), "--no-sign"]


@case(1)
def case_tampered_file_with_no_seal(work: Path, cli: Any) -> list[str]:
    root = _shipped(work)
    _edit(root)
    return [str(root), "--no-seal"]


@case(2)
def case_symlink_in_the_capsule(work: Path, cli: Any) -> list[str]:
    root = _capsule(work)
    (root / "link.py").symlink_to("app.py")
    return [str(root)]


@case(2)
def case_output_inside_the_capsule(work: Path, cli: Any) -> list[str]:
    root = _capsule(work)
    return [str(root), "--no-deliver", "-o", str(root / "out")]


@case(2)
def case_store_inside_the_capsule(work: Path, cli: Any) -> list[str]:
    root = _capsule(work)
    return [str(root), "--store", str(root / "versions.git")]


@case(0)
def case_store_inside_the_capsule_excluded(work: Path, cli: Any) -> list[str]:
    root = _capsule(work, extra="exclude: [versions.git/]\n")
    return [str(root), "--store", str(root / "versions.git")]


@case(0)
def case_shipped_from_inside(work: Path, cli: Any) -> list[str]:
    root = _shipped(work)
    _edit(root, "1.0.1")
    os.chdir(root)
    return []


@case(2)
def case_two_capsules_one_name(work: Path, cli: Any) -> list[str]:
    return [str(_capsule(work / "a")), str(_capsule(work / "b"))]


@case(1)
def case_one_of_two_fails_validation(work: Path, cli: Any) -> list[str]:
    good = _capsule(work, "good")
    bad = _capsule(work, "bad", files={"app.py": "def broken(:\n"})
    return [str(good), str(bad), "-j", "1"]


def test_there_are_thirty_cases_or_more() -> None:
    assert len(CASES) >= 30, len(CASES)
    assert {code for code, _ in CASES.values()} == {0, 1, 2}


def _outcome(res: Any) -> tuple[int, list[str], list[tuple[Any, ...]]]:
    """Exit code, the error lines on stderr, and per capsule (ref, ok, failing step, exit code, digest)."""
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    try:
        data = json.loads(res.stdout)
    except ValueError:
        data = {}
    capsules = (data.get("result") or {}).get("capsules") or []
    verdicts = [
        (
            c["ref"],
            c["ok"],
            next((s["name"] for s in c["steps"] if s["status"] == "failed"), None),
            c["exit_code"],
            c["digest"],
        )
        for c in capsules
    ]
    return res.exit_code, errors, verdicts


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_dry_run_predicts_the_real_run_and_writes_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli, snap
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var in ("QLCAPSULE_STORE", "QLCAPSULE_SIGNING_KEY", "QLCAPSULE_TEST_NO_SUCH_KEY"):
        monkeypatch.delenv(var, raising=False)
    expected, setup = CASES[name]
    args = setup(work, qlcapsule_cli)
    home = Path(os.environ["QLCAPSULE_HOME"])
    before = snap(work, home)

    dry = qlcapsule_cli("ship", *args, "--dry-run", "--json")
    assert snap(work, home) == before, f"{name}: the dry run wrote something"
    real = qlcapsule_cli("ship", *args, "--json")

    predicted, happened = _outcome(dry), _outcome(real)
    assert happened[0] == expected, f"{name}: {real.output}"
    assert predicted == happened, f"{name}:\ndry run: {dry.output}\nreal run: {real.output}"
    assert "Traceback" not in dry.output + real.output
