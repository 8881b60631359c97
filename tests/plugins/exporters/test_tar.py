"""The tar exporter: reproducible bytes, GNU tar reads it, every compression."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile

import pytest
from exportcase import copy_capsule, lock_paths

from qlcapsule import Capsule, IntegrityError, OptionsError
from qlcapsule.testing import check_exporter
from qlcapsule_plugins.exporters._tarstream import tar_header
from qlcapsule_plugins.exporters.tar import TarExporter

FORMATS = ["tar", "tar.gz", "tar.xz", "tar.zst"]
GNU_FLAGS = {"tar": [], "tar.gz": ["-z"], "tar.xz": ["-J"], "tar.zst": ["--zstd"]}


def export(capsule: Capsule, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    TarExporter.from_options(options).export(capsule, buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_contract_and_gnu_tar_lists_exactly_the_lock(demo_capsule: Capsule, fmt: str, tmp_path) -> None:
    data = check_exporter(TarExporter, demo_capsule, fmt)
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    if fmt == "tar.zst" and shutil.which("zstd") is None:
        pytest.skip("zstd binary (needed by tar --zstd) is not installed")
    archive = tmp_path / f"x.{fmt}"
    archive.write_bytes(data)
    out = subprocess.run(["tar", "-t", *GNU_FLAGS[fmt], "-f", str(archive)], capture_output=True, check=True)
    assert out.stdout.decode().splitlines() == lock_paths(demo_capsule)
    verbose = subprocess.run(["tar", "-tv", *GNU_FLAGS[fmt], "-f", str(archive)], capture_output=True, check=True)
    lines = verbose.stdout.decode().splitlines()
    assert all(" 0/0 " in line and "1980-01-01 00:00" in line for line in lines), lines
    assert any(line.startswith("-rwxr-xr-x") and line.endswith("bin/run.sh") for line in lines)


def test_python_tarfile_reads_pax_names_modes_and_contents(demo_capsule: Capsule) -> None:
    with tarfile.open(fileobj=io.BytesIO(export(demo_capsule, "tar.gz"))) as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == lock_paths(demo_capsule)
        for m in members:
            assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
            assert m.mtime == 315532800
            assert m.mode in (0o644, 0o755)
            assert tf.extractfile(m).read() == (demo_capsule.root / m.name).read_bytes()  # type: ignore[union-attr]


@pytest.mark.parametrize("fmt", FORMATS)
def test_identical_bytes_from_another_checkout_with_other_mtimes_and_umask(
    demo_capsule: Capsule, tmp_path, fmt
) -> None:
    other = copy_capsule(demo_capsule.root, tmp_path / "elsewhere" / "checkout", umask=0o077)
    assert other.verify_integrity().digest == demo_capsule.digest
    assert export(other, fmt) == export(demo_capsule, fmt)


def test_source_date_epoch_sets_every_timestamp(demo_capsule: Capsule, monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    with tarfile.open(fileobj=io.BytesIO(export(demo_capsule, "tar"))) as tf:
        assert {m.mtime for m in tf.getmembers()} == {1700000000}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(OptionsError, match="SOURCE_DATE_EPOCH"):
        export(demo_capsule, "tar")


def test_gzip_header_has_no_name_and_zero_mtime(demo_capsule: Capsule) -> None:
    head = export(demo_capsule, "tar.gz")[:10]
    assert head[:4] == b"\x1f\x8b\x08\x00"  # deflate, no FNAME/FEXTRA/FCOMMENT flags
    assert head[4:8] == b"\x00\x00\x00\x00"


def test_prefix_puts_everything_under_one_directory(demo_capsule: Capsule) -> None:
    with tarfile.open(fileobj=io.BytesIO(export(demo_capsule, "tar", prefix="demo-1.2.3/"))) as tf:
        assert all(n.startswith("demo-1.2.3/") for n in tf.getnames())
    with pytest.raises(OptionsError, match="prefix"):
        TarExporter.from_options({"prefix": "../up/"})


def test_level_is_checked_against_the_format(demo_capsule: Capsule) -> None:
    with pytest.raises(OptionsError, match="not compressed"):
        TarExporter.from_options({"level": 3}).check("tar")
    with pytest.raises(OptionsError, match="out of range 1-9"):
        TarExporter.from_options({"level": 12}).check("tar.gz")
    TarExporter.from_options({"level": 19}).check("tar.zst")


def test_a_file_that_changes_size_during_export_aborts(demo_capsule: Capsule, monkeypatch) -> None:
    (demo_capsule.root / "README.md").write_text("# changed after the check, longer\n")
    with pytest.raises(IntegrityError, match="changed while exporting"):
        export(demo_capsule, "tar")


def test_long_and_unicode_names_get_a_pax_header() -> None:
    plain = tar_header("a.txt", 3, 0o644, 0)
    assert len(plain) == 512 and plain[257:263] == b"ustar\x00"
    long = tar_header("x/" * 60 + "f", 3, 0o644, 0)
    assert long[156:157] == b"x" and b" path=" in long[512:1024]
    assert len(long) == 3 * 512
