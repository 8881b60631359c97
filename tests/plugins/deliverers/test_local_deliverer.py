"""The local deliverer: bad destination paths are bad input, and temp files left by killed deliveries go."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from qlcapsule import Capsule, InputError
from qlcapsule.steps.delivery import make_artifact
from qlcapsule_plugins.deliverers.local import STALE_AFTER, TEMP_PREFIX, LocalDeliverer


@pytest.fixture(autouse=True)
def _operator_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QLCAPSULE_TARGETS_FILE", str(tmp_path / "targets.yaml"))
    monkeypatch.delenv("QLCAPSULE_CAPSULE_TARGETS", raising=False)


def _capsule(root: Path, options: dict[str, Any], *, in_capsule: bool = False) -> Path:
    """A sealed capsule with a local target ``out``: defined in the operator's targets file
    beside it (``root.parent / "targets.yaml"``), or in capsule.yaml with ``in_capsule``."""
    root.mkdir(parents=True, exist_ok=True)
    target = {"out": {"provider": "local", "options": options}}
    doc: dict[str, Any] = {"name": "demo", "version": "1.0.0"}
    if in_capsule:
        doc["targets"] = target
    (root.parent / "targets.yaml").write_text(yaml.safe_dump({"targets": {} if in_capsule else target}), "utf-8")
    (root / "capsule.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    (root / "app.py").write_text("print(1)\n", encoding="utf-8")
    Capsule.load(root).seal()
    return root


def _one_error_line(res: Any) -> str:
    (line,) = res.stderr.splitlines()
    assert line.startswith("error: local target: "), line
    return str(line)


def test_a_symlink_loop_in_the_path_is_bad_input(tmp_path: Path, qlcapsule_cli) -> None:
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    root = _capsule(tmp_path / "c", {"path": str(tmp_path / "loop1" / "sub")})
    for args in ([], ["--dry-run"]):
        res = qlcapsule_cli("deliver", str(root), "-t", "out", *args)
        assert res.exit_code == 2, res.output  # was 70, "internal error: RuntimeError"
        assert str(tmp_path / "loop1" / "sub") in _one_error_line(res)


def test_a_path_under_a_regular_file_is_bad_input(tmp_path: Path, qlcapsule_cli) -> None:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    root = _capsule(tmp_path / "c", {"path": str(tmp_path / "afile" / "sub" / "dir")})
    res = qlcapsule_cli("deliver", str(root), "-t", "out")
    assert res.exit_code == 2, res.output
    assert f"{tmp_path / 'afile'} is not a directory" in _one_error_line(res)
    # deliver() without check() (a plugin or ship calling it directly) says the same kind of thing,
    # not "remote side failed" (exit 3)
    capsule = Capsule.load(root)
    deliverer = LocalDeliverer.from_options({"path": str(tmp_path / "afile" / "sub")})
    art = tmp_path / "a.bin"
    art.write_bytes(b"x")
    with pytest.raises(InputError, match=r"local target: .*afile/sub: cannot create the directory: ") as err:
        deliverer.deliver(capsule, [make_artifact(art)], target="out")
    assert err.value.exit_code == 2


def _leftover(path: Path, age: float) -> Path:
    path.write_bytes(b"half an artifact")
    old = path.stat().st_mtime - age
    os.utime(path, (old, old), follow_symlinks=False)
    return path


def test_temp_files_left_by_a_killed_delivery_are_removed(tmp_path: Path, qlcapsule_cli) -> None:
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "out"
    out.mkdir()
    root = _capsule(tmp_path / "c", {"path": str(out)})
    dead = _leftover(out / f"{TEMP_PREFIX}dead", STALE_AFTER + 60)  # SIGKILLed an hour ago
    fresh = _leftover(out / f"{TEMP_PREFIX}fresh", 5)  # maybe still being written
    busy = _leftover(out / f"{TEMP_PREFIX}busy", STALE_AFTER + 60)  # old, but a live writer holds it
    outside = _leftover(tmp_path / "precious", STALE_AFTER + 60)
    link = out / f"{TEMP_PREFIX}link"
    link.symlink_to(outside)
    os.utime(link, (0, 0), follow_symlinks=False)
    (out / f"{TEMP_PREFIX}dir").mkdir()
    fd = os.open(busy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = qlcapsule_cli("deliver", str(root), "-t", "out")
    finally:
        os.close(fd)
    assert res.exit_code == 0, res.output
    left = sorted(p.name for p in out.iterdir())
    assert left == sorted(["demo-1.0.0.tar.gz", fresh.name, busy.name, link.name, f"{TEMP_PREFIX}dir"])
    assert not dead.exists() and outside.read_bytes() == b"half an artifact"
    res = qlcapsule_cli("deliver", str(root), "-t", "out")  # the writer holding 'busy' is gone now
    assert res.exit_code == 0 and not busy.exists() and fresh.exists()


# -- a local target defined in capsule.yaml writes only inside the working directory ----------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("{tmp}/elsewhere", "an absolute path"),
        ("~/qlcapsule-test-never-written", "'~' is not expanded here"),
        ("../outside", "leaves the working directory"),
        ("dist/../../outside", "leaves the working directory"),
        ("link/inner", "leaves the working directory"),  # link -> a directory outside the working directory
        ("{name}/../../outside", "leaves the working directory"),
        (".git/hooks", "inside .git"),
    ],
)
def test_a_capsule_defined_local_path_stays_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli, path: str, reason: str
) -> None:
    """A pull request's capsule.yaml cannot make the local target write anywhere else."""
    monkeypatch.delenv("QLCAPSULE_TARGETS_FILE")
    work, outside = tmp_path / "work", tmp_path / "outside-dir"
    (work / ".git").mkdir(parents=True)
    outside.mkdir()
    (work / "link").symlink_to(outside)
    monkeypatch.chdir(work)
    root = _capsule(work / "c", {"path": path.replace("{tmp}", str(tmp_path))}, in_capsule=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for args in ([], ["--dry-run"]):
        res = qlcapsule_cli("deliver", str(root), "-t", "out", *args)
        assert res.exit_code == 2, res.output
        (line,) = res.stderr.splitlines()
        assert line.startswith(f"error: {root / 'capsule.yaml'}:4: targets.out.options.path: "), line
        assert reason in line
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not (Path.home() / "qlcapsule-test-never-written").exists()


def test_a_capsule_defined_local_path_inside_the_working_directory_is_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli
) -> None:
    monkeypatch.delenv("QLCAPSULE_TARGETS_FILE")
    monkeypatch.chdir(tmp_path)
    root = _capsule(tmp_path / "c", {"path": "out/{name}/./{version}/../{version}"}, in_capsule=True)
    res = qlcapsule_cli("deliver", str(root), "-t", "out")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "demo" / "1.0.0" / "demo-1.0.0.tar.gz").is_file()


def test_the_default_target_refuses_a_dist_symlink_out_of_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli
) -> None:
    """No target configured: ./dist, but not through a symlink the checked-out content planted."""
    monkeypatch.delenv("QLCAPSULE_TARGETS_FILE")
    work, outside = tmp_path / "work", tmp_path / "outside-dir"
    work.mkdir()
    outside.mkdir()
    (work / "dist").symlink_to(outside)
    monkeypatch.chdir(work)
    root = _capsule(work / "c", {}, in_capsule=True)
    (root / "capsule.yaml").write_text("name: demo\nversion: 1.0.0\n", encoding="utf-8")
    Capsule.load(root).seal()
    res = qlcapsule_cli("deliver", str(root))
    assert res.exit_code == 2 and "targets.local.options.path: 'dist': leaves the working directory" in res.stderr
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("how", ["env", "flag"])
def test_the_operator_opt_in_trusts_capsule_defined_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli, how: str
) -> None:
    monkeypatch.delenv("QLCAPSULE_TARGETS_FILE")
    work, out = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    root = _capsule(work / "c", {"path": str(out)}, in_capsule=True)
    if how == "env":
        monkeypatch.setenv("QLCAPSULE_CAPSULE_TARGETS", "trust")
        res = qlcapsule_cli("deliver", str(root), "-t", "out")
    else:
        res = qlcapsule_cli("deliver", str(root), "-t", "out", "--trust-capsule-targets")
    assert res.exit_code == 0, res.output
    assert (out / "demo-1.0.0.tar.gz").is_file()
