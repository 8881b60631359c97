"""Signing and verification: the tamper matrix, clean capsules, keys, trust files, CLI.

Every tamper class must fail ``qlcapsule verify`` with exit 1 and a message that
names the cause; every clean variant must pass (no false rejects).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from qlcapsule import Capsule, CredentialsError, InputError, SignatureError
from qlcapsule.signing.envelope import PAYLOAD_TYPE, Envelope, EnvelopeSignature, pae
from qlcapsule.signing.signatures import (
    dev_key,
    keygen,
    load_signing_key,
    parse_expires,
    sign_capsule,
    verify_signatures,
)
from qlcapsule.testing import write_capsule

FILES = {
    "app/main.py": "print('hello')\n",
    "app/util.py": "X = 1\n",
    "run.sh": "#!/bin/sh\necho hi\n",
    "README.md": "# demo\n",
}
UTC = dt.timezone.utc


@dataclass
class Ctx:
    tmp: Path
    root: Path
    a: dict  # type: ignore[type-arg]
    b: dict  # type: ignore[type-arg]
    c: dict  # type: ignore[type-arg]
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def sig(self) -> dict:  # type: ignore[type-arg]
        return json.loads((self.root / "capsule.sig").read_text())

    def write_sig(self, doc: dict) -> None:  # type: ignore[type-arg]
        (self.root / "capsule.sig").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:  # type: ignore[type-arg]
    d = tmp_path_factory.mktemp("keys")
    return {n: keygen("ed25519", d / f"{n}.key") for n in ("a", "b", "c")}


@pytest.fixture
def ctx(tmp_path: Path, keys: dict) -> Ctx:  # type: ignore[type-arg]
    root = tmp_path / "orders"
    write_capsule(root, FILES, name="orders", version="1.0.0")
    os.chmod(root / "run.sh", 0o755)
    Capsule.load(root).seal()
    sign_capsule(root, keys["a"]["private"])
    return Ctx(tmp_path, root, keys["a"], keys["b"], keys["c"], ["--key", keys["a"]["public"]])


# -- the tamper classes ---------------------------------------------------------


def t_file_changed(c: Ctx) -> None:
    (c.root / "app/main.py").write_text("print('evil')\n")


def t_file_added(c: Ctx) -> None:
    (c.root / "app/backdoor.py").write_text("import os\n")


def t_file_removed(c: Ctx) -> None:
    (c.root / "app/util.py").unlink()


def t_lock_edited(c: Ctx) -> None:
    lock = json.loads((c.root / "capsule.lock").read_text())
    lock["files"][0]["sha256"] = "0" * 64
    (c.root / "capsule.lock").write_text(json.dumps(lock))


def t_definition_edited(c: Ctx) -> None:
    with open(c.root / "capsule.yaml", "a") as f:
        f.write("description: changed\n")


def t_resealed_after_signing(c: Ctx) -> None:
    """The attacker edits a file and re-seals: integrity passes, the signature must not."""
    (c.root / "app/main.py").write_text("print('evil')\n")
    Capsule.load(c.root).seal()


def t_version_bumped_and_resealed(c: Ctx) -> None:
    (c.root / "capsule.yaml").write_text("name: orders\nversion: 1.0.1\n")
    Capsule.load(c.root).seal()


def t_signature_bytes_flipped(c: Ctx) -> None:
    doc = c.sig()
    raw = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    raw[10] ^= 0x01
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    c.write_sig(doc)


def t_payload_edited(c: Ctx) -> None:
    doc = c.sig()
    st = json.loads(base64.b64decode(doc["payload"]))
    st["predicate"]["expires"] = "2999-01-01T00:00:00Z"
    doc["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    c.write_sig(doc)


def t_replayed_from_other_capsule(c: Ctx) -> None:
    other = c.tmp / "other"
    write_capsule(other, {"x.txt": "x\n"}, name="payments", version="1.0.0")
    sign_capsule(other, c.a["private"])
    shutil.copy(other / "capsule.sig", c.root / "capsule.sig")


def t_replayed_same_name_other_content(c: Ctx) -> None:
    other = c.tmp / "other"
    write_capsule(other, {"x.txt": "x\n"}, name="orders", version="1.0.0")
    sign_capsule(other, c.a["private"])
    shutil.copy(other / "capsule.sig", c.root / "capsule.sig")


def t_rollback_min_version(c: Ctx) -> None:
    c.args += ["--min-version", "1.1.0"]


def t_rollback_policy_min_version(c: Ctx) -> None:
    with open(c.root / "capsule.yaml", "a") as f:
        f.write("policy:\n  min_version: 2.0.0\n")
    Capsule.load(c.root).seal()
    sign_capsule(c.root, c.a["private"])


def t_expired(c: Ctx) -> None:
    sign_capsule(c.root, c.a["private"], expires="1h", now=dt.datetime(2020, 1, 1, tzinfo=UTC))


def t_wrong_key(c: Ctx) -> None:
    """Signed with C but labelled with A's key id: the trusted key A rejects it."""
    sign_capsule(c.root, c.c["private"])
    doc = c.sig()
    doc["signatures"] = [s for s in doc["signatures"] if s["keyid"] == c.c["keyid"]]
    doc["signatures"][0]["keyid"] = c.a["keyid"]
    c.write_sig(doc)


def t_unknown_key(c: Ctx) -> None:
    (c.root / "capsule.sig").unlink()
    sign_capsule(c.root, c.c["private"])


def t_same_key_twice_for_threshold(c: Ctx) -> None:
    doc = c.sig()
    dup = dict(doc["signatures"][0], keyid=c.b["keyid"])  # A's signature relabelled as B's
    doc["signatures"].append(dup)
    c.write_sig(doc)
    c.args += ["--key", c.b["public"], "--threshold", "2"]


def t_threshold_not_met(c: Ctx) -> None:
    c.args += ["--key", c.b["public"], "--threshold", "2"]


def t_hmac_forged_with_public_key(c: Ctx) -> None:
    """HMAC/Ed25519 confusion: an HMAC-SHA256 'signature' keyed with A's public key bytes."""
    doc = c.sig()
    body = base64.b64decode(doc["payload"])
    for secret in (Path(c.a["public"]).read_bytes(), _raw_public(c.a["public"])):
        mac = hmac.new(secret, pae(PAYLOAD_TYPE, body), hashlib.sha256).digest()
        doc["signatures"].append({"keyid": c.a["keyid"], "sig": base64.b64encode(mac).decode()})
    doc["signatures"] = doc["signatures"][1:]  # only the forgeries remain
    c.write_sig(doc)


def t_ed25519_checked_with_hmac_key(c: Ctx) -> None:
    c.args = ["--hmac-key-env", "QL_TEST_HMAC"]
    c.env["QL_TEST_HMAC"] = _raw_public(c.a["public"]).hex()


def t_stripped_policy(c: Ctx) -> None:
    with open(c.root / "capsule.yaml", "a") as f:
        f.write("policy:\n  require_signature: true\n")
    Capsule.load(c.root).seal()
    (c.root / "capsule.sig").unlink()
    c.args = []


def t_stripped_flag(c: Ctx) -> None:
    (c.root / "capsule.sig").unlink()
    c.args = ["--require-signature"]


def t_stripped_with_key(c: Ctx) -> None:
    (c.root / "capsule.sig").unlink()


def t_signatures_emptied(c: Ctx) -> None:
    doc = c.sig()
    doc["signatures"] = []
    c.write_sig(doc)


def t_envelope_garbage(c: Ctx) -> None:
    (c.root / "capsule.sig").write_text("{not json")


def t_payload_type_changed(c: Ctx) -> None:
    doc = c.sig()
    doc["payloadType"] = "application/json"
    c.write_sig(doc)


def _raw_public(path: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    return load_pem_public_key(Path(path).read_bytes()).public_bytes(Encoding.Raw, PublicFormat.Raw)


TAMPER: list[tuple[Callable[[Ctx], None], str]] = [
    (t_file_changed, "modified: app/main.py"),
    (t_file_added, "added: app/backdoor.py"),
    (t_file_removed, "removed: app/util.py"),
    (t_lock_edited, "capsule.lock"),
    (t_definition_edited, "modified: capsule.yaml"),
    (t_resealed_after_signing, "subject digest mismatch"),
    (t_version_bumped_and_resealed, "signed for orders@1.0.0 but capsule.yaml says orders@1.0.1"),
    (t_signature_bytes_flipped, "invalid signature by trusted key"),
    (t_payload_edited, "invalid signature by trusted key"),
    (t_replayed_from_other_capsule, "signed for payments@1.0.0 but capsule.yaml says orders@1.0.0"),
    (t_replayed_same_name_other_content, "subject digest mismatch"),
    (t_rollback_min_version, "rollback: signed version 1.0.0 is older than the minimum 1.1.0"),
    (t_rollback_policy_min_version, "rollback: signed version 1.0.0 is older than the minimum 2.0.0"),
    (t_expired, "signature expired at 2020-01-01T01:00:00Z"),
    (t_wrong_key, "invalid signature by trusted key"),
    (t_unknown_key, "not signed by a trusted key"),
    (t_same_key_twice_for_threshold, "only 1 of 2 required distinct trusted keys"),
    (t_threshold_not_met, "only 1 of 2 required distinct trusted keys"),
    (t_hmac_forged_with_public_key, "invalid signature by trusted key"),
    (t_ed25519_checked_with_hmac_key, "not signed by a trusted key"),
    (t_stripped_policy, "missing: the capsule is not signed but a signature is required (policy.require_signature"),
    (t_stripped_flag, "a signature is required (--require-signature)"),
    (t_stripped_with_key, "a signature is required (trusted keys were given)"),
    (t_signatures_emptied, "the envelope holds no signatures"),
    (t_envelope_garbage, "not a DSSE envelope"),
    (t_payload_type_changed, "payloadType is 'application/json'"),
]


@pytest.mark.parametrize(("tamper", "cause"), TAMPER, ids=[t.__name__[2:] for t, _ in TAMPER])
def test_tamper_matrix(ctx: Ctx, qlcapsule_cli, tamper: Callable[[Ctx], None], cause: str) -> None:  # type: ignore[no-untyped-def]
    res = qlcapsule_cli("verify", str(ctx.root), *ctx.args)
    assert res.exit_code == 0, f"the clean capsule must verify first: {res.output}"
    tamper(ctx)
    res = qlcapsule_cli("verify", str(ctx.root), *ctx.args, env=ctx.env)
    assert res.exit_code == 1, res.output
    assert cause in res.stderr, res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1  # one line, no traceback
    res = qlcapsule_cli("verify", str(ctx.root), *ctx.args, "--json", env=ctx.env)
    answer = json.loads(res.stdout)
    assert res.exit_code == 1 and answer["ok"] is False and answer["exit_code"] == 1
    assert cause in answer["error"]["message"] and answer["result"]["stage"] in ("integrity", "signature")


def test_tamper_matrix_has_the_required_classes() -> None:
    assert len(TAMPER) >= 15


def test_rollback_against_the_version_store(tmp_path: Path, keys: dict, monkeypatch, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    """A validly signed 1.0.0 is refused once the store holds 2.0.0 (real pygit2 store)."""
    from qlcapsule.store import versions as store

    if not hasattr(store, "latest_version") or not hasattr(store, "commit_capsule"):
        pytest.skip(
            "qlcapsule.store.versions has no latest_version/commit_capsule yet: rollback via store not testable"
        )
    monkeypatch.setenv("QLCAPSULE_STORE", str(tmp_path / "store.git"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@example.com")
    old, new = tmp_path / "old", tmp_path / "new"
    write_capsule(old, FILES, name="orders", version="1.0.0")
    write_capsule(new, FILES, name="orders", version="2.0.0")
    for root in (old, new):
        sign_capsule(root, keys["a"]["private"])
    assert qlcapsule_cli("verify", str(old), "--key", keys["a"]["public"]).exit_code == 0
    store.commit_capsule(new)
    assert store.latest_version(old, "orders") == "2.0.0"
    res = qlcapsule_cli("verify", str(old), "--key", keys["a"]["public"])
    assert res.exit_code == 1 and "rollback" in res.stderr and "version store" in res.stderr, res.output
    res = qlcapsule_cli("verify", str(old), "--key", keys["a"]["public"], "--allow-rollback")
    assert res.exit_code == 0, res.output
    assert qlcapsule_cli("verify", str(new), "--key", keys["a"]["public"]).exit_code == 0


# -- no false rejects -------------------------------------------------------------


def test_clean_variants_verify(tmp_path: Path, keys: dict, monkeypatch, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HK1", "11" * 32)
    monkeypatch.setenv("HK2", "base64:" + base64.b64encode(b"k" * 40).decode())
    files = dict(FILES)
    files.update(
        {"d\u00e9j\u00e0 vu/\u00fcn\u00efc\u00f8d\u00e9.txt": "caf\u00e9\n", "empty": b"", "bin.dat": bytes(range(256))}
    )
    root = tmp_path / "c"
    write_capsule(root, files, name="c", version="1.0.0-rc.1+build.5")
    a = keys["a"]
    verify = lambda *args: qlcapsule_cli("verify", str(root), *args)  # noqa: E731
    sign_capsule(root, a["private"], expires="30d")
    assert verify("--key", a["public"]).exit_code == 0
    # co-signers keep each other's signatures only when they trust each other's keys
    cosigners = tmp_path / "cosigners.yaml"
    cosigners.write_text(
        f"- {{algorithm: ed25519, key_file: {a['public']}}}\n- {{algorithm: ed25519, key_file: {keys['b']['public']}}}\n"
        "- {algorithm: hmac-sha256, key_env: HK1}\n- {algorithm: hmac-sha256, key_env: HK2}\n"
    )
    sign_capsule(root, key_env="HK1", trust=cosigners)  # co-sign over the same statement
    sign_capsule(root, key_env="HK2", trust=cosigners)
    sign_capsule(root, keys["b"]["private"], trust=cosigners)
    sign_capsule(root, keys["b"]["private"], trust=cosigners)  # re-sign replaces, never duplicates
    doc = json.loads((root / "capsule.sig").read_text())
    assert len(doc["signatures"]) == 4
    res = verify(
        "--key",
        a["public"],
        "--key",
        keys["b"]["public"],
        "--hmac-key-env",
        "HK1",
        "--hmac-key-env",
        "HK2",
        "--threshold",
        "4",
    )
    assert res.exit_code == 0 and "4 of 4 required" in res.stdout, res.output
    for args in (
        ["--key", keys["b"]["public"]],
        ["--hmac-key-env", "HK2"],
        ["--key", keys["c"]["public"], "--key", a["public"]],
    ):
        assert verify(*args).exit_code == 0, args
    # a trust file in YAML and in JSON, with key, key_file and key_env entries
    pem = Path(a["public"]).read_text()
    (tmp_path / "trust.yaml").write_text(
        "keys:\n"
        f"  - algorithm: ed25519\n    name: release\n    keyid: {a['keyid']}\n    key: |\n"
        + "".join(f"      {line}\n" for line in pem.splitlines())
        + f"  - {{algorithm: ed25519, key_file: {Path(keys['b']['public']).name}}}\n"
        "  - {algorithm: hmac-sha256, key_env: HK1}\n"
    )
    shutil.copy(keys["b"]["public"], tmp_path)
    assert verify("--trust", str(tmp_path / "trust.yaml"), "--threshold", "3").exit_code == 0
    (tmp_path / "trust.json").write_text(json.dumps([{"algorithm": "ed25519", "key": _raw_public(a["public"]).hex()}]))
    res = verify("--trust", str(tmp_path / "trust.json"), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["result"]["signature"]["status"] == "verified"


def test_policy_threshold_narrows_but_policy_trust_is_no_trust_root(tmp_path: Path, keys: dict, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    """capsule.yaml may raise the threshold; the trust file it names is never read."""
    shutil.copy(keys["a"]["public"], tmp_path / "a.pub")
    shutil.copy(keys["b"]["public"], tmp_path / "b.pub")
    (tmp_path / "trust.yaml").write_text(
        "- {algorithm: ed25519, key_file: a.pub}\n- {algorithm: ed25519, key_file: b.pub}\n"
    )
    root = tmp_path / "c"
    definition = "name: c\nversion: 1.0.0\npolicy:\n  require_signature: true\n  threshold: 2\n  trust: ../trust.yaml\n"
    write_capsule(root, {"a.txt": "a\n"}, definition=definition)
    sign_capsule(root, keys["a"]["private"])
    trust = ("--trust", str(tmp_path / "trust.yaml"))
    res = qlcapsule_cli("verify", str(root), *trust)
    assert res.exit_code == 1 and "only 1 of 2" in res.stderr, res.output
    sign_capsule(root, keys["b"]["private"], trust=tmp_path / "trust.yaml")
    res = qlcapsule_cli("verify", str(root), *trust)
    assert res.exit_code == 0 and "2 of 2 required" in res.stdout, res.output
    # policy.trust names the same file, but the capsule does not choose its judges
    res = qlcapsule_cli("verify", str(root))
    assert res.exit_code == 1 and "no trusted keys were given" in res.stderr, res.output
    assert "policy.trust in capsule.yaml is not a trust root" in res.stderr
    # the policy threshold is a floor: --threshold cannot lower it
    res = qlcapsule_cli("verify", str(root), "--key", keys["a"]["public"], "--threshold", "1")
    assert res.exit_code == 2 and "threshold 2 needs 2 distinct trusted keys" in res.stderr


def test_signed_capsule_without_keys_is_reported_unchecked(ctx: Ctx, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    res = qlcapsule_cli("verify", str(ctx.root))
    assert res.exit_code == 0 and "NOT checked" in res.stdout
    res = qlcapsule_cli("verify", str(ctx.root), "--require-signature")
    assert res.exit_code == 1 and "no trusted keys were given" in res.stderr


def test_unsigned_capsule_passes_without_policy(make_capsule, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule()
    res = qlcapsule_cli("verify", str(capsule.root), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["result"]["signature"] == {"status": "unsigned"}


def test_any_exception_in_a_signer_is_a_failure(ctx: Ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from qlcapsule_plugins.signers.ed25519 import Ed25519Signer

    def boom(self, key, pae, sig):  # type: ignore[no-untyped-def]
        raise RuntimeError("hardware token unplugged")

    monkeypatch.setattr(Ed25519Signer, "verify", boom)
    capsule = Capsule.load(ctx.root)
    with pytest.raises(SignatureError, match="invalid signature"):
        verify_signatures(capsule, capsule.require_lock(), keys=[ctx.a["public"]])

    def truthy(self, key, pae, sig):  # type: ignore[no-untyped-def]
        return "yes"  # anything but True is a failure

    monkeypatch.setattr(Ed25519Signer, "verify", truthy)
    with pytest.raises(SignatureError):
        verify_signatures(capsule, capsule.require_lock(), keys=[ctx.a["public"]])


# -- signing ------------------------------------------------------------------------


def test_sign_refuses_a_changed_capsule(ctx: Ctx, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    before = (ctx.root / "capsule.sig").read_bytes()
    (ctx.root / "README.md").write_text("changed\n")
    res = qlcapsule_cli("sign", str(ctx.root), "--key", ctx.a["private"])
    assert res.exit_code == 1 and "cannot sign" in res.stderr and "README.md" in res.stderr
    assert (ctx.root / "capsule.sig").read_bytes() == before


def test_resign_after_reseal_drops_stale_cosignatures(ctx: Ctx, capsys) -> None:  # type: ignore[no-untyped-def]
    sign_capsule(ctx.root, ctx.b["private"])
    (ctx.root / "README.md").write_text("v2\n")
    Capsule.load(ctx.root).seal()
    result = sign_capsule(ctx.root, ctx.a["private"])
    assert result.dropped == 1 and result.keyids == [ctx.a["keyid"]]
    assert "dropping 1 signature(s)" in capsys.readouterr().err


def test_sign_cli_keys_from_file_env_and_stdin(make_capsule, tmp_path: Path, keys: dict, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule()
    root = str(capsule.root)
    res = qlcapsule_cli("sign", root, "--key", keys["a"]["private"], "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["result"]["keyid"] == keys["a"]["keyid"]
    trust = tmp_path / "cosigners.yaml"
    trust.write_text(
        f"- {{algorithm: ed25519, key_file: {keys['a']['public']}}}\n"
        f"- {{algorithm: ed25519, key_file: {keys['b']['public']}}}\n"
    )
    res = qlcapsule_cli("sign", root, "--key", "-", "--trust", str(trust), input=Path(keys["b"]["private"]).read_text())
    assert res.exit_code == 0 and keys["b"]["keyid"][:16] in res.stdout and "2 signatures" in res.stdout
    # the operator's trust file from the environment does the same
    res = qlcapsule_cli("sign", root, "--key-env", "SK", env={"SK": "aa" * 32, "QLCAPSULE_TRUST_FILE": str(trust)})
    assert res.exit_code == 0 and "hmac-sha256" in res.stdout and "3 signatures" in res.stdout
    assert "aa" * 32 not in res.output


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        ([], {}, 2, "no signing key"),
        (["--key", "/nonexistent/k"], {}, 2, "--key /nonexistent/k: no such file"),
        (["--key-env", "NOPE"], {}, 2, "--key-env NOPE: the environment variable is not set"),
        (["--key-env", "SHORT"], {"SHORT": "ab" * 16}, 2, "HMAC key is 16 bytes; at least 32"),
        (["--key-env", "SHORT"], {"SHORT": "tooshort"}, 2, "HMAC key is 8 bytes"),
        (["--key-env", "K", "--type", "ed25519"], {"K": "ab" * 32}, 2, "not an Ed25519"),
        (["--key-env", "K", "--expires", "soonish"], {"K": "ab" * 32}, 2, "--expires"),
        (["--key-env", "K", "--expires", "2001-01-01"], {"K": "ab" * 32}, 2, "not in the future"),
        (["--key-env", "K", "--type", "rsa"], {"K": "ab" * 32}, 2, "unknown signer 'rsa'"),
    ],
)
def test_sign_bad_input_is_one_line(make_capsule, qlcapsule_cli, args, env, code, message) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule()
    res = qlcapsule_cli("sign", str(capsule.root), *args, env=env)
    assert res.exit_code == code, res.output
    assert message in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not capsule.sig_path.exists()
    for value in env.values():
        assert value not in res.output  # never echo a secret


def test_verify_bad_input(ctx: Ctx, tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    cases = [
        (["--key", ctx.a["private"].replace(".key", ".nope")], "no such file"),
        (["--key", str(ctx.root / "README.md")], "not a public key"),
        (["--hmac-key-env", "NOT_SET_ANYWHERE"], "not set"),
        (["--min-version", "one"], "--min-version: 'one' is not a SemVer"),
        (["--trust", str(tmp_path / "missing.yaml")], "trust file not found"),
    ]
    trust = tmp_path / "t.yaml"
    for body, msg in [
        ("keys: []\n", "non-empty list"),
        ("- {algorithm: ed25519}\n", "exactly one of key, key_file, key_env"),
        ("- {algorithm: hmac-sha256, key: abcabc}\n", "cannot be written in a trust file"),
        ("- {algorithm: nope, key_env: X}\n", "unknown signer 'nope'"),
        ("- {algorithm: ed25519, key: zz, colour: red}\n", "keys[0]: colour: unknown key"),
        (f"- {{algorithm: ed25519, key_file: {ctx.a['public']}, keyid: '{'0' * 64}'}}\n", "does not match the key"),
        ("- [unclosed\n", "invalid YAML"),
    ]:
        name = tmp_path / f"t{len(cases)}.yaml"
        name.write_text(body)
        cases.append((["--trust", str(name)], msg))
    del trust
    for args, msg in cases:
        res = qlcapsule_cli("verify", str(ctx.root), *args)
        assert res.exit_code == 2, (args, res.output)
        assert msg in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)


# -- keys -----------------------------------------------------------------------------


def test_keygen_cli(tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "release.key"
    res = qlcapsule_cli("keygen", "-o", str(out), "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)["result"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert Path(info["public"]) == tmp_path / "release.key.pub" and len(info["keyid"]) == 64
    assert load_signing_key(out).keyid == info["keyid"]
    res = qlcapsule_cli("keygen", "-o", str(out))
    assert res.exit_code == 2 and "already exists" in res.stderr
    assert load_signing_key(out).keyid == info["keyid"]  # untouched
    res = qlcapsule_cli("keygen", "-o", str(out), "--force")
    assert res.exit_code == 0 and "key id:" in res.stdout
    hout = tmp_path / "ci.hmac"
    res = qlcapsule_cli("keygen", "--type", "hmac", "-o", str(hout))
    assert res.exit_code == 0 and stat.S_IMODE(hout.stat().st_mode) == 0o600
    assert not (tmp_path / "ci.hmac.pub").exists() and len(bytes.fromhex(hout.read_text().strip())) == 32
    res = qlcapsule_cli("keygen", "--type", "hmac", "-o", "-")
    assert res.exit_code == 0 and len(res.stdout.strip()) == 64 and "key id:" in res.stderr


def test_openssh_keys(make_capsule, tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    priv = tmp_path / "id_ed25519"
    priv.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    )
    os.chmod(priv, 0o600)
    pub = tmp_path / "id_ed25519.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    capsule = make_capsule()
    assert qlcapsule_cli("sign", str(capsule.root), "--key", str(priv)).exit_code == 0
    res = qlcapsule_cli("verify", str(capsule.root), "--key", str(pub))
    assert res.exit_code == 0, res.output


def test_group_readable_private_key_warns(make_capsule, tmp_path: Path, keys: dict, capsys) -> None:  # type: ignore[no-untyped-def]
    loose = tmp_path / "loose.key"
    shutil.copy(keys["a"]["private"], loose)
    os.chmod(loose, 0o644)
    sign_capsule(make_capsule().root, loose)
    assert "readable by others" in capsys.readouterr().err


def test_hmac_secret_is_never_a_public_key(tmp_path: Path, keys: dict, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PEM", Path(keys["a"]["public"]).read_text())
    with pytest.raises(CredentialsError, match="not a shared secret"):
        load_signing_key(key_env="PEM", key_type="hmac")


def test_dev_key(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QLCAPSULE_HOME", str(tmp_path / "home"))
    with pytest.raises(CredentialsError, match="no development key"):
        dev_key(create=False)
    path = dev_key()
    err = capsys.readouterr().err
    assert "DEVELOPMENT signing key" in err and str(path) in err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and load_signing_key(path).algorithm == "ed25519"
    assert dev_key() == path and dev_key(create=False) == path
    assert capsys.readouterr().err == ""  # the warning comes once, on creation


def test_parse_expires() -> None:
    now = dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_expires("90d", now) == now + dt.timedelta(days=90)
    assert parse_expires("12h", now) == now + dt.timedelta(hours=12)
    assert parse_expires("2w", now) == now + dt.timedelta(weeks=2)
    assert parse_expires("2024-02-01T00:00:00Z", now) == dt.datetime(2024, 2, 1, tzinfo=UTC)
    with pytest.raises(InputError):
        parse_expires("0d", now)


def test_manual_envelope_with_unknown_keyid_only_verifies_by_key(ctx: Ctx) -> None:
    """Key ids are hints: a signature with an empty keyid still verifies."""
    env = Envelope.from_json((ctx.root / "capsule.sig").read_bytes())
    env.signatures = [EnvelopeSignature("", env.signatures[0].sig)]
    (ctx.root / "capsule.sig").write_bytes(env.to_json())
    capsule = Capsule.load(ctx.root)
    report = verify_signatures(capsule, capsule.require_lock(), keys=[ctx.a["public"]])
    assert report["status"] == "verified" and report["keys"][0]["keyid"] == ctx.a["keyid"]


def test_cosign_refuses_a_statement_it_would_not_produce(ctx: Ctx, capsys) -> None:  # type: ignore[no-untyped-def]
    """A planted statement (extra fields, no expiry...) is never co-signed: it is rebuilt."""
    doc = ctx.sig()
    st = json.loads(base64.b64decode(doc["payload"]))
    st["predicate"]["approved_by"] = "security team"
    doc["payload"] = base64.b64encode(json.dumps(st, sort_keys=True, separators=(",", ":")).encode()).decode()
    ctx.write_sig(doc)
    result = sign_capsule(ctx.root, ctx.b["private"])
    assert result.dropped == 1 and result.keyids == [ctx.b["keyid"]]
    assert "approved_by" not in base64.b64decode(ctx.sig()["payload"]).decode()


def test_keygen_to_stdout_shows_the_public_key(qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    res = qlcapsule_cli("keygen", "-o", "-")
    assert res.exit_code == 0 and res.stdout.startswith("-----BEGIN PRIVATE KEY-----")
    assert "-----BEGIN PUBLIC KEY-----" in res.stderr and "key id:" in res.stderr


def test_missing_key_file_is_bad_input_even_when_unsigned(make_capsule, qlcapsule_cli) -> None:
    """A typo in --key used to be reported as 'not signed' (exit 1); it is bad input (exit 2)."""
    capsule = make_capsule({"a.txt": "a"})
    result = qlcapsule_cli("verify", str(capsule.root), "--key", str(capsule.root / "nope.pub"))
    assert result.exit_code == 2
    assert "--key" in result.stderr and "no such file" in result.stderr


def test_multiline_file_is_not_taken_as_an_hmac_secret(make_capsule, qlcapsule_cli) -> None:
    """Signing with capsule.yaml by mistake must fail, not produce an HMAC signature."""
    capsule = make_capsule(
        {"a.txt": "a" * 10}, definition="name: demo\nversion: 1.0.0\ndescription: a long enough text\n"
    )
    result = qlcapsule_cli("sign", str(capsule.root), "--key", str(capsule.root / "capsule.yaml"))
    assert result.exit_code == 2
    assert "spans several lines" in result.stderr
    assert not capsule.sig_path.exists()


# -- review fixes: key reading, options, messages ------------------------------------


def _one_line_error(res, code: int, message: str) -> None:  # type: ignore[no-untyped-def]
    assert res.exit_code == code, (res.exit_code, res.output)
    assert message in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and "internal error" not in res.stderr, res.stderr


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_key_reads_are_capped_and_devices_refused(ctx: Ctx, tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    """/dev/zero as a key (file, stdin, trust file entry, trust file) used to exhaust memory."""
    root = str(ctx.root)
    _one_line_error(qlcapsule_cli("sign", root, "--key", "/dev/zero"), 2, "--key /dev/zero: is not a regular file")
    _one_line_error(qlcapsule_cli("verify", root, "--key", "/dev/zero"), 2, "--key /dev/zero: is not a regular file")
    _one_line_error(qlcapsule_cli("sign", root, "--key", "-", input=b"\0" * 70_000), 2, "more than 64 KiB")
    big = tmp_path / "big.key"
    big.write_bytes(b"a" * 70_000)
    os.chmod(big, 0o600)
    _one_line_error(qlcapsule_cli("sign", root, "--key", str(big)), 2, f"--key {big}: more than 64 KiB")
    trust = tmp_path / "t.yaml"
    trust.write_text("- {algorithm: ed25519, key_file: /dev/zero}\n")
    _one_line_error(
        qlcapsule_cli("verify", root, "--trust", str(trust)), 2, "key_file /dev/zero: is not a regular file"
    )
    _one_line_error(
        qlcapsule_cli("verify", root, "--trust", "/dev/zero"), 2, "/dev/zero: trust file is not a regular file"
    )
    assert ctx.sig()["signatures"][0]["keyid"] == ctx.a["keyid"]  # untouched


def test_a_key_from_a_pipe_is_read(make_capsule, keys: dict) -> None:  # type: ignore[no-untyped-def]
    """Pipes stay allowed (``--key <(vault read ...)``): only devices, sockets and directories are refused."""
    r, w = os.pipe()
    os.write(w, Path(keys["a"]["private"]).read_bytes())
    os.close(w)
    try:
        assert load_signing_key(f"/dev/fd/{r}").keyid == keys["a"]["keyid"]
    finally:
        os.close(r)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("4000000d", "too far in the future"),
        ("99999999999d", "too far in the future"),
        ("9999-12-31T23:00:00-05:00", "too far in the future"),
        ("", "--expires: empty"),
        ("  ", "--expires: empty"),
    ],
)
def test_expires_out_of_range_or_empty_is_bad_input(make_capsule, qlcapsule_cli, value: str, message: str) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule()
    res = qlcapsule_cli("sign", str(capsule.root), "--key-env", "K", "--expires", value, env={"K": "ab" * 32})
    _one_line_error(res, 2, message)
    assert not capsule.sig_path.exists()


def test_keygen_into_a_directory_is_bad_input(tmp_path: Path, monkeypatch, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    for out in (".", "/", str(tmp_path), "sub/.."):
        (tmp_path / "sub").mkdir(exist_ok=True)
        _one_line_error(qlcapsule_cli("keygen", "-o", out), 2, "is a directory")
        _one_line_error(qlcapsule_cli("keygen", "-o", out, "--force"), 2, "is a directory")
    _one_line_error(qlcapsule_cli("keygen", "-o", ""), 2, "-o: an empty file name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # no temporary left behind


def test_keygen_force_keeps_the_old_pair_when_the_public_half_cannot_be_written(tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "b.key"
    keygen("ed25519", key)
    old = key.read_bytes()
    (tmp_path / "b.key.pub").unlink()
    (tmp_path / "b.key.pub").mkdir()
    _one_line_error(qlcapsule_cli("keygen", "-o", str(key), "--force"), 2, "b.key.pub: is a directory")
    assert key.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.key", "b.key.pub"]


def test_keygen_force_puts_the_old_public_key_back_when_the_private_key_fails(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "c.key"
    keygen("ed25519", key)
    old_priv, old_pub = key.read_bytes(), (tmp_path / "c.key.pub").read_bytes()
    real_replace = os.replace

    def replace(src, dst):  # type: ignore[no-untyped-def]
        if Path(dst) == key:
            raise PermissionError(13, "Permission denied", str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(InputError, match=r"c\.key: Permission denied"):
        keygen("ed25519", key, force=True)
    assert key.read_bytes() == old_priv and (tmp_path / "c.key.pub").read_bytes() == old_pub
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.key", "c.key.pub"]


def test_keygen_leaves_nothing_when_the_public_name_is_too_long(tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    name = "a" * 252  # a valid name; name + ".pub" is longer than NAME_MAX (255)
    res = qlcapsule_cli("keygen", "-o", str(tmp_path / name))
    _one_line_error(res, 2, f"{name}.pub: File name too long")
    assert ".tmp" not in res.stderr and list(tmp_path.iterdir()) == []


def _der_ed25519(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    while True:  # a DER key without a newline byte used to pass for a one-line HMAC secret
        der = Ed25519PrivateKey.generate().private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
        if b"\n" not in der and b"\r" not in der:
            break
    path = tmp_path / "ed.der"
    path.write_bytes(der)
    os.chmod(path, 0o600)
    return path


def test_binary_key_is_not_taken_as_an_hmac_secret(make_capsule, tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule()
    der = _der_ed25519(tmp_path)
    _one_line_error(qlcapsule_cli("sign", str(capsule.root), "--key", str(der)), 2, "binary data")
    _one_line_error(qlcapsule_cli("sign", str(capsule.root), "--key", "-", input=der.read_bytes()), 2, "a DER key?")
    assert not capsule.sig_path.exists()
    # a binary secret said to be one is still usable
    raw = tmp_path / "raw.hmac"
    raw.write_bytes(bytes(range(32, 64)) + b"\x01\x02")
    assert load_signing_key(raw, key_type="hmac").algorithm == "hmac-sha256"


def test_a_damaged_dev_key_is_refused_not_used_as_hmac(
    make_capsule, tmp_path: Path, monkeypatch, qlcapsule_cli
) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("QLCAPSULE_HOME", str(home))
    (home / "dev.key").write_text("this is not a key but it is long enough!!\n")
    os.chmod(home / "dev.key", 0o600)
    capsule = make_capsule()
    res = qlcapsule_cli("sign", str(capsule.root), "--dev-key")
    _one_line_error(res, 2, f"{home / 'dev.key'}: the development key is not an Ed25519 private key")
    assert not capsule.sig_path.exists()
    with pytest.raises(CredentialsError, match="development key"):
        dev_key()
    res = qlcapsule_cli("sign", str(capsule.root), "--dev-key", "--type", "hmac")
    _one_line_error(res, 2, "--dev-key is an ed25519 key")


def test_a_key_env_holding_a_path_warns_without_showing_it(make_capsule, tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule()
    value = "/home/runner/work/secrets/ci-signing.hmac"
    res = qlcapsule_cli("sign", str(capsule.root), "--key-env", "CAPSULE_HMAC", env={"CAPSULE_HMAC": value})
    assert "--key-env CAPSULE_HMAC: the value looks like a file path" in res.stderr
    assert value not in res.output and "secrets" not in res.output
    existing = tmp_path / "secret file.hmac"  # not path-like by its spelling, but it exists
    existing.write_text("x" * 40)
    res = qlcapsule_cli("sign", str(capsule.root), "--key-env", "K", env={"K": str(existing)})
    assert "looks like a file path" in res.stderr
    res = qlcapsule_cli("sign", str(make_capsule().root), "--key-env", "K", env={"K": "ab" * 32})
    assert res.exit_code == 0 and res.stderr == ""


def test_min_version_without_keys_is_a_failure(ctx: Ctx, make_capsule, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    """--min-version needs the version from a verified statement: like --require-signature, it fails without keys."""
    res = qlcapsule_cli("verify", str(ctx.root), "--min-version", "2.0.0")
    _one_line_error(res, 1, "a signature is required (--min-version) but no trusted keys were given")
    res = qlcapsule_cli("verify", str(ctx.root), "--require-signature")
    assert res.exit_code == 1 and "no trusted keys were given" in res.stderr
    unsigned = make_capsule()
    res = qlcapsule_cli("verify", str(unsigned.root), "--min-version", "1.0.0")
    _one_line_error(res, 1, "missing: the capsule is not signed but a signature is required (--min-version)")
    res = qlcapsule_cli("verify", str(ctx.root), "--min-version", "1.0.0", *ctx.args)
    assert res.exit_code == 0, res.output


def test_policy_min_version_without_keys_is_a_failure_too(ctx: Ctx, make_capsule, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    """policy.min_version passed as 'NOT checked' without keys, unlike --min-version."""
    with open(ctx.root / "capsule.yaml", "a") as f:
        f.write("policy:\n  min_version: 1.0.0\n")
    Capsule.load(ctx.root).seal()
    sign_capsule(ctx.root, ctx.a["private"])
    res = qlcapsule_cli("verify", str(ctx.root))
    _one_line_error(res, 1, "a signature is required (policy.min_version in capsule.yaml) but no trusted keys")
    res = qlcapsule_cli("verify", str(ctx.root), *ctx.args)
    assert res.exit_code == 0, res.output


def test_key_messages_name_what_the_key_is(make_capsule, tmp_path: Path, keys: dict, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    capsule = make_capsule()
    enc = tmp_path / "enc.key"
    enc.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"pw")
        )
    )
    os.chmod(enc, 0o600)
    _one_line_error(qlcapsule_cli("sign", str(capsule.root), "--key", str(enc)), 2, "an encrypted private key: refused")
    _one_line_error(
        qlcapsule_cli("sign", str(capsule.root), "--key", str(enc), "--type", "ed25519"),
        2,
        "an encrypted private key: refused",
    )
    ecf = tmp_path / "ec.key"
    ecf.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()
        )
    )
    os.chmod(ecf, 0o600)
    _one_line_error(
        qlcapsule_cli("sign", str(capsule.root), "--key", str(ecf)), 2, "unsupported key type (EC private key)"
    )
    pub = keys["a"]["public"]
    assert stat.S_IMODE(Path(pub).stat().st_mode) == 0o644
    res = qlcapsule_cli("sign", str(capsule.root), "--key", pub)
    _one_line_error(res, 2, f"{pub}: a public key; signing needs the private key")
    assert "readable by others" not in res.stderr
    res = qlcapsule_cli("sign", str(capsule.root), "--key", pub, "--type", "ed25519")
    _one_line_error(res, 2, "a public key; signing needs the private key")
    assert not capsule.sig_path.exists()


def test_sign_refuses_a_repeated_key_option(make_capsule, keys: dict, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule()
    res = qlcapsule_cli("sign", str(capsule.root), "--key", keys["a"]["private"], "--key", keys["b"]["private"])
    _one_line_error(res, 2, "--key given 2 times")
    res = qlcapsule_cli(
        "sign", str(capsule.root), "--key-env", "A", "--key-env", "B", env={"A": "ab" * 32, "B": "cd" * 32}
    )
    _one_line_error(res, 2, "--key-env given 2 times")
    assert not capsule.sig_path.exists()


# -- review fixes: capsule.sig and the statement ----------------------------------------


def test_sign_on_an_unsealed_capsule_gives_one_hint(make_capsule, keys: dict, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule(seal=False)
    res = qlcapsule_cli("sign", str(capsule.root), "--key", keys["a"]["private"])
    _one_line_error(res, 1, "not sealed")
    assert res.stderr.count("qlcapsule seal") == 1
    assert qlcapsule_cli("verify", str(capsule.root)).exit_code == res.exit_code  # the same verdict as verify


def test_inconsistent_predicate_name_shows_the_differing_values(ctx: Ctx) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    doc = ctx.sig()
    st = json.loads(base64.b64decode(doc["payload"]))
    st["predicate"]["name"] = "payments"
    payload = json.dumps(st, sort_keys=True, separators=(",", ":")).encode()
    priv = load_pem_private_key(Path(ctx.a["private"]).read_bytes(), None)
    sig = priv.sign(pae(PAYLOAD_TYPE, payload))  # type: ignore[union-attr, call-arg]
    ctx.write_sig(Envelope(payload, PAYLOAD_TYPE, [EnvelopeSignature(ctx.a["keyid"], sig)]).to_dict())
    capsule = Capsule.load(ctx.root)
    with pytest.raises(
        SignatureError,
        match=r"predicate says name 'payments', version '1\.0\.0' but its subject and capsule\.yaml say orders@1\.0\.0",
    ):
        verify_signatures(capsule, capsule.require_lock(), keys=[ctx.a["public"]])


def test_symlinked_capsule_sig_is_refused(ctx: Ctx, tmp_path: Path, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside.sig"
    shutil.move(str(ctx.root / "capsule.sig"), outside)
    os.symlink(outside, ctx.root / "capsule.sig")
    _one_line_error(qlcapsule_cli("verify", str(ctx.root), *ctx.args), 2, "capsule.sig: is a symlink")
    _one_line_error(qlcapsule_cli("verify", str(ctx.root)), 2, "capsule.sig: is a symlink")
    _one_line_error(qlcapsule_cli("sign", str(ctx.root), "--key", ctx.b["private"]), 2, "capsule.sig: is a symlink")
    outside.unlink()  # dangling: still a symlink, not "unsigned"
    _one_line_error(qlcapsule_cli("verify", str(ctx.root)), 2, "capsule.sig: is a symlink")


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_capsule_sig_that_is_not_a_regular_file_is_named(make_capsule, kind: str, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule()
    if kind == "directory":
        capsule.sig_path.mkdir()
    else:
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(capsule.sig_path)
    _one_line_error(qlcapsule_cli("verify", str(capsule.root)), 2, "capsule.sig: is not a regular file")


def test_oversized_capsule_sig_fails_and_is_replaced_by_sign(ctx: Ctx, capsys) -> None:  # type: ignore[no-untyped-def]
    with open(ctx.root / "capsule.sig", "r+b") as f:
        f.truncate(2 * 1024 * 1024)  # sparse: nothing to read before the size is refused
    capsule = Capsule.load(ctx.root)
    with pytest.raises(SignatureError, match="a capsule.sig is at most 1024 KiB"):
        verify_signatures(capsule, capsule.require_lock(), keys=[ctx.a["public"]])
    sign_capsule(ctx.root, ctx.a["private"])
    assert "replacing it" in capsys.readouterr().err
    capsule = Capsule.load(ctx.root)
    assert verify_signatures(capsule, capsule.require_lock(), keys=[ctx.a["public"]])["status"] == "verified"


# -- issue 16: trust roots come from the operator, never from the capsule ------------------


def _pr_resigned_by_attacker(ctx: Ctx, *, policy: str, own_trust: str = "trust.yaml") -> None:
    """What a pull request can do: edit, re-seal, re-sign with its own key, point policy.trust at its own keys."""
    (ctx.root / "app/main.py").write_text("print('evil')\n")
    entry = f"- {{algorithm: ed25519, key_file: {ctx.c['public']}}}\n"
    if own_trust.startswith("/"):
        Path(own_trust).write_text(entry)
    else:
        (ctx.root / own_trust).write_text(entry)
    (ctx.root / "capsule.yaml").write_text(f"name: orders\nversion: 1.0.0\npolicy:\n  trust: {own_trust}\n{policy}")
    Capsule.load(ctx.root).seal()
    (ctx.root / "capsule.sig").unlink()
    sign_capsule(ctx.root, ctx.c["private"])


def _operator_trust(ctx: Ctx) -> Path:
    path = ctx.tmp / "operator-trust.yaml"
    path.write_text(f"- {{algorithm: ed25519, key_file: {ctx.a['public']}}}\n")
    return path


def test_policy_trust_naming_the_attackers_own_keys_is_not_a_trust_root(ctx: Ctx, qlcapsule_cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from qlcapsule.pipeline import verify_capsule

    _pr_resigned_by_attacker(ctx, policy="")
    res = qlcapsule_cli("verify", str(ctx.root))
    # integrity holds (the attacker re-sealed), but nothing says the signature is trusted
    assert res.exit_code == 0 and "NOT checked" in res.stdout and "signed by" not in res.stdout, res.output
    assert (
        "not checked against any trusted key" in res.stdout
        and "policy.trust in capsule.yaml is not a trust root" in res.stdout
    )
    report = verify_capsule(ctx.root)
    assert report["signature"]["status"] == "unchecked"
    # with the operator's keys (flag or environment) the attacker's signature fails
    res = qlcapsule_cli("verify", str(ctx.root), "--trust", str(_operator_trust(ctx)))
    assert res.exit_code == 1 and "not signed by a trusted key" in res.stderr, res.output
    monkeypatch.setenv("QLCAPSULE_TRUST_FILE", str(_operator_trust(ctx)))
    res = qlcapsule_cli("verify", str(ctx.root))
    assert res.exit_code == 1 and "not signed by a trusted key" in res.stderr, res.output
    with pytest.raises(SignatureError, match="not signed by a trusted key"):
        verify_capsule(ctx.root)


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_policy_trust_with_require_signature_fails_without_operator_keys(ctx: Ctx, qlcapsule_cli, where: str) -> None:  # type: ignore[no-untyped-def]
    own = "trust.yaml" if where == "inside" else str(ctx.tmp / "attacker-trust.yaml")
    _pr_resigned_by_attacker(ctx, policy="  require_signature: true\n  threshold: 1\n", own_trust=own)
    res = qlcapsule_cli("verify", str(ctx.root))
    _one_line_error(res, 1, "a signature is required (policy.require_signature in capsule.yaml) but no trusted keys")
    assert "policy.trust in capsule.yaml is not a trust root" in res.stderr
    capsule = Capsule.load(ctx.root)
    with pytest.raises(SignatureError, match="no trusted keys were given"):
        verify_signatures(capsule, capsule.require_lock())


def test_policy_may_raise_the_threshold_but_never_add_keys(ctx: Ctx, qlcapsule_cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Signed by a and b; the capsule's policy.trust lists both; the operator trusts a only."""
    both = f"- {{algorithm: ed25519, key_file: {ctx.a['public']}}}\n- {{algorithm: ed25519, key_file: {ctx.b['public']}}}\n"
    (ctx.root / "both.yaml").write_text(both)
    (ctx.root / "capsule.yaml").write_text(
        "name: orders\nversion: 1.0.0\npolicy:\n  threshold: 2\n  trust: both.yaml\n"
    )
    Capsule.load(ctx.root).seal()
    (ctx.root / "capsule.sig").unlink()
    sign_capsule(ctx.root, ctx.a["private"])
    sign_capsule(ctx.root, ctx.b["private"], trust=ctx.root / "both.yaml")
    res = qlcapsule_cli("verify", str(ctx.root), "--key", ctx.a["public"])
    _one_line_error(res, 2, "threshold 2 needs 2 distinct trusted keys, but only 1")
    monkeypatch.setenv("QLCAPSULE_TRUST_FILE", str(_operator_trust(ctx)))
    _one_line_error(qlcapsule_cli("verify", str(ctx.root)), 2, "threshold 2 needs 2 distinct trusted keys, but only 1")
    # the operator trusting both: the policy's threshold holds
    (ctx.tmp / "op2.yaml").write_text(both)
    monkeypatch.setenv("QLCAPSULE_TRUST_FILE", str(ctx.tmp / "op2.yaml"))
    res = qlcapsule_cli("verify", str(ctx.root))
    assert res.exit_code == 0 and "2 of 2 required" in res.stdout, res.output


def test_the_operator_trust_file_does_not_require_a_signature(
    make_capsule, ctx: Ctx, qlcapsule_cli, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QLCAPSULE_TRUST_FILE", str(_operator_trust(ctx)))
    res = qlcapsule_cli("verify", str(make_capsule().root))
    assert res.exit_code == 0 and res.stdout.rstrip().endswith("unsigned"), res.output
    res = qlcapsule_cli("verify", str(ctx.root))
    assert res.exit_code == 0 and "signed by ed25519" in res.stdout, res.output
    # an explicit --key replaces it (the same key is not trusted twice, nor another one added)
    res = qlcapsule_cli("verify", str(ctx.root), "--key", ctx.b["public"])
    assert res.exit_code == 1 and "not signed by a trusted key" in res.stderr, res.output
    monkeypatch.setenv("QLCAPSULE_TRUST_FILE", str(ctx.tmp / "missing.yaml"))
    _one_line_error(qlcapsule_cli("verify", str(ctx.root)), 2, "missing.yaml: trust file not found")


# -- co-signing never adopts what it did not verify ---------------------------------------


def _planted(ctx: Ctx, signer: str, *, expires_in: int | None = 5, keyid: str | None = None) -> bytes:
    """A statement exactly as 'sign' would build it for this seal, signed by ``signer``'s key."""
    from qlcapsule import __version__
    from qlcapsule.signing.envelope import Statement

    capsule = Capsule.load(ctx.root)
    lock = capsule.require_lock()
    now = dt.datetime.now(UTC).replace(microsecond=0)
    payload = Statement.build(
        name="orders",
        version="1.0.0",
        digest=lock.digest,
        files=len(lock.files),
        created=now,
        expires=now + dt.timedelta(seconds=expires_in) if expires_in is not None else None,
        tool_version=__version__,
    )
    skey = load_signing_key(signer)
    sig = EnvelopeSignature(
        keyid if keyid is not None else skey.keyid, skey.signer.sign(skey.key, pae(PAYLOAD_TYPE, payload))
    )
    (ctx.root / "capsule.sig").write_bytes(Envelope(payload, PAYLOAD_TYPE, [sig]).to_json())
    return payload


def test_cosign_does_not_adopt_a_statement_planted_by_an_untrusted_key(ctx: Ctx, capsys, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    planted = _planted(ctx, ctx.c["private"], expires_in=5)
    result = sign_capsule(ctx.root, ctx.a["private"])  # the CI key
    assert result.expires is None and result.keyids == [ctx.a["keyid"]] and result.dropped == 1
    assert base64.b64decode(ctx.sig()["payload"]) != planted
    assert "no trusted key signed" in capsys.readouterr().err
    res = qlcapsule_cli("verify", str(ctx.root), *ctx.args)
    assert res.exit_code == 0 and "expires" not in res.stdout, res.output


def test_cosign_does_not_adopt_a_statement_that_only_claims_the_ci_key_id(ctx: Ctx, capsys) -> None:  # type: ignore[no-untyped-def]
    """The planted signature names the CI key (and another trusted key) as its keyid: a hint, not a proof."""
    planted = _planted(ctx, ctx.c["private"], expires_in=5, keyid=ctx.b["keyid"])
    trust = ctx.tmp / "cosigners.yaml"
    trust.write_text(f"- {{algorithm: ed25519, key_file: {ctx.b['public']}}}\n")
    result = sign_capsule(ctx.root, ctx.a["private"], trust=trust)
    assert result.expires is None and result.keyids == [ctx.a["keyid"]]
    assert base64.b64decode(ctx.sig()["payload"]) != planted
    _planted(ctx, ctx.c["private"], expires_in=5, keyid=ctx.a["keyid"])
    result = sign_capsule(ctx.root, ctx.a["private"])
    assert result.expires is None and result.keyids == [ctx.a["keyid"]]


def test_cosign_adopts_a_trusted_statement_and_drops_what_it_cannot_verify(ctx: Ctx, capsys) -> None:  # type: ignore[no-untyped-def]
    """a signed; an unknown signature (c) is slipped in; b co-signs trusting a: a kept, c dropped."""
    doc = ctx.sig()
    env = Envelope.from_json((ctx.root / "capsule.sig").read_bytes())
    skey = load_signing_key(ctx.c["private"])
    doc["signatures"].append(
        {"keyid": ctx.c["keyid"], "sig": base64.b64encode(skey.signer.sign(skey.key, env.pae())).decode()}
    )
    ctx.write_sig(doc)
    trust = ctx.tmp / "cosigners.yaml"
    trust.write_text(f"- {{algorithm: ed25519, key_file: {ctx.a['public']}}}\n")
    result = sign_capsule(ctx.root, ctx.b["private"], trust=trust)
    assert result.keyids == [ctx.a["keyid"], ctx.b["keyid"]] and result.dropped == 1
    assert ctx.sig()["payload"] == doc["payload"]
    assert "dropping 1 signature(s) no trusted key verifies" in capsys.readouterr().err


def test_cosign_never_adopts_an_expired_statement(ctx: Ctx, capsys) -> None:  # type: ignore[no-untyped-def]
    sign_capsule(ctx.root, ctx.a["private"], expires="2s", now=dt.datetime.now(UTC) - dt.timedelta(seconds=10))
    trust = ctx.tmp / "cosigners.yaml"
    trust.write_text(f"- {{algorithm: ed25519, key_file: {ctx.a['public']}}}\n")
    result = sign_capsule(ctx.root, ctx.b["private"], trust=trust)
    assert result.keyids == [ctx.b["keyid"]] and result.expires is None
    assert "expired at" in capsys.readouterr().err


# -- permissions: what anyone on the machine could rewrite is refused ---------------------


def test_world_writable_private_key_is_refused(make_capsule, tmp_path: Path, keys: dict, qlcapsule_cli) -> None:  # type: ignore[no-untyped-def]
    loose = tmp_path / "loose.key"
    shutil.copy(keys["a"]["private"], loose)
    os.chmod(loose, 0o666)
    capsule = make_capsule()
    _one_line_error(qlcapsule_cli("sign", str(capsule.root), "--key", str(loose)), 2, "writable by every account")
    assert not capsule.sig_path.exists()
    with pytest.raises(CredentialsError, match="chmod o-w"):
        load_signing_key(loose)


def test_world_writable_public_key_and_trust_files_are_refused(ctx: Ctx, qlcapsule_cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pub = ctx.tmp / "a.pub"
    shutil.copy(ctx.a["public"], pub)
    os.chmod(pub, 0o646)
    _one_line_error(
        qlcapsule_cli("verify", str(ctx.root), "--key", str(pub)), 2, f"--key {pub}: writable by every account"
    )
    trust = ctx.tmp / "trust.yaml"
    trust.write_text(f"- {{algorithm: ed25519, key_file: {pub}}}\n")
    os.chmod(trust, 0o644)
    # a safe trust file naming a world-writable key file
    _one_line_error(
        qlcapsule_cli("verify", str(ctx.root), "--trust", str(trust)), 2, f"key_file {pub}: writable by every"
    )
    os.chmod(pub, 0o644)
    assert qlcapsule_cli("verify", str(ctx.root), "--trust", str(trust)).exit_code == 0
    os.chmod(trust, 0o666)
    _one_line_error(
        qlcapsule_cli("verify", str(ctx.root), "--trust", str(trust)), 2, "trust file: writable by every account"
    )
    monkeypatch.setenv("QLCAPSULE_TRUST_FILE", str(trust))
    _one_line_error(qlcapsule_cli("verify", str(ctx.root)), 2, "trust file: writable by every account")
    _one_line_error(
        qlcapsule_cli("sign", str(ctx.root), "--key", ctx.b["private"]), 2, "trust file: writable by every account"
    )


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another uid needs root")
def test_a_dev_key_owned_by_another_account_is_refused(
    make_capsule, tmp_path: Path, monkeypatch, qlcapsule_cli
) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    monkeypatch.setenv("QLCAPSULE_HOME", str(home))
    path = dev_key(create=True)
    capsule = make_capsule()
    os.chown(path, 4242, 4242)
    _one_line_error(qlcapsule_cli("sign", str(capsule.root), "--dev-key"), 2, "belongs to another account (uid 4242")
    assert not capsule.sig_path.exists()
    with pytest.raises(CredentialsError, match="another account"):
        dev_key()
    os.chown(path, os.geteuid(), os.getegid())
    os.chown(home, 4242, 4242)  # the folder: its owner could swap the key at any time
    with pytest.raises(CredentialsError, match="folder of the development key belongs to another account"):
        dev_key()
    os.chown(home, os.geteuid(), os.getegid())
    os.chmod(home, 0o777)
    with pytest.raises(CredentialsError, match="writable by every account"):
        dev_key()
    os.chmod(home, 0o700)
    assert qlcapsule_cli("sign", str(capsule.root), "--dev-key").exit_code == 0


def test_the_operator_trust_file_is_read_only_when_there_is_something_to_co_sign(
    make_capsule, ctx: Ctx, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """A CI job's trust file may name secrets only verifying jobs hold: a first signature does not need them."""
    trust = ctx.tmp / "op.yaml"
    trust.write_text("- {algorithm: hmac-sha256, key_env: ONLY_IN_THE_VERIFY_JOB}\n")
    monkeypatch.setenv("QLCAPSULE_TRUST_FILE", str(trust))
    monkeypatch.delenv("ONLY_IN_THE_VERIFY_JOB", raising=False)
    assert sign_capsule(make_capsule().root, ctx.a["private"]).keyids == [ctx.a["keyid"]]
    assert sign_capsule(ctx.root, ctx.a["private"]).replaced  # re-signing alone: nothing to co-sign
    with pytest.raises(CredentialsError, match="ONLY_IN_THE_VERIFY_JOB"):
        sign_capsule(ctx.root, ctx.b["private"])  # co-signing needs the operator's keys
    with pytest.raises(InputError, match="trust file not found"):
        sign_capsule(ctx.root, ctx.a["private"], trust=ctx.tmp / "missing.yaml")
