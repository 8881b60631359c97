"""The tar exporter: reproducible bytes, GNU tar reads it, every compression."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile

import pytest
from exportcase import copy_capsule, lock_paths

from qlcapsule import Capsule, IntegrityError, OptionsError
from qlcapsule.format.streaming import CHUNK, PayloadReader
from qlcapsule.steps.exporting import write_export
from qlcapsule.testing import check_exporter
from qlcapsule_plugins.exporters._tarstream import tar_header
from qlcapsule_plugins.exporters.tar import TarExporter

FORMATS = ["tar", "tar.gz", "tar.xz", "tar.zst"]
GNU_FLAGS = {"tar": [], "tar.gz": ["-z"], "tar.xz": ["-J"], "tar.zst": ["--zstd"]}


def export(capsule: Capsule, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    write_export(TarExporter.from_options(options), capsule, buf, fmt)
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


def test_a_file_that_changes_size_after_the_seal_aborts(demo_capsule: Capsule) -> None:
    (demo_capsule.root / "README.md").write_text("# changed after the check, longer\n")
    with pytest.raises(IntegrityError, match="modified: README.md"):
        export(demo_capsule, "tar")


def test_a_file_that_grows_while_it_is_read_aborts(demo_capsule: Capsule, monkeypatch) -> None:
    opened = PayloadReader._open

    def open_then_append(self, f):  # type: ignore[no-untyped-def]
        fd = opened(self, f)
        if f.path == "README.md":
            with open(f.full, "ab") as w:
                w.write(b"appended while exporting\n")
        return fd

    monkeypatch.setattr(PayloadReader, "_open", open_then_append)
    with pytest.raises(IntegrityError, match="README.md: changed while exporting"):
        export(demo_capsule, "tar")


def test_large_files_stream_in_chunks(make_capsule) -> None:  # type: ignore[no-untyped-def]
    big = bytes(range(256)) * (3 * CHUNK // 256) + b"tail"  # 3 MiB + 4 bytes: several reads, then a short one
    capsule = make_capsule({"big.bin": big, "small.txt": "s\n", "exact.bin": b"x" * CHUNK})
    data = export(capsule, "tar")
    assert len(data) % 10240 == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.getnames() == ["big.bin", "capsule.lock", "capsule.yaml", "exact.bin", "small.txt"]
        for name in ("big.bin", "exact.bin", "small.txt", "capsule.yaml"):
            assert tf.extractfile(name).read() == (capsule.root / name).read_bytes()  # type: ignore[union-attr]


@pytest.mark.parametrize("size", [0, 1, 99, 511, 512, 513, 8**11 - 1, 8**11, 10**12])
@pytest.mark.parametrize("name", ["a.txt", "d/" * 49 + "f", "x" * 100])
def test_headers_match_python_tarfile(name: str, size: int) -> None:
    """Our ustar header is what tarfile writes for the same member, but for devmajor/devminor "0" (as GNU tar)."""
    if size >= 8**11:
        return  # tarfile would write a GNU base-256 size here; we write a PAX size record (below)
    ours = tar_header(name, size, 0o755, 1700000000)
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uname, info.gname = size, 0o755, 1700000000, "", ""
    ref = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    ref[329:345] = b"0000000\x00" * 2
    ref[148:156] = b"%06o\x00 " % (sum(ref[:148]) + 8 * 32 + sum(ref[156:]))
    assert ours == bytes(ref)
    parsed = tarfile.TarInfo.frombuf(ours, "utf-8", "strict")  # checks the checksum
    assert (parsed.name, parsed.size, parsed.mode, parsed.uid, parsed.mtime) == (name, size, 0o755, 0, 1700000000)


def test_huge_sizes_get_a_pax_size_record() -> None:
    header = tar_header("big", 10**12, 0o644, 0)
    assert header[156:157] == b"x" and b" size=1000000000000\n" in header[512:1024]
    assert header[1024 + 124 : 1024 + 136] == b"00000000000\x00"


def test_long_and_unicode_names_get_a_pax_header() -> None:
    plain = tar_header("a.txt", 3, 0o644, 0)
    assert len(plain) == 512 and plain[257:263] == b"ustar\x00"
    long = tar_header("x/" * 60 + "f", 3, 0o644, 0)
    assert long[156:157] == b"x" and b" path=" in long[512:1024]
    assert len(long) == 3 * 512
