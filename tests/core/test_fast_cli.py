"""The click-free path for plain ``seal``/``verify``/``sign``/``commit`` answers exactly as the click commands do."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from qlcapsule.testing import write_capsule

EXE = Path(sys.executable).with_name("qlcapsule")


def _run(args: list[str], cwd: Path, *, fast: bool) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QLCAPSULE_DEBUG")}
    if not fast:
        env["QLCAPSULE_NO_FAST_CLI"] = "1"
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "qlcapsule"]
    proc = subprocess.run(cmd + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def _keys(tmp: Path) -> Path:
    key = tmp / "k.key"
    subprocess.run([sys.executable, "-m", "qlcapsule", "keygen", "-o", str(key)], check=True, capture_output=True, timeout=60)
    return key


def _signed(root: Path, key: Path) -> None:
    subprocess.run([sys.executable, "-m", "qlcapsule", "sign", str(root), "--key", str(key)], check=True, capture_output=True, timeout=60)


def _store(root: Path) -> str:
    return str(root.parent / "store.git")


def _committed(root: Path) -> None:
    cmd = [sys.executable, "-m", "qlcapsule", "commit", str(root), "--store", _store(root)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def _edit_and_seal(root: Path) -> None:
    (root / "a.txt").write_text("edited\n")
    subprocess.run([sys.executable, "-m", "qlcapsule", "seal", str(root)], check=True, capture_output=True, timeout=60)


Setup = Callable[[Path, Path], list[str]]

CASES: dict[str, Setup] = {
    "verify clean": lambda root, key: ["verify", str(root)],
    "verify default dir": lambda root, key: ["verify"],
    "seal unchanged": lambda root, key: ["seal", str(root)],
    "seal after an edit": lambda root, key: ((root / "a.txt").write_text("edited\n"), ["seal", str(root)])[1],
    "seal first": lambda root, key: ((root / "capsule.lock").unlink(), ["seal", str(root)])[1],
    "verify tampered": lambda root, key: ((root / "a.txt").write_text("x\n"), ["verify", str(root)])[1],
    "verify added": lambda root, key: ((root / "new.txt").write_text("n\n"), ["verify", str(root)])[1],
    "verify not sealed": lambda root, key: ((root / "capsule.lock").unlink(), ["verify", str(root)])[1],
    "verify bad yaml": lambda root, key: ((root / "capsule.yaml").write_text("name: [\n"), ["verify", str(root)])[1],
    "seal unknown key": lambda root, key: ((root / "capsule.yaml").write_text("name: demo\nversion: 1.0.0\nbogus: 1\n"), ["seal", str(root)])[1],
    "verify signed, no key": lambda root, key: (_signed(root, key), ["verify", str(root)])[1],
    "verify signed, key": lambda root, key: (_signed(root, key), ["verify", str(root), "--key", f"{key}.pub"])[1],
    "verify unsigned, key": lambda root, key: ["verify", "--key", f"{key}.pub", str(root)],
    "verify missing key file": lambda root, key: ["verify", str(root), "--key", str(root / "nope.pub")],
    "verify a file": lambda root, key: ["verify", str(root / "a.txt")],
    "verify no such dir": lambda root, key: ["verify", str(root / "nowhere")],
    "verify two dirs": lambda root, key: ["verify", str(root), str(root)],
    "verify --json": lambda root, key: ["verify", str(root), "--json"],
    "seal symlink": lambda root, key: (os.symlink("a.txt", root / "link"), ["seal", str(root)])[1],
    "sign": lambda root, key: ["sign", str(root), "--key", str(key)],
    "sign default dir": lambda root, key: ["sign", "--key", str(key)],
    "sign again (replaces)": lambda root, key: (_signed(root, key), ["sign", str(root), "--key", str(key)])[1],
    "sign tampered": lambda root, key: ((root / "a.txt").write_text("x\n"), ["sign", str(root), "--key", str(key)])[1],
    "sign not sealed": lambda root, key: ((root / "capsule.lock").unlink(), ["sign", str(root), "--key", str(key)])[1],
    "sign missing key file": lambda root, key: ["sign", str(root), "--key", str(root / "nope.key")],
    "sign with a public key": lambda root, key: ["sign", str(root), "--key", f"{key}.pub"],
    "sign without a key": lambda root, key: ["sign", str(root)],
    "sign --json": lambda root, key: ["sign", str(root), "--key", str(key), "--json"],
    "commit first": lambda root, key: ["commit", str(root), "--store", _store(root)],
    "commit -m": lambda root, key: ["commit", str(root), "-m", "first cut", "--store", _store(root)],
    "commit --message": lambda root, key: ["commit", "--message", "first cut", str(root), "--store", _store(root)],
    "commit unchanged": lambda root, key: (_committed(root), ["commit", str(root), "--store", _store(root)])[1],
    "commit next version": lambda root, key: (_committed(root), _edit_and_seal(root), ["commit", "--store", _store(root)])[2],
    "commit tampered": lambda root, key: ((root / "a.txt").write_text("x\n"), ["commit", str(root), "--store", _store(root)])[1],
    "commit not sealed": lambda root, key: ((root / "capsule.lock").unlink(), ["commit", str(root), "--store", _store(root)])[1],
    "commit store is a file": lambda root, key: ((root.parent / "f").write_text(""), ["commit", str(root), "--store", str(root.parent / "f")])[1],
    "commit --branch": lambda root, key: ["commit", str(root), "--store", _store(root), "--branch", "dev"],
}


def _normal(text: str, root: Path) -> str:
    """Paths, commit ids and signing times (each run's clock goes into them) replaced by placeholders."""
    text = text.replace(str(root), "ROOT").replace(str(root.parent), "PARENT")
    text = re.sub(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b", "TIME", text)
    return re.sub(r"\b[0-9a-f]{40}\b|\b[0-9a-f]{12}\b", "COMMIT", text)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _keys(tmp_path_factory.mktemp("keys"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_and_click_paths_answer_the_same(case: str, key: Path, tmp_path: Path) -> None:
    results = []
    for fast in (True, False):
        root = tmp_path / ("fast" if fast else "click") / "cap"
        write_capsule(root, {"a.txt": "a\n", "src/b.py": "print(1)\n"}, seal=True)
        args = CASES[case](root, key)
        code, out, err = _run(args, root, fast=fast)
        results.append((code, _normal(out, root), _normal(err, root)))
        shutil.rmtree(root.parent)
    assert results[0] == results[1]


@pytest.mark.parametrize("command", ["verify", "seal", "sign", "commit"])
def test_the_fast_path_imports_no_click(command: str, key: Path, tmp_path: Path) -> None:
    root = tmp_path / "cap"
    write_capsule(root, {"a.txt": "a\n"}, seal=True)
    argv = {
        "verify": ["verify", str(root)],
        "seal": ["seal", str(root)],
        "sign": ["sign", str(root), "--key", str(key)],
        "commit": ["commit", str(root), "--store", str(tmp_path / "store.git")],
    }[command]
    code = f"import sys; from qlcapsule.cli._fast import run; rc = run({argv!r}); print(rc, 'click' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.splitlines()[-1] == "0 False"
    assert out.stdout.startswith(("ok demo@", "unchanged demo@", "signed demo@", "committed demo@"))


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--json"],
        ["verify", "--help"],
        ["seal", "-v"],
        ["status"],
        ["verify", "--key"],
        ["verify", "--key", "-x"],
        ["sign", "."],
        ["sign", ".", "--key", "-"],
        ["sign", ".", "--key", "a", "--key", "b"],
        ["sign", ".", "--key", "k", "--expires", "90d"],
        ["commit", ".", "--rehash"],
        ["commit", ".", "-m", "-x"],
        ["commit", ".", "-m", "a", "-m", "b"],
    ],
)
def test_anything_else_goes_to_click(argv: list[str]) -> None:
    from qlcapsule.cli._fast import parse

    assert parse(argv) is None


def test_commit_takes_the_store_from_the_environment(key: Path, tmp_path: Path) -> None:
    outputs = []
    for fast in (True, False):
        root = tmp_path / ("fast" if fast else "click") / "cap"
        write_capsule(root, {"a.txt": "a\n"}, seal=True)
        env = dict(os.environ, QLCAPSULE_STORE=_store(root))
        env.pop("QLCAPSULE_NO_FAST_CLI", None)
        if not fast:
            env["QLCAPSULE_NO_FAST_CLI"] = "1"
        cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "qlcapsule"]
        proc = subprocess.run(cmd + ["commit", str(root)], cwd=root, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert (Path(_store(root)) / "refs" / "capsules" / "demo" / "heads" / "main").exists() or (
            Path(_store(root)) / "packed-refs"
        ).read_text().count("refs/capsules/demo/heads/main") == 1
        outputs.append(_normal(proc.stdout, root))
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith("committed demo@")


def _trust_file(path: Path, *pubs: Path) -> str:
    path.write_text("".join(f"- {{algorithm: ed25519, key_file: {p}}}\n" for p in pubs))
    return str(path)


def _own_policy_trust(root: Path, key: Path) -> None:
    """A capsule that names its own trust file (listing the key that signed it) in policy.trust."""
    _trust_file(root / "own-trust.yaml", Path(f"{key}.pub"))
    (root / "capsule.yaml").write_text("name: demo\nversion: 1.0.0\npolicy:\n  trust: own-trust.yaml\n")
    subprocess.run([sys.executable, "-m", "qlcapsule", "seal", str(root)], check=True, capture_output=True, timeout=60)
    _signed(root, key)


TrustSetup = Callable[[Path, Path, Path], tuple[list[str], dict[str, str]]]

TRUST_CASES: dict[str, TrustSetup] = {
    "verify, policy.trust only": lambda root, key, other: (
        (_own_policy_trust(root, other), ["verify", str(root)])[1],
        {},
    ),
    "verify, policy.trust, operator trust file": lambda root, key, other: (
        (_own_policy_trust(root, other), ["verify", str(root)])[1],
        {"QLCAPSULE_TRUST_FILE": _trust_file(root.parent / "op.yaml", Path(f"{key}.pub"))},
    ),
    "verify, operator trust file, --key replaces it": lambda root, key, other: (
        (_signed(root, key), ["verify", str(root), "--key", f"{other}.pub"])[1],
        {"QLCAPSULE_TRUST_FILE": _trust_file(root.parent / "op.yaml", Path(f"{key}.pub"))},
    ),
    "verify, world-writable public key": lambda root, key, other: (
        (_signed(root, key), shutil.copy(f"{key}.pub", root.parent / "ww.pub"), os.chmod(root.parent / "ww.pub", 0o666))
        and ["verify", str(root), "--key", str(root.parent / "ww.pub")],
        {},
    ),
    "sign, world-writable private key": lambda root, key, other: (
        (shutil.copy(key, root.parent / "ww.key"), os.chmod(root.parent / "ww.key", 0o666))
        and ["sign", str(root), "--key", str(root.parent / "ww.key")],
        {},
    ),
    "sign over an untrusted signature": lambda root, key, other: (
        (_signed(root, other), ["sign", str(root), "--key", str(key)])[1],
        {},
    ),
    "sign over a signature the operator trusts": lambda root, key, other: (
        (_signed(root, other), ["sign", str(root), "--key", str(key)])[1],
        {"QLCAPSULE_TRUST_FILE": _trust_file(root.parent / "op.yaml", Path(f"{other}.pub"))},
    ),
}


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _keys(tmp_path_factory.mktemp("other"))


@pytest.mark.parametrize("case", sorted(TRUST_CASES))
def test_fast_and_click_paths_take_trust_from_the_operator_alike(
    case: str, key: Path, other: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = []
    for fast in (True, False):
        root = tmp_path / ("fast" if fast else "click") / "cap"
        write_capsule(root, {"a.txt": "a\n", "src/b.py": "print(1)\n"}, seal=True)
        args, env = TRUST_CASES[case](root, key, other)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code, out, err = _run(args, root, fast=fast)
        for name in env:
            monkeypatch.delenv(name)
        results.append((code, _normal(out, root), _normal(err, root)))
        shutil.rmtree(root.parent)
    assert results[0] == results[1]
    code, out, err = results[0]
    expected = {
        "verify, policy.trust only": (0, "NOT checked"),
        "verify, policy.trust, operator trust file": (1, "not signed by a trusted key"),
        "verify, operator trust file, --key replaces it": (1, "not signed by a trusted key"),
        "verify, world-writable public key": (2, "writable by every account"),
        "sign, world-writable private key": (2, "writable by every account"),
        "sign over an untrusted signature": (0, "(1 signature in capsule.sig)"),
        "sign over a signature the operator trusts": (0, "(2 signatures in capsule.sig)"),
    }[case]
    assert code == expected[0] and expected[1] in out + err, (out, err)
