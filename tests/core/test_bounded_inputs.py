"""Tiny hostile inputs end in one line and a set exit code, in bounded time, through every command.

Each case runs the real CLI in a subprocess with a 20 s timeout: a hang or an exhausted memory
fails the test by the timeout (not by a timing assertion). capsule.yaml problems are bad input:
seal, verify, status and the hooks exit 2 with one line naming the file; ``validate`` reports
the same text as one ``schema.invalid`` finding and exits 1 (its findings contract).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qlcapsule.testing import alias_bomb

BOUND = 20  # seconds a run may take before it counts as a hang


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qlcapsule", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "QLCAPSULE_NO_PROGRESS": "1"},
        timeout=BOUND,
    )


def key_alias_bomb(levels: int = 8) -> str:
    """A billion laughs whose anchors and aliases all sit in mapping *keys* (``? [..]``): a loader that
    budgets only values walks none of it, then spends forever on repr() or hashing of the keys."""
    lines = ["? &k0 [x, x, x, x, x, x, x, x, x, x]", ": 0"]
    for i in range(1, levels + 1):
        lines += [f"? &k{i} [{', '.join([f'*k{i - 1}'] * 10)}]", f": {i}"]
    return "\n".join(lines) + "\n"


HEAD = "name: demo\nversion: 1.0.0\n"
HOSTILE = {
    # 9 lines, ~600 bytes, 10^9 nodes once expanded
    "alias bomb": (HEAD + "policy:\n  x: 1\n" + alias_bomb(8), "more than 100000 YAML nodes added by aliases"),
    "alias bomb in keys": (HEAD + key_alias_bomb(8), "more than 100000 YAML nodes added by aliases"),
    "alias in its own anchor": (HEAD + "description: &a [*a]\n", "an alias refers to itself"),
    "deep nesting": (HEAD + "description: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    "5,000-digit integer": (HEAD + "description: " + "1" * 5000 + "\n", "invalid YAML: cannot read '1111"),
    "impossible date": (HEAD + "description: 2024-02-30\n", "invalid YAML: cannot read '2024-02-30'"),
}


@pytest.fixture
def capsule_dir(tmp_path: Path):
    def make(definition: str) -> Path:
        root = tmp_path / "c"
        root.mkdir()
        (root / "README.md").write_text("hi\n")
        (root / "capsule.yaml").write_text(definition)
        return root

    return make


EVERY = [
    ("seal", "."),
    ("verify", "."),
    ("status", "."),
    ("hook", "verify", "--", "capsule.yaml"),
    ("hook", "seal", "--", "capsule.yaml"),
]
#: the two bombs through every command; the other shapes through seal and verify (the same loader)
MATRIX = [(case, c) for case in ("alias bomb", "alias bomb in keys") for c in EVERY] + [
    (case, c) for case in list(HOSTILE)[2:] for c in EVERY[:2]
]


@pytest.mark.parametrize("case, command", MATRIX, ids=[f"{case}-{' '.join(c[:2])}" for case, c in MATRIX])
def test_hostile_capsule_yaml_is_one_line_and_exit_2(capsule_dir, case: str, command: tuple[str, ...]) -> None:
    text, words = HOSTILE[case]
    root = capsule_dir(text)
    proc = _run(root, *command)
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2, out[:500]
    assert len(out.splitlines()) == 1 and "capsule.yaml" in out and words in out, out[:500]
    assert "Traceback" not in out and not (root / "capsule.lock").exists()


VALIDATE = [(case, ("validate", ".")) for case in HOSTILE] + [
    (case, ("hook", "validate", "--", "capsule.yaml")) for case in ("alias bomb", "alias bomb in keys")
]


@pytest.mark.parametrize("case, command", VALIDATE, ids=[f"{case}-{' '.join(c[:2])}" for case, c in VALIDATE])
def test_hostile_capsule_yaml_is_one_validate_finding(capsule_dir, case: str, command: tuple[str, ...]) -> None:
    text, words = HOSTILE[case]
    proc = _run(capsule_dir(text), *command)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[:500]  # bad input, as for every command; the report still has it
    found = [line for line in out.splitlines() if "[schema.invalid]" in line]
    assert len(found) == 1 and words in found[0], out[:500]
    assert len(proc.stderr.splitlines()) == 1 and words in proc.stderr and proc.stderr.startswith("error: ")
    assert "Traceback" not in out


def test_a_bomb_in_a_yaml_file_of_the_capsule_is_one_finding(capsule_dir) -> None:
    root = capsule_dir(HEAD)
    (root / "values.yaml").write_text(key_alias_bomb(8))
    (root / "config.yml").write_text(alias_bomb(8))
    proc = _run(root, "validate", ".")
    found = [line for line in proc.stdout.splitlines() if "[yaml.syntax]" in line]
    assert proc.returncode == 1 and len(found) == 2, proc.stdout[-800:]
    assert all("more than 100000 YAML nodes added by aliases" in line for line in found)


@pytest.mark.parametrize(
    "lock, words",
    [
        ("[" * 100_000 + "]" * 100_000, "capsule.lock: invalid JSON: nested too deeply"),
        ('{"files": ' + "1" * 5000 + "}", "capsule.lock: invalid JSON: a number longer than 4300 digits"),
    ],
    ids=["deep", "long integer"],
)
@pytest.mark.parametrize(
    "command", [("verify", "."), ("status", "."), ("hook", "verify", "--", "capsule.yaml")], ids=lambda c: c[0]
)
def test_hostile_capsule_lock_is_one_line_and_exit_2(capsule_dir, lock: str, words: str, command) -> None:
    root = capsule_dir(HEAD)
    (root / "capsule.lock").write_text(lock)
    proc = _run(root, *command)
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2 and len(out.splitlines()) == 1 and words in out, out[:500]


@pytest.mark.parametrize("name", ['"demo\\n"', '"demo\\r\\n"', "|\n  demo\n"])
def test_a_name_with_a_final_newline_is_refused(capsule_dir, name: str) -> None:
    """'$' matches before a final newline; the name regex must not (it becomes file names)."""
    root = capsule_dir(f"name: {name}\nversion: 1.0.0\n")
    proc = _run(root, "seal", ".")
    assert proc.returncode == 2 and "is not a DNS label" in proc.stderr, proc.stderr
    assert not (root / "capsule.lock").exists()


def test_a_version_with_a_final_newline_is_refused(capsule_dir) -> None:
    root = capsule_dir('name: demo\nversion: "1.0.0\\n"\n')
    proc = _run(root, "seal", ".")
    assert proc.returncode == 2 and "capsule.yaml:2: version" in proc.stderr, proc.stderr


def _trust(tmp_path: Path, key_file: str) -> Path:
    trust = tmp_path / "trust.yaml"
    trust.write_text(f"- algorithm: ed25519\n  key_file: {key_file}\n")
    trust.chmod(0o600)
    return trust


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this system")
def test_a_trust_file_key_file_on_a_device_is_refused(capsule_dir, tmp_path: Path) -> None:
    root = capsule_dir(HEAD)
    assert _run(root, "seal", ".").returncode == 0
    proc = _run(root, "verify", ".", "--trust", str(_trust(tmp_path, "/dev/zero")))
    assert proc.returncode == 2 and "key_file /dev/zero: is not a regular file" in proc.stderr, proc.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_trust_file_key_file_on_a_fifo_is_refused_not_waited_on(capsule_dir, tmp_path: Path) -> None:
    root = capsule_dir(HEAD)
    assert _run(root, "seal", ".").returncode == 0
    os.mkfifo(tmp_path / "fifo")
    proc = subprocess.run(
        [sys.executable, "-m", "qlcapsule", "verify", ".", "--trust", str(_trust(tmp_path, str(tmp_path / "fifo")))],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=BOUND,  # a reader of the fifo would wait for ever; a loaded CI machine needs more than 5 s to start
    )
    assert proc.returncode == 2 and "key_file" in proc.stderr, proc.stderr


def test_the_action_reads_providers_from_a_mib_of_newlines_in_linear_time(tmp_path: Path) -> None:
    """needed_extras() scans capsule.yaml before anything is installed; '^\\s*' over 1 MiB of newlines
    backtracked for ~20 minutes (each line start re-scanned the rest). Run in a subprocess under BOUND."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "capsule.yaml").write_text("\n" * 1_000_000 + "targets:\n  t:\n    provider: s3\n")
    script = (
        "import importlib.util, pathlib, sys\n"
        "spec = importlib.util.spec_from_file_location('m', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(m.needed_extras({'INPUT_PATH': '.'}, pathlib.Path(sys.argv[2])))\n"
    )
    action = Path(__file__).resolve().parents[2] / "action" / "main.py"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(action), str(root)], capture_output=True, text=True, timeout=BOUND
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "['s3']", proc.stderr[-500:]


def _validation_regexes() -> dict[str, tuple[re.Pattern[str], str]]:
    from qlcapsule.format import names
    from qlcapsule.signing import envelope
    from qlcapsule.steps import safeimport
    from qlcapsule.store import repo as storerepo
    from qlcapsule_plugins.deliverers import azure, gcs, oci, s3
    from qlcapsule_plugins.generators import _spec
    from qlcapsule_plugins.validators import helm

    return {
        "names.DNS_LABEL": (names.DNS_LABEL, "demo"),
        "names.SEMVER": (names.SEMVER, "1.0.0-rc.1+b"),
        "envelope.HEX64": (envelope.HEX64, "a" * 64),
        "safeimport._HEX64": (safeimport._HEX64, "a" * 64),
        "storerepo._BRANCH_NAME": (storerepo._BRANCH_NAME, "main"),
        "storerepo._OID": (storerepo._OID, "a" * 40),
        "azure._CONTAINER": (azure._CONTAINER, "box"),
        "gcs._BUCKET": (gcs._BUCKET, "bucket"),
        "s3._BUCKET": (s3._BUCKET, "bucket"),
        "oci._REPO": (oci._REPO, "org/name"),
        "oci._TAG": (oci._TAG, "v1"),
        "_spec._NAME": (_spec._NAME, "answer"),
        "helm._NAME": (helm._NAME, "chart"),
        "helm._SEMVER": (helm._SEMVER, "1.2.3"),
    }


@pytest.mark.parametrize("name", list(_validation_regexes()))
def test_validation_regexes_refuse_a_final_newline(name: str) -> None:
    """They are used with .match: a "$" at the end matches before a final newline, "\\Z" does not."""
    rx, good = _validation_regexes()[name]
    assert rx.match(good) and not rx.match(good + "\n") and not rx.match(good + "\r\n")


def test_commit_of_a_deeply_nested_lock_is_one_line_and_exit_2(capsule_dir, tmp_path: Path) -> None:
    """The store's own lock reader (storedisk) once let RecursionError through: 'internal error', exit 70."""
    root = capsule_dir(HEAD)
    (root / "capsule.lock").write_text("[" * 100_000 + "]" * 100_000)
    proc = _run(root, "commit", ".", "--store", str(tmp_path / "store"))
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2 and out == "error: capsule.lock: invalid JSON: nested too deeply", out  # as given: .


def test_export_ignores_a_deeply_nested_capsule_sig(capsule_dir, tmp_path: Path) -> None:
    """capsule.sig only lends export its signing time; [[[[...]]]] there is no time, not exit 70."""
    root = capsule_dir(HEAD)
    assert _run(root, "seal", ".").returncode == 0
    (root / "capsule.sig").write_text("[" * 100_000 + "]" * 100_000)
    proc = _run(root, "export", ".", "-f", "tar", "-o", str(tmp_path / "out.tar"))
    assert proc.returncode == 0 and (tmp_path / "out.tar").is_file(), proc.stderr
