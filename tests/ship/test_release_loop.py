"""``ship`` as a release loop (issue 17): plan first, seal before judging, re-ship, refuse, resume, force.

Each test runs ``ship`` again and again on one capsule, as a user does, and checks what
was written (snapshots of the capsule, the store and ./dist) as well as what was said.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pygit2
import pytest

from qlcapsule import ConflictError, InputError, QlcapsuleError
from qlcapsule.steps.ship import ShipOptions, ship
from qlcapsule.testing import write_capsule


def _capsule(parent: Path, name: str = "demo", extra: str = "", **files: str) -> Path:
    root = parent / name
    write_capsule(root, files or {"app.py": "print('hi')\n"}, definition=f"name: {name}\nversion: 1.0.0\n{extra}")
    return root


def _bump(root: Path, version: str) -> None:
    path = root / "capsule.yaml"
    path.write_text(re.sub(r"(?m)^version: .*$", f"version: {version}", path.read_text()))


def _edit(root: Path, text: str) -> None:
    with (root / "app.py").open("a") as f:
        f.write(f"# {text}\n")


def _history(work: Path, name: str = "demo") -> list[str]:
    """The versions on the store's main branch, newest first."""
    repo = pygit2.Repository(str(work / ".qlcapsule" / "store.git"))
    head = repo.references[f"refs/capsules/{name}/heads/main"].target
    return [c.message.split("\n", 1)[0] for c in repo.walk(head)]


def _dev_pub() -> str:
    return str(Path(os.environ["QLCAPSULE_HOME"]) / "dev.key.pub")


def test_a_new_version_is_sealed_before_the_validators_judge_it(work: Path) -> None:
    """Edit, bump, ship: validate failed on integrity.lock before ship's own seal ran."""
    root = _capsule(work)
    assert ship([root]).ok
    _edit(root, "one")
    _bump(root, "1.1.0")
    result = ship([root])
    c = result.capsules[0]
    assert result.ok, c.error
    assert [s.name for s in c.steps] == ["seal", "validate", "sign", "commit", "export", "deliver"]
    assert c.step("seal").detail.startswith("sealed 2 files as sha256:")
    assert "demo@1.0.0 -> demo@1.1.0" in c.step("seal").detail and "modified: app.py" in c.step("seal").detail
    assert not [f for f in c.findings if f["rule"].startswith(("integrity.", "signature."))]
    assert _history(work) == ["demo 1.1.0", "demo 1.0.0"]
    assert (work / "dist" / "demo-1.1.0.tar.gz").is_file()


def test_after_the_seal_hook_ship_re_signs_with_the_development_key_and_says_so(
    work: Path, qlcapsule_cli, capfd: pytest.CaptureFixture[str]
) -> None:
    root = _capsule(work)
    assert ship([root]).ok
    _edit(root, "hooked")
    _bump(root, "1.0.1")
    hooked = qlcapsule_cli("hook", "seal", "--", str(root / "app.py"))
    assert hooked.exit_code == 1 and "signed an older seal" in hooked.stderr
    capfd.readouterr()
    c = ship([root]).capsules[0]
    assert c.ok, c.error
    assert c.step("seal").detail.startswith("unchanged")  # the hook sealed it already
    assert c.step("sign").detail.endswith("(development key)")
    assert "re-signing with the DEVELOPMENT key, which signed the last seal" in capfd.readouterr().err
    verified = qlcapsule_cli("verify", str(root), "--key", _dev_pub())
    assert verified.exit_code == 0, verified.output


def test_a_stale_signature_by_another_key_is_never_replaced_by_the_development_key(
    work: Path, qlcapsule_cli, snap
) -> None:
    release = work.parent / "release.key"
    assert qlcapsule_cli("keygen", "--type", "ed25519", "-o", str(release)).exit_code == 0
    root = _capsule(work)
    assert ship([root], ShipOptions(key=str(release))).ok
    _edit(root, "two")
    _bump(root, "1.0.1")
    before = snap(root, work / ".qlcapsule", work / "dist")
    res = qlcapsule_cli("ship", str(root))
    assert res.exit_code == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"error: {root / 'capsule.sig'}: signed by ")
    assert "not by the development key" in line and "pass --key or --key-env" in line
    assert snap(root, work / ".qlcapsule", work / "dist") == before
    c = ship([root], ShipOptions(key=str(release))).capsules[0]
    assert c.ok and c.step("sign").detail.startswith("signed by"), c.error
    assert qlcapsule_cli("verify", str(root), "--key", f"{release}.pub").exit_code == 0


def test_without_a_key_another_keys_current_signature_is_kept(work: Path, qlcapsule_cli) -> None:
    release = work.parent / "release.key"
    assert qlcapsule_cli("keygen", "--type", "ed25519", "-o", str(release)).exit_code == 0
    root = _capsule(work)
    assert ship([root], ShipOptions(key=str(release))).ok
    sig = (root / "capsule.sig").read_bytes()
    c = ship([root]).capsules[0]
    assert c.ok and c.unchanged, c.error
    assert c.step("sign").detail.startswith("capsule.sig already signs this seal (by another key")
    assert (root / "capsule.sig").read_bytes() == sig
    assert not (Path(os.environ["QLCAPSULE_HOME"]) / "dev.key").exists()  # the development key was not needed


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        ("nosuch.key", "nosuch.key"),
        ("release.key.pub", "a public key; signing needs the private key"),
        ("junk.key", "not a PEM/OpenSSH key or a text HMAC secret"),
    ],
)
def test_a_bad_key_fails_before_anything_is_written(work: Path, qlcapsule_cli, snap, key: str, needle: str) -> None:
    """``ship --key nosuch.key`` failed only after validate and seal ran."""
    assert qlcapsule_cli("keygen", "--type", "ed25519", "-o", str(work.parent / "release.key")).exit_code == 0
    (work.parent / "junk.key").write_bytes(b"\x00\x01junk")
    os.chmod(work.parent / "junk.key", 0o600)
    root = _capsule(work)
    _edit(root, "unsealed")
    before = snap(work, Path(os.environ["QLCAPSULE_HOME"]))
    res = qlcapsule_cli("ship", str(root), "--key", str(work.parent / key))
    assert res.exit_code == 2, res.output
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: ") and needle in line
    assert snap(work, Path(os.environ["QLCAPSULE_HOME"])) == before


def test_an_unchanged_version_is_a_no_op_that_says_so(work: Path, qlcapsule_cli, snap) -> None:
    root = _capsule(work)
    first = qlcapsule_cli("ship", str(root), "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["result"]["capsules"][0]["unchanged"] is False
    before = snap(work)
    again = qlcapsule_cli("ship", str(root))
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[1].endswith("ok (already shipped: nothing changed)")
    assert snap(work) == before  # not a byte: lock, signature, store, dist
    data = json.loads(qlcapsule_cli("ship", str(root), "--json").stdout)["result"]["capsules"][0]
    assert data["unchanged"] is True and data["plan"]["already_shipped"] is True
    assert "(unchanged)" in data["steps"][3]["detail"]
    assert _history(work) == ["demo 1.0.0"]


def test_a_changed_capsule_under_a_shipped_version_is_refused_before_anything_is_written(
    work: Path, qlcapsule_cli, snap
) -> None:
    """It used to commit a second, different 1.0.0, then fail at the target with no word about the version."""
    root = _capsule(work)
    assert ship([root]).ok
    _edit(root, "no bump")
    before = snap(work)
    for dry in ((), ("--dry-run",)):
        res = qlcapsule_cli("ship", str(root), *dry)
        assert res.exit_code == 1, res.output
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith("error: demo@1.0.0 is already in the store ")
        assert f"bump 'version:' in {root / 'capsule.yaml'}, or pass --force" in line
        assert snap(work) == before
    assert _history(work) == ["demo 1.0.0"]


def test_force_records_a_second_build_and_replaces_the_local_artifact(work: Path) -> None:
    root = _capsule(work)
    assert ship([root]).ok
    old = (work / "dist" / "demo-1.0.0.tar.gz").read_bytes()
    _edit(root, "forced")
    result = ship([root], ShipOptions(force=True))
    assert result.ok, result.capsules[0].error
    assert _history(work) == ["demo 1.0.0", "demo 1.0.0"]
    assert (work / "dist" / "demo-1.0.0.tar.gz").read_bytes() != old
    warnings = (result.capsules[0].plan or {})["warnings"]
    assert any(w.startswith("--force: recording a second build of demo@1.0.0") for w in warnings), warnings


def test_force_never_moves_a_tag(work: Path, qlcapsule_cli) -> None:
    root = _capsule(work)
    assert ship([root]).ok
    store = str(work / ".qlcapsule" / "store.git")
    assert qlcapsule_cli("tag", "demo", "1.0.0", "--store", store).exit_code == 0
    _edit(root, "after the tag")
    with pytest.raises(ConflictError, match="tag 1.0.0 marks the shipped build and never moves"):
        ship([root], ShipOptions(force=True))


def test_force_needs_a_target_that_can_overwrite(work: Path, qlcapsule_plugin, snap) -> None:
    """A provider without an ``overwrite`` option (this append-only one, a plugin of the test's own)
    cannot take a second build of a version: --force is refused before anything is written."""
    from qlcapsule import Deliverer, hookimpl

    class AppendOnly(Deliverer):
        name = "append-only"
        description = "keeps every artifact it is given, never replacing one"

        def deliver(self, capsule, artifacts, *, target):  # type: ignore[no-untyped-def]
            raise AssertionError("never reached: the plan refuses --force")

    class Plugin:
        @hookimpl
        def qlcapsule_register_deliverers(self, register):  # type: ignore[no-untyped-def]
            register(AppendOnly)

    qlcapsule_plugin(Plugin(), name="append-only-plugin")
    targets = work.parent / "targets.yaml"
    targets.write_text("targets:\n  vault:\n    provider: append-only\n")
    root = _capsule(work)
    before = snap(work)
    with pytest.raises(InputError, match=r"--force: target 'vault' \(provider 'append-only'\) cannot overwrite"):
        ship([root], ShipOptions(force=True, targets=["vault"], targets_file=str(targets)))
    assert snap(work) == before


@pytest.mark.parametrize(
    "stopped_after",
    [
        frozenset({"sign", "commit", "export", "deliver"}),  # sealed, then stopped
        frozenset({"commit", "export", "deliver"}),  # sealed and signed
        frozenset({"export", "deliver"}),  # committed, nothing delivered
        frozenset({"deliver"}),  # exported into ./dist (--no-deliver), not delivered
    ],
)
def test_the_next_run_finishes_what_a_stopped_one_left(work: Path, stopped_after: frozenset[str]) -> None:
    root = _capsule(work)
    _edit(root, "to resume")
    _bump(root, "1.0.1")
    first = ship([root], ShipOptions(skip=stopped_after, output="out"))
    assert first.ok, first.capsules[0].error
    c = ship([root]).capsules[0]
    assert c.ok, c.error
    assert {s.name: s.status for s in c.steps} == dict.fromkeys(
        ("seal", "validate", "sign", "commit", "export", "deliver"), "ok"
    )
    assert c.step("seal").detail.startswith("unchanged")
    assert c.step("commit").detail.endswith("(unchanged)") == ("commit" not in stopped_after)
    assert _history(work) == ["demo 1.0.1"]
    assert (work / "dist" / "demo-1.0.1.tar.gz").is_file()


def test_outputs_and_keys_never_enter_the_capsule_shipped_from_inside(
    work: Path, qlcapsule_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cd orders && qlcapsule ship`` sealed the last run's dist/ tarball into the next version."""
    root = _capsule(work)
    monkeypatch.chdir(root)
    assert qlcapsule_cli("keygen", "--type", "ed25519", "-o", "release.key").exit_code == 0
    (root / "tls.pem").write_text("-----BEGIN CERTIFICATE-----\n")  # a certificate is content
    for version in ("1.0.0", "1.0.0", "1.0.1"):
        _bump(root, version)
        res = qlcapsule_cli("ship", "--key", "release.key", "--json")
        assert res.exit_code == 0, res.output
        assert (root / "dist" / f"demo-{version}.tar.gz").is_file()
        locked = json.loads((root / "capsule.lock").read_text())["files"]
        assert sorted(f["path"] for f in locked) == ["app.py", "capsule.yaml", "tls.pem"]
    assert json.loads(res.stdout)["result"]["capsules"][0]["unchanged"] is False
    assert qlcapsule_cli("verify", ".", "--key", "release.key.pub").exit_code == 0
    assert "dist" not in qlcapsule_cli("status", ".").stdout


def test_an_output_directory_inside_the_capsule_is_refused_unless_excluded(
    work: Path, qlcapsule_cli, monkeypatch: pytest.MonkeyPatch, snap
) -> None:
    root = _capsule(work)
    monkeypatch.chdir(root)
    before = snap(work)
    res = qlcapsule_cli("ship", "--no-deliver", "-o", "out")
    assert res.exit_code == 2
    (line,) = res.stderr.strip().splitlines()
    assert "-o/--output writes inside the capsule" in line and "'out/demo-1.0.0.tar.gz'" in line
    assert snap(work) == before
    (root / "capsule.yaml").write_text((root / "capsule.yaml").read_text() + "exclude: [out/]\n")
    assert qlcapsule_cli("ship", "--no-deliver", "-o", "out").exit_code == 0
    assert (root / "out" / "demo-1.0.0.tar.gz").is_file()


def test_listing_an_output_pattern_under_include_seals_it(work: Path) -> None:
    root = _capsule(work, extra='include: ["**", "*.key"]\n', **{"app.py": "x = 1\n", "a.key": "k", "b.key.pub": "p"})
    c = ship([root], ShipOptions(skip=frozenset({"sign", "commit", "export"}))).capsules[0]
    assert c.ok, c.error
    locked = sorted(f["path"] for f in json.loads((root / "capsule.lock").read_text())["files"])
    assert locked == ["a.key", "app.py", "capsule.yaml"]


def test_dry_run_writes_nothing_and_prints_the_plan(work: Path, qlcapsule_cli, snap) -> None:
    home = Path(os.environ["QLCAPSULE_HOME"])
    root = _capsule(work)
    _edit(root, "planned")
    before = snap(work, home)
    res = qlcapsule_cli("ship", str(root), "--dry-run")
    assert res.exit_code == 0, res.output
    assert snap(work, home) == before  # no lock, signature, store, dist or key
    out = res.stdout
    assert "plan for demo@1.0.0 (dry run: nothing was written):" in out
    assert re.search(r"seal +would seal 2 files as sha256:[0-9a-f]{12}: modified: app.py", out), out
    assert f"would sign with a new development key (created at {home / 'dev.key'})" in out
    assert "would commit demo@1.0.0 to " in out and "(branch main)" in out
    assert "artifact demo-1.0.0.tar.gz (tar.gz) -> dist/demo-1.0.0.tar.gz" in out
    assert out.rstrip().endswith("outcome  would succeed (exit 0)")
    data = json.loads(qlcapsule_cli("ship", str(root), "--dry-run", "--json").stdout)["result"]["capsules"][0]
    assert data["dry_run"] and data["plan"]["seal"]["changes"] == ["modified: app.py"]
    assert data["plan"]["sign"]["action"] == "sign" and data["plan"]["commit"]["version"] == "1.0.0"
    real = json.loads(qlcapsule_cli("ship", str(root), "--json").stdout)["result"]["capsules"][0]
    assert real["digest"] == data["digest"] and real["ok"]
    assert [a["path"] for a in real["artifacts"]] == [str(work / "dist" / "demo-1.0.0.tar.gz")]


def test_the_summary_table_folds_long_artifact_paths(work: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """On a narrow terminal rich cut the artifact path to 's3://a-rather-l…'."""
    from qlcapsule.cli import ship as cli_ship
    from qlcapsule.steps.ship import CapsuleResult, ShipResult

    path = "s3://a-rather-long-bucket-name/releases/some-capsule/1.0.0/some-capsule-1.0.0.tar.gz"
    c = CapsuleResult(path=str(work), name="some-capsule", version="1.0.0", digest="ab" * 32)
    c.artifacts = [{"path": path}]
    monkeypatch.setattr(cli_ship.sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(cli_ship, "is_ci", lambda: False)
    monkeypatch.setenv("COLUMNS", "70")
    cli_ship.print_summary(ShipResult([c]))
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    assert "…" not in out
    rows = [line.split("│") for line in out.splitlines() if line.startswith("│")]
    assert len(rows) > 1  # folded over several lines
    assert "".join(cells[4].strip() for cells in rows) == path


def test_every_refusal_is_a_qlcapsule_error_with_its_exit_code(work: Path) -> None:
    """The plan raises only the project's own errors (one line and a documented exit code)."""
    root = _capsule(work)
    for options in (ShipOptions(formats=["nope"]), ShipOptions(key="nosuch.key"), ShipOptions(targets=["prod"])):
        with pytest.raises(QlcapsuleError) as info:
            ship([root], options)
        assert info.value.exit_code == 2 and "\n" not in info.value.message
