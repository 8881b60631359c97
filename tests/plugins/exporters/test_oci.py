"""The oci exporter: an image layout an OCI tool accepts, and build_oci_artifact."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

from qlcapsule import Capsule, PayloadReader
from qlcapsule.steps.exporting import write_export
from qlcapsule.testing import check_exporter
from qlcapsule_plugins.exporters.oci import ARTIFACT_TYPE, EMPTY_TYPE, OciExporter, build_oci_artifact


def layout(capsule: Capsule) -> dict[str, bytes]:
    buf = io.BytesIO()
    write_export(OciExporter.from_options({}), capsule, buf, "oci")
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]


def _blob(files: dict[str, bytes], desc: dict) -> bytes:
    algo, hexd = desc["digest"].split(":")
    data = files[f"blobs/{algo}/{hexd}"]
    assert hashlib.sha256(data).hexdigest() == hexd and len(data) == desc["size"]
    return data


def test_layout_index_manifest_and_blobs_are_consistent(demo_capsule: Capsule) -> None:
    check_exporter(OciExporter, demo_capsule)
    files = layout(demo_capsule)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2 and index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (desc,) = index["manifests"]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "1.2.3"
    manifest = json.loads(_blob(files, desc))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == desc["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == EMPTY_TYPE and _blob(files, manifest["config"]) == b"{}"
    ann = manifest["annotations"]
    assert ann["org.opencontainers.image.title"] == "demo" and ann["org.opencontainers.image.version"] == "1.2.3"
    assert ann["org.opencontainers.image.created"] == "1980-01-01T00:00:00Z"
    assert ann["dev.qlcapsule.capsule.digest"] == f"sha256:{demo_capsule.digest}"
    (layer,) = manifest["layers"]
    assert layer["annotations"]["org.opencontainers.image.title"] == "demo-1.2.3.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(_blob(files, layer))) as tf:
        assert sorted(tf.getnames()) == sorted(demo_capsule.files() + ["capsule.lock"])
    assert len(files) == 5  # oci-layout, index.json and three blobs


def test_build_oci_artifact_for_a_registry_push(demo_capsule: Capsule, tmp_path) -> None:
    manifest, blobs = build_oci_artifact(demo_capsule, tmp_path)
    doc = json.loads(manifest)
    assert [b[0] for b in blobs] == [doc["config"]["digest"], doc["layers"][0]["digest"]]
    for digest, _media, data in blobs:
        raw = data if isinstance(data, bytes) else data.read_bytes()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest


def test_oci_dir(demo_capsule: Capsule, tmp_path) -> None:
    dest = tmp_path / "layout"
    dest.mkdir()
    OciExporter.from_options({}).export_dir(demo_capsule, dest, "oci-dir", PayloadReader(demo_capsule))
    names = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert names == sorted(layout(demo_capsule))
