"""What ``seal``, ``verify``, ``sign`` and ``commit`` print and exit with, on every outcome.

Each case runs through ``qlcapsule_cli``, the console script's own entry in process, from inside the capsule
(so a command without DIRECTORY works on ``.``). Outputs are compared whole after paths, key ids, digests,
commit ids and signing times are replaced by placeholders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, NamedTuple

import pytest

from qlcapsule.testing import CliResult, write_capsule

Cli = Callable[..., CliResult]


class Keys(NamedTuple):
    key: Path  # signs by default
    other: Path  # a second signer, trusted only where a case says so
    ids: dict[str, str]  # keyid -> placeholder


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    from qlcapsule.signing.signatures import keygen

    folder = tmp_path_factory.mktemp("keys")
    made = {name: keygen("ed25519", folder / f"{name}.key") for name in ("key", "other")}
    return Keys(folder / "key.key", folder / "other.key", {made[n]["keyid"]: n.upper() for n in made})


@pytest.fixture(autouse=True)
def _operator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No trust file, store or debug switch from the environment the suite runs in."""
    for name in ("QLCAPSULE_TRUST_FILE", "QLCAPSULE_STORE", "QLCAPSULE_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def _normal(text: str, root: Path, keys: Keys) -> str:
    for keyid, name in keys.ids.items():
        text = text.replace(keyid, name).replace(keyid[:16], name)
    text = text.replace(str(root), "ROOT").replace(str(root.parent), "PARENT")
    text = text.replace(str(keys.key.parent), "KEYS")
    text = re.sub(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b", "TIME", text)
    text = re.sub(r"\b[0-9a-f]{64}\b", "DIGEST", text)
    return re.sub(r"\b[0-9a-f]{40}\b|\b[0-9a-f]{12}\b", "COMMIT", text)


def _ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result.output
    return result


def _sign(cli: Cli, root: Path, key: Path, env: dict[str, str] | None = None) -> None:
    _ok(cli("sign", str(root), "--key", str(key), env=env))


def _store(root: Path) -> str:
    return str(root.parent / "store.git")


def _trust_file(path: Path, *keys: Path) -> str:
    path.write_text("".join(f"- {{algorithm: ed25519, key_file: {k}.pub}}\n" for k in keys))
    return str(path)


def _own_policy_trust(cli: Cli, root: Path, key: Path) -> None:
    """A capsule that names its own trust file (listing the key that signed it) in policy.trust."""
    _trust_file(root / "own-trust.yaml", key)
    (root / "capsule.yaml").write_text("name: demo\nversion: 1.0.0\npolicy:\n  trust: own-trust.yaml\n")
    _ok(cli("seal", str(root)))
    _sign(cli, root, key)


def _world_writable(source: Path, target: Path) -> str:
    shutil.copy(source, target)
    os.chmod(target, 0o666)
    return str(target)


class Case(NamedTuple):
    setup: Callable[[Cli, Path, Keys], tuple[list[str], dict[str, str]]]  # -> argv, environment
    code: int
    stdout: str
    stderr: str = ""


def _args(*argv: str, **env: str) -> tuple[list[str], dict[str, str]]:
    return list(argv), env


UNCHECKED = (
    "capsule.sig present (1 signature(s)) but NOT checked: signatures were not checked against any trusted key; "
    "give --key, --hmac-key-env, --trust or QLCAPSULE_TRUST_FILE"
)
USAGE = "Usage: qlcapsule verify [OPTIONS] [DIRECTORY]\nTry 'qlcapsule verify --help' for help.\n\n"

CASES: dict[str, Case] = {
    # seal
    "seal unchanged": Case(
        lambda cli, root, k: _args("seal", str(root)), 0, "unchanged demo@1.0.0 3 files sha256:DIGEST\n"
    ),
    "seal after an edit": Case(
        lambda cli, root, k: ((root / "a.txt").write_text("edited\n"), _args("seal", str(root)))[1],
        0,
        "sealed demo@1.0.0 3 files sha256:DIGEST\n",
    ),
    "seal first": Case(
        lambda cli, root, k: ((root / "capsule.lock").unlink(), _args("seal", str(root)))[1],
        0,
        "sealed demo@1.0.0 3 files sha256:DIGEST\n",
    ),
    "seal unknown key": Case(
        lambda cli, root, k: (
            (root / "capsule.yaml").write_text("name: demo\nversion: 1.0.0\nbogus: 1\n"),
            _args("seal", str(root)),
        )[1],
        2,
        "",
        "error: ROOT/capsule.yaml:3: bogus: unknown key\n",
    ),
    "seal symlink": Case(
        lambda cli, root, k: (os.symlink("a.txt", root / "link"), _args("seal", str(root)))[1],
        2,
        "",
        "error: link: is a symlink; capsules hold regular files only (exclude it or replace it)\n",
    ),
    # verify
    "verify clean": Case(
        lambda cli, root, k: _args("verify", str(root)), 0, "ok demo@1.0.0 sha256:DIGEST (3 files); unsigned\n"
    ),
    "verify default dir": Case(
        lambda cli, root, k: _args("verify"), 0, "ok demo@1.0.0 sha256:DIGEST (3 files); unsigned\n"
    ),
    "verify tampered": Case(
        lambda cli, root, k: ((root / "a.txt").write_text("x\n"), _args("verify", str(root)))[1],
        1,
        "",
        "error: ROOT: modified: a.txt\n",
    ),
    "verify added": Case(
        lambda cli, root, k: ((root / "new.txt").write_text("n\n"), _args("verify", str(root)))[1],
        1,
        "",
        "error: ROOT: added: new.txt\n",
    ),
    "verify not sealed": Case(
        lambda cli, root, k: ((root / "capsule.lock").unlink(), _args("verify", str(root)))[1],
        1,
        "",
        "error: ROOT/capsule.lock: not sealed (run 'qlcapsule seal ROOT')\n",
    ),
    "verify bad yaml": Case(
        lambda cli, root, k: ((root / "capsule.yaml").write_text("name: [\n"), _args("verify", str(root)))[1],
        2,
        "",
        "error: ROOT/capsule.yaml:2: invalid YAML: expected the node content, but found '<stream end>'\n",
    ),
    "verify signed, no key": Case(
        lambda cli, root, k: (_sign(cli, root, k.key), _args("verify", str(root)))[1],
        0,
        f"ok demo@1.0.0 sha256:DIGEST (3 files); {UNCHECKED}\n",
    ),
    "verify signed, key": Case(
        lambda cli, root, k: (_sign(cli, root, k.key), _args("verify", str(root), "--key", f"{k.key}.pub"))[1],
        0,
        "ok demo@1.0.0 sha256:DIGEST (3 files); signed by ed25519 KEY (1 of 1 required)\n",
    ),
    "verify unsigned, key": Case(
        lambda cli, root, k: _args("verify", "--key", f"{k.key}.pub", str(root)),
        1,
        "",
        "error: ROOT/capsule.sig: missing: the capsule is not signed but a signature is required "
        "(trusted keys were given)\n",
    ),
    "verify missing key file": Case(
        lambda cli, root, k: _args("verify", str(root), "--key", str(root / "nope.pub")),
        2,
        "",
        "error: --key ROOT/nope.pub: no such file\n",
    ),
    "verify a file": Case(
        lambda cli, root, k: _args("verify", str(root / "a.txt")),
        2,
        "",
        USAGE + "Error: Invalid value for '[DIRECTORY]': Directory 'ROOT/a.txt' is a file.\n",
    ),
    "verify no such dir": Case(
        lambda cli, root, k: _args("verify", str(root / "nowhere")), 2, "", "error: ROOT/nowhere: no such directory\n"
    ),
    "verify two dirs": Case(
        lambda cli, root, k: _args("verify", str(root), str(root)),
        2,
        "",
        USAGE + "Error: Got unexpected extra argument (ROOT)\n",
    ),
    # verify: trust comes from the operator, never from the capsule
    "verify, policy.trust only": Case(
        lambda cli, root, k: (_own_policy_trust(cli, root, k.other), _args("verify", str(root)))[1],
        0,
        f"ok demo@1.0.0 sha256:DIGEST (4 files); {UNCHECKED} (policy.trust in capsule.yaml is not a trust root)\n",
    ),
    "verify, policy.trust, operator trust file": Case(
        lambda cli, root, k: (
            _own_policy_trust(cli, root, k.other),
            _args("verify", str(root), QLCAPSULE_TRUST_FILE=_trust_file(root.parent / "op.yaml", k.key)),
        )[1],
        1,
        "",
        "error: ROOT/capsule.sig: not signed by a trusted key (signatures name key(s) OTHER; trusted: ed25519 KEY): "
        "wrong or unknown key\n",
    ),
    "verify, operator trust file, --key replaces it": Case(
        lambda cli, root, k: (
            _sign(cli, root, k.key),
            _args(
                "verify",
                str(root),
                "--key",
                f"{k.other}.pub",
                QLCAPSULE_TRUST_FILE=_trust_file(root.parent / "op.yaml", k.key),
            ),
        )[1],
        1,
        "",
        "error: ROOT/capsule.sig: not signed by a trusted key (signatures name key(s) KEY; trusted: ed25519 OTHER): "
        "wrong or unknown key\n",
    ),
    "verify, world-writable public key": Case(
        lambda cli, root, k: (
            _sign(cli, root, k.key),
            _args("verify", str(root), "--key", _world_writable(Path(f"{k.key}.pub"), root.parent / "ww.pub")),
        )[1],
        2,
        "",
        "error: --key PARENT/ww.pub: writable by every account on this machine (mode 0666), so anyone could replace "
        "the key: refused; run 'chmod o-w PARENT/ww.pub'\n",
    ),
    # sign
    "sign": Case(
        lambda cli, root, k: _args("sign", str(root), "--key", str(k.key)),
        0,
        "signed demo@1.0.0 sha256:DIGEST with ed25519 key KEY (1 signature in capsule.sig)\n",
    ),
    "sign default dir": Case(
        lambda cli, root, k: _args("sign", "--key", str(k.key)),
        0,
        "signed demo@1.0.0 sha256:DIGEST with ed25519 key KEY (1 signature in capsule.sig)\n",
    ),
    "sign again (replaces)": Case(
        lambda cli, root, k: (_sign(cli, root, k.key), _args("sign", str(root), "--key", str(k.key)))[1],
        0,
        "signed demo@1.0.0 sha256:DIGEST with ed25519 key KEY (1 signature in capsule.sig)\n",
    ),
    "sign tampered": Case(
        lambda cli, root, k: ((root / "a.txt").write_text("x\n"), _args("sign", str(root), "--key", str(k.key)))[1],
        1,
        "",
        "error: cannot sign: ROOT: modified: a.txt (run 'qlcapsule seal' first)\n",
    ),
    "sign not sealed": Case(
        lambda cli, root, k: ((root / "capsule.lock").unlink(), _args("sign", str(root), "--key", str(k.key)))[1],
        1,
        "",
        "error: cannot sign: ROOT/capsule.lock: not sealed (run 'qlcapsule seal ROOT')\n",
    ),
    "sign missing key file": Case(
        lambda cli, root, k: _args("sign", str(root), "--key", str(root / "nope.key")),
        2,
        "",
        "error: --key ROOT/nope.key: no such file\n",
    ),
    "sign with a public key": Case(
        lambda cli, root, k: _args("sign", str(root), "--key", f"{k.key}.pub"),
        2,
        "",
        "error: KEYS/key.key.pub: a public key; signing needs the private key\n",
    ),
    "sign without a key": Case(
        lambda cli, root, k: _args("sign", str(root)),
        2,
        "",
        "error: no signing key: pass --key FILE, --key - (stdin), --key-env NAME or --dev-key\n",
    ),
    "sign, world-writable private key": Case(
        lambda cli, root, k: _args("sign", str(root), "--key", _world_writable(k.key, root.parent / "ww.key")),
        2,
        "",
        "error: --key PARENT/ww.key: writable by every account on this machine (mode 0666), so anyone could replace "
        "the key: refused; run 'chmod o-w PARENT/ww.key'\n",
    ),
    "sign over an untrusted signature": Case(
        lambda cli, root, k: (_sign(cli, root, k.other), _args("sign", str(root), "--key", str(k.key)))[1],
        0,
        "signed demo@1.0.0 sha256:DIGEST with ed25519 key KEY (1 signature in capsule.sig)\n",
        "warning: ROOT/capsule.sig: dropping 1 signature(s) over a statement no trusted key signed (trusted: this "
        "signing key and --trust/QLCAPSULE_TRUST_FILE); signing a fresh statement\n",
    ),
    "sign over a signature the operator trusts": Case(
        lambda cli, root, k: (
            _sign(cli, root, k.other),
            _args(
                "sign",
                str(root),
                "--key",
                str(k.key),
                QLCAPSULE_TRUST_FILE=_trust_file(root.parent / "op.yaml", k.other),
            ),
        )[1],
        0,
        "signed demo@1.0.0 sha256:DIGEST with ed25519 key KEY (2 signatures in capsule.sig)\n",
    ),
    # commit
    "commit first": Case(
        lambda cli, root, k: _args("commit", str(root), "--store", _store(root)),
        0,
        "committed demo@1.0.0 main COMMIT sha256:DIGEST\n",
    ),
    "commit -m": Case(
        lambda cli, root, k: _args("commit", str(root), "-m", "first cut", "--store", _store(root)),
        0,
        "committed demo@1.0.0 main COMMIT sha256:DIGEST\n",
    ),
    "commit --message": Case(
        lambda cli, root, k: _args("commit", "--message", "first cut", str(root), "--store", _store(root)),
        0,
        "committed demo@1.0.0 main COMMIT sha256:DIGEST\n",
    ),
    "commit --branch": Case(
        lambda cli, root, k: _args("commit", str(root), "--store", _store(root), "--branch", "dev"),
        0,
        "committed demo@1.0.0 dev COMMIT sha256:DIGEST\n",
    ),
    "commit, store from QLCAPSULE_STORE": Case(
        lambda cli, root, k: _args("commit", str(root), QLCAPSULE_STORE=_store(root)),
        0,
        "committed demo@1.0.0 main COMMIT sha256:DIGEST\n",
    ),
    "commit unchanged": Case(
        lambda cli, root, k: (
            _ok(cli("commit", str(root), "--store", _store(root))),
            _args("commit", str(root), "--store", _store(root)),
        )[1],
        0,
        "unchanged demo@1.0.0 main COMMIT sha256:DIGEST\n",
    ),
    "commit next version": Case(
        lambda cli, root, k: (
            _ok(cli("commit", str(root), "--store", _store(root))),
            (root / "a.txt").write_text("edited\n"),
            _ok(cli("seal", str(root))),
            _args("commit", "--store", _store(root)),
        )[3],
        0,
        "committed demo@1.0.0 main COMMIT sha256:DIGEST\n",
    ),
    "commit tampered": Case(
        lambda cli, root, k: (
            (root / "a.txt").write_text("x\n"),
            _args("commit", str(root), "--store", _store(root)),
        )[1],
        1,
        "",
        "error: ROOT: modified: a.txt\n",
    ),
    "commit not sealed": Case(
        lambda cli, root, k: ((root / "capsule.lock").unlink(), _args("commit", str(root), "--store", _store(root)))[1],
        1,
        "",
        "error: ROOT: not sealed (run 'qlcapsule seal ROOT')\n",
    ),
    "commit store is a file": Case(
        lambda cli, root, k: (
            (root.parent / "f").write_text(""),
            _args("commit", str(root), "--store", str(root.parent / "f")),
        )[1],
        2,
        "",
        "error: PARENT/f: not a git repository (--store / QLCAPSULE_STORE must name a bare repository)\n",
    ),
}


@pytest.fixture
def capsule_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cap"
    write_capsule(root, {"a.txt": "a\n", "src/b.py": "print(1)\n"}, seal=True)
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_and_exit_code(case: str, capsule_root: Path, keys: Keys, qlcapsule_cli: Cli) -> None:
    expected = CASES[case]
    argv, env = expected.setup(qlcapsule_cli, capsule_root, keys)
    result = qlcapsule_cli(*argv, env=env)
    got = (result.exit_code, _normal(result.stdout, capsule_root, keys), _normal(result.stderr, capsule_root, keys))
    assert got == (expected.code, expected.stdout, expected.stderr)


def test_commit_takes_the_store_from_the_environment(capsule_root: Path, qlcapsule_cli: Cli) -> None:
    import pygit2

    out = _ok(qlcapsule_cli("commit", str(capsule_root), env={"QLCAPSULE_STORE": _store(capsule_root)})).stdout
    commit = str(pygit2.Repository(_store(capsule_root)).references["refs/capsules/demo/heads/main"].target)
    assert out.split()[3] == commit[:12]


def test_verify_json(capsule_root: Path, qlcapsule_cli: Cli) -> None:
    digest = json.loads((capsule_root / "capsule.lock").read_text())["digest"]
    result = _ok(qlcapsule_cli("verify", str(capsule_root), "--json"))
    assert json.loads(result.stdout)["result"] == {
        "ok": True,
        "capsule": "demo",
        "version": "1.0.0",
        "digest": digest,
        "files": 3,
        "integrity": "ok",
        "unlocked": {},
        "signature": {"status": "unsigned"},
    }
    assert result.stderr == ""


def test_sign_json(capsule_root: Path, keys: Keys, qlcapsule_cli: Cli) -> None:
    digest = json.loads((capsule_root / "capsule.lock").read_text())["digest"]
    result = _ok(qlcapsule_cli("sign", str(capsule_root), "--key", str(keys.key), "--json"))
    data: dict[str, Any] = json.loads(result.stdout)["result"]
    keyid = next(k for k, name in keys.ids.items() if name == "KEY")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data.pop("created"))
    assert data == {
        "capsule": "demo",
        "version": "1.0.0",
        "digest": digest,
        "keyid": keyid,
        "algorithm": "ed25519",
        "signature": str(capsule_root / "capsule.sig"),
        "expires": None,
        "signatures": 1,
        "keyids": [keyid],
        "replaced": False,
        "dropped": 0,
    }
