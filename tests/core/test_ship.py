"""``qlcapsule ship``: the steps, their switches, defaults that stay on the machine, concurrency, output."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pygit2
import pytest

from qlcapsule import ConflictError, CredentialsError
from qlcapsule.steps.ship import ShipOptions, all_capsules, capsules_containing, ship
from qlcapsule.testing import write_capsule

NO_VALIDATE = frozenset({"validate"})


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory that is not inside any git repository (so the default store is used)."""
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.chdir(d)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("QLCAPSULE_STORE", raising=False)
    return d


def _capsule(parent: Path, name: str = "demo", extra: str = "", **files: str) -> Path:
    root = parent / name
    definition = f"name: {name}\nversion: 1.0.0\n{extra}"
    write_capsule(root, files or {"app.py": "print('hi')\n"}, definition=definition, seal=False)
    return root


def test_ship_defaults_stay_on_the_machine(work: Path) -> None:
    root = _capsule(work)
    result = ship([root], ShipOptions(skip=NO_VALIDATE))
    assert result.ok and result.exit_code == 0
    c = result.capsules[0]
    assert [(s.name, s.status) for s in c.steps] == [
        ("seal", "ok"),
        ("validate", "skipped"),
        ("sign", "ok"),
        ("commit", "ok"),
        ("export", "ok"),
        ("deliver", "ok"),
    ]
    # sealed and signed (with the development key, created on first use)
    assert (root / "capsule.lock").is_file() and (root / "capsule.sig").is_file()
    assert c.signed_by and "development key" in c.step("sign").detail
    # committed to the default store beside the capsule
    store = pygit2.Repository(str(work / ".qlcapsule" / "store.git"))
    assert store.is_bare
    head = store.references["refs/capsules/demo/heads/main"].peel(pygit2.Commit)
    assert str(head.id) == c.commit
    assert sorted(e.name for e in head.tree) == ["app.py", "capsule.lock", "capsule.sig", "capsule.yaml"]
    # delivered to ./dist, byte-for-byte what the receipt says
    art = work / "dist" / "demo-1.0.0.tar.gz"
    assert art.is_file()
    assert c.artifacts[0]["path"] == str(art) and c.receipts[0]["provider"] == "local"
    import hashlib

    assert hashlib.sha256(art.read_bytes()).hexdigest() == c.artifacts[0]["sha256"] == c.receipts[0]["sha256"]
    with tarfile.open(art) as tar:
        names = {m.name.split("/", 1)[-1] for m in tar.getmembers()}
    assert {"app.py", "capsule.yaml", "capsule.lock", "capsule.sig"} <= names


def test_reshipping_an_unchanged_capsule_changes_nothing(work: Path) -> None:
    root = _capsule(work)
    first = ship([root], ShipOptions(skip=NO_VALIDATE)).capsules[0]
    sig = (root / "capsule.sig").read_bytes()
    second = ship([root], ShipOptions(skip=NO_VALIDATE)).capsules[0]
    assert second.ok, second.error
    assert second.commit == first.commit and "(unchanged)" in second.step("commit").detail
    assert second.step("seal").detail.startswith("unchanged")
    assert second.step("sign").detail.startswith("already signed")
    assert (root / "capsule.sig").read_bytes() == sig


def test_an_edit_makes_a_new_version_on_top_of_the_last(work: Path) -> None:
    root = _capsule(work)
    first = ship([root], ShipOptions(skip=NO_VALIDATE)).capsules[0]
    (root / "app.py").write_text("print('changed')\n")
    (root / "capsule.yaml").write_text("name: demo\nversion: 1.0.1\n")
    second = ship([root], ShipOptions(skip=NO_VALIDATE)).capsules[0]
    assert second.ok, second.error
    assert second.digest != first.digest
    store = pygit2.Repository(str(work / ".qlcapsule" / "store.git"))
    head = store.references["refs/capsules/demo/heads/main"].peel(pygit2.Commit)
    assert [str(p) for p in head.parent_ids] == [first.commit]
    assert (work / "dist" / "demo-1.0.1.tar.gz").is_file()


def test_inside_a_git_repository_versions_go_to_its_capsule_refs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo_dir = tmp_path / "repo"
    repo = pygit2.init_repository(str(repo_dir))
    monkeypatch.chdir(repo_dir)
    root = _capsule(repo_dir)
    c = ship([root], ShipOptions(skip=frozenset({"validate", "deliver"}))).capsules[0]
    assert c.ok, c.error
    assert repo.references["refs/capsules/demo/heads/main"].target == pygit2.Oid(hex=c.commit)
    assert repo.head_is_unborn  # the user's branch was not touched
    assert not (repo_dir / ".qlcapsule").exists()


def test_flags_and_capsule_yaml_switch_steps_off(work: Path) -> None:
    root = _capsule(work, extra="ship:\n  sign: false\n  formats: [zip, tar]\n")
    c = ship([root], ShipOptions(skip=frozenset({"validate", "commit", "deliver"}), output="out")).capsules[0]
    assert c.ok, c.error
    assert {s.name: s.status for s in c.steps} == {
        "validate": "skipped",
        "seal": "ok",
        "sign": "skipped",
        "commit": "skipped",
        "export": "ok",
        "deliver": "skipped",
    }
    assert not (root / "capsule.sig").exists() and not (work / ".qlcapsule").exists()
    written = sorted(p.name for p in (work / "out").iterdir() if not p.name.endswith(".sha256"))
    assert written == ["demo-1.0.0.tar", "demo-1.0.0.zip"]
    assert [a["format"] for a in c.artifacts] == ["zip", "tar"]


def test_no_seal_ships_only_what_was_sealed(work: Path) -> None:
    root = _capsule(work)
    write_capsule(root, {"app.py": "print('hi')\n"}, definition=(root / "capsule.yaml").read_text())
    (root / "app.py").write_text("print('tampered')\n")
    result = ship([root], ShipOptions(skip=frozenset({"validate", "seal"})))
    c = result.capsules[0]
    assert result.exit_code == 1
    assert c.step("seal").status == "failed" and "modified: app.py" in c.step("seal").detail
    assert [s.status for s in c.steps[2:]] == ["not-run"] * 4
    assert not (work / "dist").exists()


def test_validation_failure_stops_the_capsule(work: Path) -> None:
    root = _capsule(work, **{"app.py": "def broken(:\n"})
    result = ship([root], ShipOptions(skip=frozenset({"commit"})))
    c = result.capsules[0]
    assert result.exit_code == 1, c.steps
    assert c.step("validate").status == "failed"
    assert any(f["path"] == "app.py" and f["severity"] == "error" for f in c.findings)
    # sealed first, so the validators judge the new lock; nothing after the failure ran
    assert c.step("seal").status == "ok" and (root / "capsule.lock").exists()
    assert c.step("sign").status == "not-run" and not (root / "capsule.sig").exists()
    assert not (work / "dist").exists()


def test_validation_passes_and_scores(work: Path) -> None:
    root = _capsule(work)
    c = ship([root], ShipOptions(skip=frozenset({"commit", "deliver"}))).capsules[0]
    assert c.ok, c.error
    assert c.step("validate").status == "ok" and c.score is not None and 0 <= c.score <= 1


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (ShipOptions(formats=["nope"]), "nope"),
        (ShipOptions(targets=["prod"]), "no target 'prod'"),
        (ShipOptions(skip=frozenset({"dance"})), "unknown step(s) to skip: dance"),
    ],
)
def test_bad_input_is_refused_before_any_work(work: Path, options: ShipOptions, needle: str) -> None:
    from qlcapsule import InputError, PluginError

    root = _capsule(work)
    with pytest.raises((InputError, PluginError)) as info:
        ship([root], options)
    assert needle in str(info.value)
    assert not (root / "capsule.lock").exists()


def test_several_capsules_ship_concurrently_and_fail_independently(work: Path) -> None:
    good = _capsule(work, "good")
    bad = _capsule(work, "bad")
    write_capsule(bad, {"app.py": "print('hi')\n"}, definition=(bad / "capsule.yaml").read_text())
    (bad / "app.py").write_text("print('tampered')\n")
    events: list[tuple[int, str, str]] = []
    result = ship(
        [good, bad],
        ShipOptions(skip=frozenset({"validate", "seal"})),
        jobs=2,
        events=lambda i, step, status, detail: events.append((i, step, status)),
    )
    by_name = {c.name: c for c in result.capsules}
    assert by_name["good"].ok is False  # never sealed: --no-seal must refuse it too
    assert "not sealed" in (by_name["good"].error or "")
    assert by_name["bad"].exit_code == 1 and "modified: app.py" in (by_name["bad"].error or "")
    assert (1, "seal", "failed") in events and (0, "seal", "failed") in events

    ok = ship([good, _capsule(work, "other")], ShipOptions(skip=NO_VALIDATE), jobs=2)
    assert ok.ok, [c.error for c in ok.capsules]
    assert sorted(p.name for p in (work / "dist").glob("*.tar.gz")) == ["good-1.0.0.tar.gz", "other-1.0.0.tar.gz"]


class Watcher:
    """A :class:`qlcapsule.steps.ship.ShipWatcher` that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.told: list[tuple[int, str, Any]] = []

    def ready(self, index: int, capsule: dict[str, Any]) -> None:
        self.told.append((index, "ready", capsule))

    def delivery(self, index: int, status: dict[str, Any]) -> None:
        self.told.append((index, "delivery", status))


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_watcher_hears_of_each_capsule_before_its_deliveries_and_of_each_step(work: Path, jobs: int) -> None:
    """In this process and with workers (the calls then travel on the events' queue), in order per capsule."""
    watcher = Watcher()
    result = ship(
        [_capsule(work, "one"), _capsule(work, "two")], ShipOptions(skip=NO_VALIDATE), jobs=jobs, watcher=watcher
    )
    assert result.ok, [c.error for c in result.capsules]
    for index, c in enumerate(result.capsules):
        mine = [(what, data) for i, what, data in watcher.told if i == index]
        assert [w if w == "ready" else data["status"] for w, data in mine] == [
            "ready",
            "planned",
            "uploading",
            "verifying",
            "delivered",
        ]
        ready = mine[0][1]
        # committed and signed, not yet delivered: what a catalog can publish before the deliveries
        assert ready["name"] == c.name and ready["digest"] == c.digest and ready["commit"] == c.commit
        assert ready["signed_by"] == c.signed_by and ready["receipts"] == [] and ready["artifacts"] == []
        assert mine[-1][1]["url"] == c.receipts[0]["url"]

    dry = Watcher()
    ship([work / "one"], ShipOptions(skip=NO_VALIDATE, dry_run=True), watcher=dry)
    assert dry.told == []


def test_cli_json_summary_and_exit_codes(work: Path, qlcapsule_cli) -> None:
    root = _capsule(work)
    result = qlcapsule_cli("ship", str(root), "--no-validate", "--json", env={"CI": "1"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["result"]
    assert data["ok"] is True and data["exit_code"] == 0
    cap = data["capsules"][0]
    assert cap["ref"] == "demo@1.0.0" and len(cap["digest"]) == 64
    assert [s["name"] for s in cap["steps"]] == ["seal", "validate", "sign", "commit", "export", "deliver"]
    assert [s["status"] for s in cap["steps"]] == ["ok", "skipped", "ok", "ok", "ok", "ok"]
    assert "demo@1.0.0: deliver: ok" in result.stderr  # quiet line-oriented progress in CI

    text = qlcapsule_cli("ship", str(root), "--no-validate", env={"CI": "1"})
    assert text.exit_code == 0
    assert text.stdout.splitlines()[0].split() == ["capsule", "digest", "score", "artifacts", "status"]
    assert "demo@1.0.0" in text.stdout and text.stdout.rstrip().endswith("ok (already shipped: nothing changed)")

    bad = qlcapsule_cli("ship", str(root), "--format", "nope", env={"CI": "1"})
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


def test_cli_ship_subprocess_end_to_end(work: Path) -> None:
    """The installed console script, as a user runs it: no Python API in between."""
    import shutil
    import sys

    root = _capsule(work)
    exe = shutil.which("qlcapsule", path=str(Path(sys.executable).parent))
    assert exe
    proc = subprocess.run([exe, "ship", str(root), "--no-validate"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (work / "dist" / "demo-1.0.0.tar.gz").is_file()


def test_files_map_to_their_nearest_capsule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for d in ("a", "a/inner", "b"):
        Path(d).mkdir(parents=True, exist_ok=True)
        Path(d, "capsule.yaml").write_text("name: x\nversion: 1.0.0\n")
    Path("a/src").mkdir()
    Path("loose").mkdir()
    files = [
        "a/src/app.py",
        "a/inner/x.txt",
        "b/capsule.lock",
        "a/capsule.yaml",
        "loose/f.txt",
        "README.md",
        "b/gone/deleted.py",
    ]
    assert capsules_containing(files) == [Path("a"), Path("a/inner"), Path("b")]
    assert capsules_containing([]) == []
    assert sorted(all_capsules(".")) == [Path("./a"), Path("./a/inner"), Path("./b")]


def test_generated_fastapi_service_ships_end_to_end_without_network(work: Path) -> None:
    """The README's first line, minus the install: ``new fastapi-service`` then ``ship``.

    Run inside a fresh network namespace (``unshare -rn``: loopback only, and down)
    when the kernel allows it, so any attempt to reach the network fails the test.
    """
    import shutil
    import sys

    bindir = Path(sys.executable).parent
    script = f"{bindir}/qlcapsule new fastapi-service orders --no-input && {bindir}/qlcapsule ship orders --json"
    cmd = ["bash", "-c", script]
    unshare = shutil.which("unshare")
    isolated = bool(unshare) and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0
    if isolated:
        cmd = [unshare, "-rn", *cmd]
    else:
        print("unshare -rn is not available here: running with the network present")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=work)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout[proc.stdout.index("{") :])["result"]
    cap = data["capsules"][0]
    assert cap["ref"].startswith("orders@") and cap["ok"] and cap["score"] is not None
    assert all(s["status"] == "ok" for s in cap["steps"]), cap["steps"]
    assert (work / "dist" / f"orders-{cap['version']}.tar.gz").is_file()
    assert "DEVELOPMENT signing key" in proc.stderr


def test_hook_seal_warns_about_a_stale_signature_or_resigns(work: Path, qlcapsule_cli) -> None:
    root = _capsule(work)
    assert ship([root], ShipOptions(skip=frozenset({"validate", "commit", "export"}))).ok
    (root / "app.py").write_text("print('edited')\n")
    stale = qlcapsule_cli("hook", "seal", "--", str(root / "app.py"))
    assert stale.exit_code == 1
    assert "capsule.lock updated" in stale.stdout and "signed an older seal" in stale.stderr
    import os

    pub = str(Path(os.environ["QLCAPSULE_HOME"]) / "dev.key.pub")
    mismatch = qlcapsule_cli("hook", "verify", "--key", pub, "--", str(root / "app.py"))
    assert mismatch.exit_code == 1 and "subject digest mismatch" in mismatch.stdout
    (root / "app.py").write_text("print('edited again')\n")
    resigned = qlcapsule_cli("hook", "seal", "--sign", "--json", "--", str(root / "app.py"))
    assert resigned.exit_code == 1
    assert json.loads(resigned.stdout)["result"]["capsules"][0]["signed"] is True
    checked = qlcapsule_cli("hook", "verify", "--key", pub, "--", str(root / "app.py"))
    assert checked.exit_code == 0 and f"ok {root}; signed by ed25519 " in checked.stdout
    # without a trusted key, "ok" is about integrity only and the line says the signature was not checked
    unchecked = qlcapsule_cli("hook", "verify", "--", str(root / "app.py"))
    assert unchecked.exit_code == 0 and "capsule.sig present (1 signature(s)) but NOT checked" in unchecked.stdout
    assert "signed by" not in unchecked.stdout


def test_a_reseal_between_ships_does_not_fail_validation_on_the_old_signature(work: Path) -> None:
    """The seal pre-commit hook reseals on every commit, which makes the last signature stale;
    ship signs again anyway, so signature.stale must not stop it (it did: exit 1 in validate)."""
    from qlcapsule.pipeline import seal_capsule

    root = _capsule(work)
    assert ship([root], ShipOptions()).ok
    (root / "app.py").write_text("print('edited')\n")
    (root / "capsule.yaml").write_text("name: demo\nversion: 1.0.1\n")
    seal_capsule(root)  # what the hook does; capsule.sig now signs the old digest

    unsigned = ship([root], ShipOptions(skip=frozenset({"sign", "commit", "export"})))
    assert not unsigned.ok  # without the sign step the stale signature is still a finding
    assert "signature.stale" in (unsigned.capsules[0].error or "")

    result = ship([root], ShipOptions())
    assert result.ok, result.capsules[0].error
    step = result.capsules[0].step("validate")
    assert "1 about the old signature left to the sign step" in step.detail
    assert not any(f["rule"].startswith("signature.") for f in result.capsules[0].findings)


def test_a_bad_signing_key_fails_before_the_seal_step_writes(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qlcapsule import InputError

    root = _capsule(work)
    monkeypatch.setenv("SHORT_SECRET", "tooshort")
    with pytest.raises(InputError, match=r"\$SHORT_SECRET: HMAC key is 8 bytes"):
        ship([root], ShipOptions(skip=NO_VALIDATE, key_env="SHORT_SECRET"))
    assert not (root / "capsule.lock").exists()  # it was sealed first, then left with the old signature


def test_two_capsules_of_one_name_and_version_are_refused_before_any_work(work: Path) -> None:
    from qlcapsule import InputError

    a = _capsule(work / "a")
    b = _capsule(work / "b", **{"other.py": "x = 2\n"})
    with pytest.raises(InputError, match=r"b/demo: demo@1.0.0 is also .*a/demo; ship one capsule per name and version"):
        ship([a, b], ShipOptions(skip=NO_VALIDATE))
    assert not (a / "capsule.lock").exists() and not (work / "dist").exists()


def test_dry_run_reports_a_real_runs_digest_and_artifacts_but_writes_nothing(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to seal, sign and commit, and list ./dist artifacts it never wrote."""
    home = work.parent / "fresh-home"
    monkeypatch.setenv("QLCAPSULE_HOME", str(home))
    root = _capsule(work)
    before = sorted(p.relative_to(work) for p in work.rglob("*"))

    dry = ship([root], ShipOptions(dry_run=True))
    c = dry.capsules[0]
    assert dry.ok and c.dry_run, c.error
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before  # no lock, sig, store or dist
    assert not home.exists()  # no development key created either
    assert "would sign with a new development key" in c.step("sign").detail
    assert c.step("commit").detail.startswith("would commit demo@1.0.0 to ")
    assert c.artifacts and c.artifacts[0]["path"].endswith("dist/demo-1.0.0.tar.gz")

    real = ship([root], ShipOptions())
    assert real.ok and not real.capsules[0].dry_run
    assert real.capsules[0].digest == c.digest  # the dry run sealed a faithful copy
    assert (work / "dist" / "demo-1.0.0.tar.gz").is_file()
    (root / "app.py").write_text("print('edited')\n")
    with pytest.raises(ConflictError, match=r"demo@1.0.0 is already in the store .* bump 'version:'"):
        ship([root], ShipOptions(dry_run=True))  # the version was shipped: an edit needs a new one
    (root / "capsule.yaml").write_text("name: demo\nversion: 1.0.1\n")
    again = ship([root], ShipOptions(dry_run=True)).capsules[0]
    assert again.step("seal").detail.startswith("would seal") and again.step("sign").detail.startswith(
        "would sign with the development key"
    )
    assert again.digest != c.digest and (root / "capsule.lock").read_text().count(c.digest) == 1  # lock untouched


def test_dry_run_fails_on_a_damaged_development_key_like_a_real_run(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to answer 'would sign with a new development key', then the real ship failed."""
    home = work.parent / "damaged-home"
    home.mkdir()
    (home / "dev.key").write_text("not a key\n")
    monkeypatch.setenv("QLCAPSULE_HOME", str(home))
    root = _capsule(work)
    for dry in (True, False):
        with pytest.raises(CredentialsError, match="the development key is not an Ed25519 private key"):
            ship([root], ShipOptions(dry_run=dry))
    assert not (root / "capsule.lock").exists()


@pytest.mark.parametrize("policy", ["require_signature: true", "min_version: 1.0.0"])
def test_a_policy_that_requires_a_signature_is_met_by_the_sign_step(work: Path, policy: str) -> None:
    """signature.missing failed the validate step of every first ship, though ship then signs."""
    root = _capsule(work, extra=f"policy:\n  {policy}\n")
    result = ship([root], ShipOptions())
    c = result.capsules[0]
    assert result.ok and c.step("sign").status == "ok", c.error
    assert (root / "capsule.sig").is_file()
    unsigned = _capsule(work, "other", extra=f"policy:\n  {policy}\n")
    c = ship([unsigned], ShipOptions(skip=frozenset({"sign"}))).capsules[0]
    assert not c.ok and "signature.missing" in (c.error or ""), c.error  # nothing will sign it


def test_summary_shows_remote_locations_as_they_are(work: Path) -> None:
    """os.path.relpath turned s3://rel/c/x into s3:/rel/c/x in the summary table."""
    from qlcapsule.cli.ship import summary_rows
    from qlcapsule.steps.ship import CapsuleResult, ShipResult

    c = CapsuleResult(path=str(work / "c"), name="c", version="1.0.0")
    c.artifacts = [
        {"path": "s3://rel/c/1.0.0/c-1.0.0.tar.gz"},
        {"path": str(work / "dist" / "c-1.0.0.zip")},
        {"path": "{odd}/c-1.0.0.tar.gz"},
    ]
    (row,) = summary_rows(ShipResult([c]))
    assert row[3] == "s3://rel/c/1.0.0/c-1.0.0.tar.gz, dist/c-1.0.0.zip, {odd}/c-1.0.0.tar.gz"


def test_an_envelope_that_only_claims_the_ci_key_id_does_not_skip_signing(work: Path) -> None:
    """capsule.sig comes with the content: a signature by another key, labelled with the CI key's id,
    over exactly this seal used to make the sign step say 'already signed' and sign nothing."""
    import datetime as dt

    from qlcapsule import Capsule, __version__
    from qlcapsule.signing.envelope import PAYLOAD_TYPE, Envelope, EnvelopeSignature, Statement, pae
    from qlcapsule.signing.signatures import keygen, load_signing_key, verify_signatures

    ci = keygen("ed25519", work.parent / "ci.key")
    attacker = load_signing_key(keygen("ed25519", work.parent / "attacker.key")["private"])
    root = _capsule(work)
    steps = frozenset({"validate", "commit", "export", "deliver"})
    first = ship([root], ShipOptions(skip=steps, key=ci["private"])).capsules[0]
    assert first.ok and first.step("sign").detail.startswith("signed"), first.error
    lock = Capsule.load(root).require_lock()
    payload = Statement.build(
        name="demo",
        version="1.0.0",
        digest=lock.digest,
        files=len(lock.files),
        created=dt.datetime.now(dt.timezone.utc),
        tool_version=__version__,
    )
    forged = EnvelopeSignature(ci["keyid"], attacker.signer.sign(attacker.key, pae(PAYLOAD_TYPE, payload)))
    (root / "capsule.sig").write_bytes(Envelope(payload, PAYLOAD_TYPE, [forged]).to_json())
    again = ship([root], ShipOptions(skip=steps, key=ci["private"])).capsules[0]
    assert again.ok and again.step("sign").detail.startswith("signed"), again.step("sign").detail
    capsule = Capsule.load(root)
    report = verify_signatures(capsule, capsule.require_lock(), keys=[ci["public"]])
    assert report["status"] == "verified"
    # and a genuine signature by the CI key still makes re-shipping a no-op
    third = ship([root], ShipOptions(skip=steps, key=ci["private"])).capsules[0]
    assert third.step("sign").detail.startswith("already signed")
