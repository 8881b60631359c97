"""export_capsule and `qlcapsule export`: validation before bytes, atomic output, sha256 sidecar."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from qlcapsule import IntegrityError, OptionsError
from qlcapsule.exporting import export_capsule, parse_option_args


def _listing(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*")}


def test_writes_file_and_sha256_sidecar(make_capsule, tmp_path) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    out = tmp_path / "out"
    out.mkdir()
    result = export_capsule(capsule.root, "tar.gz", out)
    assert result.path == out / "demo-1.0.0.tar.gz"
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert result.size == result.path.stat().st_size and result.digest == capsule.digest
    assert (out / "demo-1.0.0.tar.gz.sha256").read_text() == f"{result.sha256}  demo-1.0.0.tar.gz\n"
    assert _listing(out) == {"demo-1.0.0.tar.gz", "demo-1.0.0.tar.gz.sha256"}


def test_stdout_stream_matches_the_file(make_capsule, tmp_path) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    sink = io.BytesIO()
    streamed = export_capsule(capsule.root, "zip", "-", stdout=sink)
    written = export_capsule(capsule.root, "zip", tmp_path / "x.zip")
    assert streamed.path is None and sink.getvalue() == written.path.read_bytes()  # type: ignore[union-attr]
    assert streamed.sha256 == written.sha256


def test_refuses_unsealed_and_tampered_capsules_without_writing(make_capsule, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    unsealed = make_capsule({"a.txt": "a\n"}, seal=False)
    with pytest.raises(IntegrityError, match="not sealed"):
        export_capsule(unsealed.root, "tar", out)
    sealed = make_capsule({"a.txt": "a\n"})
    (sealed.root / "a.txt").write_text("tampered\n")
    with pytest.raises(IntegrityError, match="modified: a.txt"):
        export_capsule(sealed.root, "zip", out)
    assert _listing(out) == set()


def test_options_are_validated_before_any_byte(make_capsule, tmp_path) -> None:
    capsule = make_capsule({"a.txt": "a\n"}, definition="name: demo\nversion: 1.0.0\nexports:\n  zip:\n    level: 42\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OptionsError, match=r"exports\.zip.*level"):
        export_capsule(capsule.root, "zip", out)
    assert export_capsule(capsule.root, "zip", out, {"level": "9"}).path  # --option overrides capsule.yaml
    with pytest.raises(OptionsError, match="nope: unknown key"):
        export_capsule(capsule.root, "helm", out, {"nope": 1})
    assert _listing(out) == {"demo-1.0.0.zip", "demo-1.0.0.zip.sha256"}


def test_a_failing_exporter_leaves_no_partial_file(make_capsule, tmp_path, monkeypatch) -> None:
    from qlcapsule_plugins.exporters.tar import TarExporter

    capsule = make_capsule({"a.txt": "a\n"})

    def boom(self, capsule, out, fmt):  # type: ignore[no-untyped-def]
        out.write(b"half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TarExporter, "export", boom)
    out = tmp_path / "out"
    out.mkdir()
    (out / "demo-1.0.0.tar").write_bytes(b"previous export")
    with pytest.raises(OSError):
        export_capsule(capsule.root, "tar", out)
    assert _listing(out) == {"demo-1.0.0.tar"} and (out / "demo-1.0.0.tar").read_bytes() == b"previous export"


def test_refuses_to_write_inside_the_capsule(make_capsule, monkeypatch) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    monkeypatch.chdir(capsule.root)
    with pytest.raises(Exception, match="inside the capsule"):
        export_capsule(capsule.root, "tar")
    # an excluded directory is fine
    (capsule.root / ".qlcapsule").mkdir()
    assert export_capsule(capsule.root, "tar", capsule.root / ".qlcapsule").path
    capsule.verify_integrity()


def test_directory_formats(make_capsule, tmp_path) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    result = export_capsule(capsule.root, "oci-dir", tmp_path / "layout")
    assert result.directory and (tmp_path / "layout" / "oci-layout").is_file()
    with pytest.raises(Exception, match="not an empty directory"):
        export_capsule(capsule.root, "terraform-dir", tmp_path / "layout")
    with pytest.raises(Exception, match="cannot be written to stdout"):
        export_capsule(capsule.root, "oci-dir", "-")


def test_parse_option_args() -> None:
    assert parse_option_args(["level=9", "resources.limits.cpu=1", 'env={"A": "b"}']) == {
        "level": "9",
        "resources": {"limits": {"cpu": "1"}},
        "env": {"A": "b"},
    }
    for bad in ["novalue", "=x", "a..b=1", "env={bad"]:
        with pytest.raises(OptionsError):
            parse_option_args([bad])


def test_cli_export_text_json_and_stdout(make_capsule, qlcapsule_cli, tmp_path) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    res = qlcapsule_cli("export", str(capsule.root), "--format", "tar.zst", "-o", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "sha256: " in res.stdout
    res = qlcapsule_cli("export", str(capsule.root), "-f", "zip", "-o", str(tmp_path), "-O", "level=1", "--json")
    assert res.exit_code == 0 and '"format": "zip"' in res.stdout
    res = qlcapsule_cli("export", str(capsule.root), "-f", "tar", "-o", "-")
    assert res.exit_code == 0 and res.stdout.encode("latin-1", "replace")[257:262] == b"ustar"
    assert res.stderr.startswith("sha256: ")


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["-f", "rar"], 2, "unknown export format 'rar'"),
        (["-f", "zip", "-O", "level=99"], 2, "level"),
        (["-f", "zip", "-O", "bogus"], 2, "expected KEY=VALUE"),
        (["-f", "tar", "-o", "-", "--json"], 2, "--json cannot be combined"),
        (["-f", "tar", "-o", "/nonexistent/dir/x.tar"], 2, "does not exist"),
    ],
)
def test_cli_errors_are_one_line(make_capsule, qlcapsule_cli, args, code, message) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    res = qlcapsule_cli("export", str(capsule.root), *args)
    assert res.exit_code == code, res.output
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_cli_tampered_capsule_exits_1(make_capsule, qlcapsule_cli, tmp_path) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    os.chmod(capsule.root / "a.txt", 0o755)
    res = qlcapsule_cli("export", str(capsule.root), "-f", "zip", "-o", str(tmp_path))
    assert res.exit_code == 1 and "mode changed: a.txt" in res.stderr


def test_trailing_slash_output_means_into_that_directory(tmp_path, make_capsule) -> None:
    """`-o dist/` writes dist/<name>-<version>.<fmt>, creating dist/ (it once wrote a file named dist)."""
    from qlcapsule.exporting import export_capsule

    capsule = make_capsule({"a.txt": "a"})
    out = tmp_path / "out" / "dist"
    result = export_capsule(capsule.root, "tar.gz", str(out) + "/")
    assert out.is_dir()
    assert result.path == out / "demo-1.0.0.tar.gz"


@pytest.mark.parametrize("fmt", ["tar", "tar.zst"])
def test_a_file_modified_after_seal_fails_a_tar_export_with_nothing_written(make_capsule, tmp_path, fmt) -> None:
    """tar hashes each file as it goes into the archive (no pass before): same-size tampering still fails it."""
    capsule = make_capsule({"a.txt": "a\n", "b.txt": "b\n", "big.bin": os.urandom(3 << 20)})
    (capsule.root / "b.txt").write_text("B\n")  # same size: only the digest can tell
    out = tmp_path / "out"
    out.mkdir()
    name = f"demo-1.0.0.{fmt}"
    (out / name).write_bytes(b"previous export")
    with pytest.raises(IntegrityError, match="modified: b.txt"):
        export_capsule(capsule.root, fmt, out)
    assert _listing(out) == {name} and (out / name).read_bytes() == b"previous export"
    sink = io.BytesIO()
    with pytest.raises(IntegrityError, match="modified: b.txt"):
        export_capsule(capsule.root, fmt, "-", stdout=sink)
    assert not sink.getvalue().endswith(bytes(1024))  # never a complete archive: the end blocks wait for the digests


def test_a_tampered_large_file_stops_a_streamed_tar_export(make_capsule) -> None:
    capsule = make_capsule({"a.bin": os.urandom(3 << 20), "z.bin": os.urandom(12 << 20)})
    with open(capsule.root / "a.bin", "r+b") as f:
        f.seek(1 << 20)
        f.write(b"\x00" * 16)
    sink = io.BytesIO()
    with pytest.raises(IntegrityError, match="modified: a.bin"):
        export_capsule(capsule.root, "tar", "-", stdout=sink)
    # How far the stream got depends on the hashing thread's pace; what is certain is
    # that the archive's end (two zero blocks after the last member) was never written.
    out = sink.getvalue()
    assert len(out) < 16 << 20 and not out.endswith(bytes(1024))


def test_cli_tampered_capsule_to_stdout_fails_with_one_line(make_capsule, qlcapsule_cli) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    (capsule.root / "a.txt").write_text("b\n")
    res = qlcapsule_cli("export", str(capsule.root), "-f", "tar", "-o", "-")
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith("error: ") and "modified: a.txt" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "sha256" not in res.stderr


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda root: (root / "new.txt").write_text("n\n"), "added: new.txt"),
        (lambda root: (root / "a.txt").unlink(), "removed: a.txt"),
        (lambda root: (root / "a.txt").rename(root / "moved.txt"), "renamed: a.txt -> moved.txt"),
        (lambda root: os.chmod(root / "a.txt", 0o755), "mode changed: a.txt"),
    ],
)
def test_tar_refuses_other_changes_before_any_byte(make_capsule, change, message) -> None:  # type: ignore[no-untyped-def]
    capsule = make_capsule({"a.txt": "a\n"})
    change(capsule.root)
    sink = io.BytesIO()
    with pytest.raises(IntegrityError, match=message):
        export_capsule(capsule.root, "tar", "-", stdout=sink)
    assert sink.getvalue() == b""


def test_an_exporter_that_bypasses_the_payload_is_verified_the_full_way(make_capsule, tmp_path, monkeypatch) -> None:
    from qlcapsule_plugins.exporters.tar import TarExporter

    capsule = make_capsule({"a.txt": "a\n"})
    (capsule.root / "a.txt").write_text("b\n")
    monkeypatch.setattr(TarExporter, "export", lambda self, capsule, out, fmt: out.write(b"not read"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError, match="modified: a.txt"):
        export_capsule(capsule.root, "tar", out)
    assert _listing(out) == set()
