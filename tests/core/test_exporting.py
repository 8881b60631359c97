"""export_capsule and `qlcapsule export`: validation before bytes, atomic output, sha256 sidecar."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest

from qlcapsule import InputError, IntegrityError, OptionsError
from qlcapsule.steps.exporting import export_capsule, parse_option_args


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

    def boom(self, capsule, out, fmt, payload):  # type: ignore[no-untyped-def]
        out.write(b"half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TarExporter, "export", boom)
    out = tmp_path / "out"
    out.mkdir()
    (out / "demo-1.0.0.tar").write_bytes(b"previous export")
    with pytest.raises(InputError, match=r"demo-1\.0\.0\.tar: cannot write \(No space left on device\)"):
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
    from qlcapsule.steps.exporting import export_capsule

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


def test_an_exporter_that_reads_nothing_is_verified_and_its_last_write_held_back(make_capsule, monkeypatch) -> None:
    """The core verifies every locked file the exporter did not read; on a pipe its last write never goes out."""
    from qlcapsule_plugins.exporters.tar import TarExporter

    capsule = make_capsule({"a.txt": "a\n"})
    (capsule.root / "a.txt").write_text("b\n")  # same size: only the digest can tell

    def generated(self, capsule, out, fmt, payload):  # type: ignore[no-untyped-def]
        out.write(b"first ")
        out.write(b"last")

    monkeypatch.setattr(TarExporter, "export", generated)
    sink = io.BytesIO()
    with pytest.raises(IntegrityError, match="modified: a.txt"):
        export_capsule(capsule.root, "tar", "-", stdout=sink)
    assert sink.getvalue() == b"first "
    (capsule.root / "a.txt").write_text("a\n")
    export_capsule(capsule.root, "tar", "-", stdout=sink)
    assert sink.getvalue() == b"first first last"


def test_an_exporter_may_read_files_twice_in_any_order_or_in_part(make_capsule, tmp_path, monkeypatch) -> None:
    """The reader hashes each read on its own: a partial or repeated read never confuses the verdict."""
    from qlcapsule_plugins.exporters.tar import TarExporter

    capsule = make_capsule({"a.txt": "a\n", "big.bin": os.urandom(3 << 20), "z.txt": "z\n"})

    def odd(self, capsule, out, fmt, payload):  # type: ignore[no-untyped-def]
        files = {f.path: f for f in payload.files}
        next(iter(payload.read(files["big.bin"])))  # the first MiB only
        out.write(payload.read_bytes(files["z.txt"]) + payload.read_bytes(files["a.txt"]))
        out.write(payload.read_bytes(files["z.txt"]))

    monkeypatch.setattr(TarExporter, "export", odd)
    assert export_capsule(capsule.root, "tar", tmp_path).size == 6
    with open(capsule.root / "big.bin", "r+b") as f:  # after the first MiB: only verify() reads it
        f.seek(2 << 20)
        f.write(b"\x00" * 16)
    with pytest.raises(IntegrityError, match="modified: big.bin"):
        export_capsule(capsule.root, "tar", tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_a_fifo_target_is_streamed_into_not_replaced(make_capsule, tmp_path) -> None:
    """``-o fifo`` (or ``-o /dev/null``) writes into it, as tar does; it is never replaced by a file."""
    capsule = make_capsule({"a.txt": "a\n"})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    result = export_capsule(capsule.root, "tar", fifo)
    reader.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and not (tmp_path / "fifo.sha256").exists()
    assert result.path == fifo and result.sidecar is None
    assert got and hashlib.sha256(got[0]).hexdigest() == result.sha256
    null = export_capsule(capsule.root, "zip", "/dev/null")
    assert null.size > 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(InputError, match="is a FIFO; format 'oci-dir' can only be written to a file or directory"):
        export_capsule(capsule.root, "oci-dir", fifo)


def test_a_sidecar_that_cannot_be_replaced_is_refused_before_writing(make_capsule, tmp_path) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    out = tmp_path / "out"
    (out / "x.zip.sha256").mkdir(parents=True)
    with pytest.raises(InputError, match=r"x\.zip\.sha256: exists and is not a regular file"):
        export_capsule(capsule.root, "zip", out / "x.zip")
    assert _listing(out) == {"x.zip.sha256"}


def test_the_export_gets_the_mode_the_umask_gives(make_capsule, tmp_path) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    old = os.umask(0o077)
    try:
        result = export_capsule(capsule.root, "zip", tmp_path / "x.zip")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(result.path).st_mode) == 0o600  # type: ignore[arg-type]
    assert stat.S_IMODE(os.stat(tmp_path / "x.zip.sha256").st_mode) == 0o600


def test_an_exporter_name_means_its_first_format(make_capsule, tmp_path) -> None:
    """``-f NAME`` of an exporter whose formats do not include its name exports its first format."""
    import types

    import qlcapsule
    from qlcapsule import hookimpl
    from qlcapsule.plugins.manager import register_plugin, unregister_plugin

    class Listing(qlcapsule.Exporter):
        name = "listing"
        formats = ("listing.txt", "listing.csv")
        streams = True

        def filename(self, capsule, fmt):  # type: ignore[no-untyped-def]
            return f"{capsule.name}.{fmt}"

        def export(self, capsule, out, fmt, payload):  # type: ignore[no-untyped-def]
            out.write(f"{fmt}\n".encode())

    plugin = types.SimpleNamespace(qlcapsule_register_exporters=hookimpl(lambda register: register(Listing)))
    register_plugin(plugin, "listing-test")
    try:
        capsule = make_capsule({"a.txt": "a\n"})
        result = export_capsule(capsule.root, "listing", tmp_path)
    finally:
        unregister_plugin("listing-test")
    assert result.format == "listing.txt" and result.path == tmp_path / "demo.listing.txt"
    assert result.path.read_bytes() == b"listing.txt\n"


@pytest.mark.parametrize("epoch", [8**11, 99_999_999_999])
def test_dates_past_2242_go_into_a_pax_mtime(make_capsule, tmp_path, monkeypatch, epoch) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch))
    tar = export_capsule(capsule.root, "tar", tmp_path / "x.tar")
    with tarfile.open(tar.path) as tf:  # type: ignore[arg-type]
        assert {m.mtime for m in tf.getmembers()} == {epoch}
    zipped = export_capsule(capsule.root, "zip", tmp_path / "x.zip")
    with zipfile.ZipFile(zipped.path) as zf:  # type: ignore[arg-type]
        assert {i.date_time for i in zf.infolist()} == {(2107, 12, 31, 23, 59, 58)}  # the latest DOS date
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "253402300800")
    with pytest.raises(OptionsError, match="SOURCE_DATE_EPOCH: 253402300800 is after 9999-12-31"):
        export_capsule(capsule.root, "tar", tmp_path / "y.tar")


def test_a_level_from_capsule_yaml_names_its_source_and_can_be_reset(make_capsule, tmp_path) -> None:
    capsule = make_capsule({"a.txt": "a\n"}, seal=False)
    with open(capsule.root / "capsule.yaml", "a") as f:
        f.write("exports:\n  tar:\n    level: 19\n")
    capsule.seal()
    assert export_capsule(capsule.root, "tar.zst", tmp_path).size > 0
    assert export_capsule(capsule.root, "tar", tmp_path).size > 0  # plain tar has no level to set
    with pytest.raises(OptionsError, match=r"19 is out of range 1-9 for tar.gz \(set in capsule.yaml exports.tar;"):
        export_capsule(capsule.root, "tar.gz", tmp_path)
    assert export_capsule(capsule.root, "tar.gz", tmp_path, {"level": ""}).size > 0
    with pytest.raises(OptionsError, match="format tar is not compressed"):
        export_capsule(capsule.root, "tar", tmp_path, {"level": 3})


def _cli(*args: str, **kw: object) -> subprocess.Popen[bytes]:
    code = "import sys; from qlcapsule.cli import run; sys.argv[0] = 'qlcapsule'; run()"
    return subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def test_closed_stdout_is_one_line(make_capsule) -> None:
    capsule = make_capsule({"a.txt": "a\n"})
    proc = _cli(
        "export",
        str(capsule.root),
        "-f",
        "tar",
        "-o",
        "-",
        stdout=subprocess.DEVNULL,
        close_fds=True,
        preexec_fn=lambda: os.close(1),
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.decode() == "error: standard output is closed; pass -o PATH\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_remove_the_partial_export(make_capsule, tmp_path, sig) -> None:
    """CI cancelling a job sends SIGTERM: the half-written temp file goes, as on Ctrl-C (bounded: 20 s)."""
    capsule = make_capsule({"big.bin": os.urandom(24 << 20), "a.txt": "a\n"})
    out = tmp_path / "out"
    out.mkdir()
    proc = _cli("export", str(capsule.root), "-f", "tar.xz", "-o", str(out), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not any(p.name.endswith(".part") for p in out.iterdir()):  # xz of random data: seconds
        assert proc.poll() is None and time.monotonic() < deadline, "the export ended before a temp file was seen"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + sig, err
    assert err.decode() == f"error: terminated ({sig.name})\n"
    assert list(out.iterdir()) == []


def test_plugins_lists_each_exporters_formats(qlcapsule_cli) -> None:
    import json

    res = qlcapsule_cli("plugins")
    row = next(line.split() for line in res.stdout.splitlines() if line.split()[:2] == ["exporter", "tar"])
    assert res.exit_code == 0 and row[2:7] == ["tar", "tar.gz", "tgz", "tar.xz", "tar.zst"]
    data = json.loads(qlcapsule_cli("plugins", "--json").stdout)["result"]
    comps = {c["name"]: c for p in data for c in p["components"]}
    assert comps["oci"]["formats"] == ["oci", "oci-dir"] and "formats" not in comps["ed25519"]
