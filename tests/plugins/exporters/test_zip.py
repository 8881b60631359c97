"""The zip exporter: reproducible, Info-ZIP reads it, stores compressed data, ZIP64."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile

import pytest
from exportcase import copy_capsule, lock_paths

from qlcapsule import Capsule
from qlcapsule.steps.exporting import write_export
from qlcapsule.testing import check_exporter
from qlcapsule_plugins.exporters import _zipstream
from qlcapsule_plugins.exporters.zip import ZipExporter


class _Unseekable(io.RawIOBase):
    """A pipe-like sink: writable, never seekable, never tellable."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def export(capsule: Capsule, **options: object) -> bytes:
    sink = _Unseekable()
    write_export(ZipExporter.from_options(options), capsule, sink, "zip")  # type: ignore[arg-type]
    return bytes(sink.data)


def test_contract_and_unzip_lists_exactly_the_lock(demo_capsule: Capsule, tmp_path) -> None:
    data = check_exporter(ZipExporter, demo_capsule)
    if shutil.which("unzip") is None:
        pytest.skip("Info-ZIP unzip is not installed")
    archive = tmp_path / "x.zip"
    archive.write_bytes(data)
    listing = subprocess.run(["unzip", "-Z1", str(archive)], capture_output=True, check=True)
    assert listing.stdout.decode().splitlines() == lock_paths(demo_capsule)
    subprocess.run(["unzip", "-tq", str(archive)], capture_output=True, check=True)
    out = tmp_path / "out"
    subprocess.run(["unzip", "-q", str(archive), "-d", str(out)], check=True)
    for rel in demo_capsule.files():
        assert (out / rel).read_bytes() == (demo_capsule.root / rel).read_bytes()
    assert os.stat(out / "bin/run.sh").st_mode & 0o777 == 0o755
    assert os.stat(out / "README.md").st_mode & 0o777 == 0o644


def test_streams_to_an_unseekable_sink_with_big_files(make_capsule, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_zipstream, "SMALL", 64 << 10)  # force the data-descriptor path on small test data
    capsule = make_capsule(
        {"big.txt": "compressible line\n" * 20000, "random.dat": os.urandom(300_000), "small.py": "x = 1\n"}
    )
    data = export(capsule)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        info = {i.filename: i for i in zf.infolist()}
        assert info["big.txt"].flag_bits & 0x08 and info["big.txt"].compress_type == zipfile.ZIP_DEFLATED
        assert info["random.dat"].compress_type == zipfile.ZIP_STORED
        assert zf.read("random.dat") == (capsule.root / "random.dat").read_bytes()
    if shutil.which("unzip"):
        (tmp_path / "s.zip").write_bytes(data)
        subprocess.run(["unzip", "-tq", str(tmp_path / "s.zip")], capture_output=True, check=True)


def test_fixed_dates_attrs_and_store_decisions(demo_capsule: Capsule) -> None:
    with zipfile.ZipFile(io.BytesIO(export(demo_capsule))) as zf:
        for i in zf.infolist():
            assert i.date_time == (1980, 1, 1, 0, 0, 0)
            assert i.create_system == 3
            assert i.external_attr >> 16 in (0o100644, 0o100755)
            assert i.extra == b""
        assert zf.getinfo("data/photo.png").compress_type == zipfile.ZIP_STORED  # by extension
        assert zf.getinfo("src/app.py").compress_type == zipfile.ZIP_DEFLATED
        assert zf.getinfo("src/ünïcode-名前.txt").flag_bits & 0x800  # UTF-8 name flag


def test_identical_bytes_across_checkouts_and_worker_counts(demo_capsule: Capsule, tmp_path) -> None:
    other = copy_capsule(demo_capsule.root, tmp_path / "other", umask=0o027)
    assert export(other, workers=1) == export(demo_capsule, workers=4)


def test_zip64_records_when_sizes_pass_the_limit(make_capsule, tmp_path, monkeypatch) -> None:
    """Lowering the limit exercises the ZIP64 code without writing 4 GiB."""
    monkeypatch.setattr(_zipstream, "ZIP64_LIMIT", 5000)
    monkeypatch.setattr(_zipstream, "SMALL", 4096)
    capsule = make_capsule({f"f{i}.txt": f"{i}\n" * 900 for i in range(4)} | {"r.bin": os.urandom(9000)})
    data = export(capsule)
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data  # zip64 end records
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert zf.read("r.bin") == (capsule.root / "r.bin").read_bytes()
    if shutil.which("unzip"):
        (tmp_path / "z64.zip").write_bytes(data)
        subprocess.run(["unzip", "-tq", str(tmp_path / "z64.zip")], capture_output=True, check=True)


def test_should_store() -> None:
    assert _zipstream.should_store("a.PNG", b"text" * 100)
    assert _zipstream.should_store("noise", os.urandom(4096))
    assert not _zipstream.should_store("a.txt", b"text " * 1000)
    assert _zipstream.should_store("empty", b"")
