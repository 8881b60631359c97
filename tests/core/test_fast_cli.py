"""The click-free path for plain ``seal``/``verify`` answers exactly as the click commands do."""

from __future__ import annotations

import os
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
}


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
        results.append((code, out.replace(str(root), "ROOT"), err.replace(str(root), "ROOT")))
        shutil.rmtree(root.parent)
    assert results[0] == results[1]


def test_the_fast_path_imports_no_click(tmp_path: Path) -> None:
    root = tmp_path / "cap"
    write_capsule(root, {"a.txt": "a\n"}, seal=True)
    code = (
        "import sys; from qlcapsule.cli._fast import run; "
        f"rc = run(['verify', {str(root)!r}]); print(rc, 'click' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.splitlines()[-1] == "0 False"
    assert out.stdout.startswith("ok demo@")


@pytest.mark.parametrize(
    "argv",
    [["verify", "--json"], ["verify", "--help"], ["seal", "-v"], ["status"], ["verify", "--key"], ["verify", "--key", "-x"]],
)
def test_anything_else_goes_to_click(argv: list[str]) -> None:
    from qlcapsule.cli._fast import parse

    assert parse(argv) is None
