"""The ``oci`` exporter: the capsule as an OCI artifact in an OCI image layout.

Formats: ``oci`` writes the layout as a tarball (``<name>-<version>.oci.tar``),
``oci-dir`` as a directory. The layout (image-spec v1.1) holds:

- ``oci-layout`` (``{"imageLayoutVersion": "1.0.0"}``) and ``index.json``
  pointing at one manifest, tagged with the capsule version
  (``org.opencontainers.image.ref.name``);
- an image manifest with ``artifactType`` ``application/vnd.qlcapsule.capsule.v1``,
  the empty config (``application/vnd.oci.empty.v1+json``, ``{}``) and one
  layer: the capsule as a reproducible tar (gzip by default), titled
  ``<name>-<version>.tar.gz`` so ``oras pull`` writes it under that name;
- annotations ``org.opencontainers.image.title``/``.version``/``.created``
  and ``dev.qlcapsule.capsule.digest``.

:func:`build_oci_artifact` returns the manifest bytes and the blobs, for a
deliverer that pushes the same artifact to a registry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from qlcapsule import Capsule, Exporter, PayloadReader, Register, hookimpl

from ._options import OciOptions
from ._tarstream import CHUNK, payload_entries, sort_entries, write_tar

ARTIFACT_TYPE = "application/vnd.qlcapsule.capsule.v1"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
LAYER_TYPES = {
    "gzip": ("application/vnd.qlcapsule.capsule.layer.v1.tar+gzip", "tar.gz"),
    "zstd": ("application/vnd.qlcapsule.capsule.layer.v1.tar+zstd", "tar.zst"),
    "none": ("application/vnd.qlcapsule.capsule.layer.v1.tar", "tar"),
}
DIGEST_ANNOTATION = "dev.qlcapsule.capsule.digest"

#: one blob: (digest "sha256:<hex>", media type, a file path or the bytes themselves)
Blob = tuple[str, str, "Path | bytes"]


def _digest_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _created(capsule: Capsule) -> str:
    when = dt.datetime.fromtimestamp(Exporter.timestamp(capsule), dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_oci_artifact(
    capsule: Capsule, workdir: Path, *, compression: str = "gzip", payload: PayloadReader | None = None
) -> tuple[bytes, list[Blob]]:
    """The capsule as an OCI artifact: ``(manifest bytes, blobs)``.

    The layer's files are read through ``payload`` (default: a new
    :class:`qlcapsule.PayloadReader`), verified before the layer is complete. The layer is written into ``workdir`` (the caller removes it); the config
    and the manifest are returned as bytes. Blobs are listed config, layer;
    the manifest's own digest is ``sha256(manifest bytes)``. Push the blobs,
    then the manifest with media type ``application/vnd.oci.image.manifest.v1+json``.
    """
    layer_type, ext = LAYER_TYPES[compression]
    layer_path = workdir / f"layer.{ext}"
    own = payload is None
    if payload is None:
        payload = PayloadReader(capsule)
    try:
        with open(layer_path, "wb") as f:
            write_tar(f, payload_entries(payload), Exporter.timestamp(capsule), compression, payload=payload)
    finally:
        if own:
            payload.close()
    layer_digest, layer_size = _digest_file(layer_path)
    empty_digest = "sha256:" + hashlib.sha256(EMPTY_BLOB).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": empty_digest, "size": len(EMPTY_BLOB)},
        "layers": [
            {
                "mediaType": layer_type,
                "digest": layer_digest,
                "size": layer_size,
                "annotations": {"org.opencontainers.image.title": f"{capsule.name}-{capsule.version}.{ext}"},
            }
        ],
        "annotations": {
            "org.opencontainers.image.title": capsule.name,
            "org.opencontainers.image.version": capsule.version,
            "org.opencontainers.image.created": _created(capsule),
            DIGEST_ANNOTATION: f"sha256:{capsule.digest}",
        },
    }
    blobs: list[Blob] = [(empty_digest, EMPTY_TYPE, EMPTY_BLOB), (layer_digest, layer_type, layer_path)]
    return _canonical(manifest), blobs


def layout_files(
    capsule: Capsule, workdir: Path, opts: OciOptions, payload: PayloadReader
) -> list[tuple[str, Path | bytes]]:
    """Every file of the OCI image layout, relative to its root."""
    manifest, blobs = build_oci_artifact(capsule, workdir, compression=opts.compression, payload=payload)
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            {
                "mediaType": MANIFEST_TYPE,
                "artifactType": ARTIFACT_TYPE,
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": opts.tag or capsule.version},
            }
        ],
    }
    files: list[tuple[str, Path | bytes]] = [
        ("oci-layout", _canonical({"imageLayoutVersion": "1.0.0"})),
        ("index.json", _canonical(index)),
        (f"blobs/sha256/{manifest_digest[7:]}", manifest),
    ]
    files += [(f"blobs/sha256/{digest[7:]}", data) for digest, _type, data in blobs]
    return files


class OciExporter(Exporter):
    name = "oci"
    description = "OCI image layout holding the capsule as an artifact (tarball, or a directory with oci-dir)"
    formats = ("oci", "oci-dir")
    directory_formats = ("oci-dir",)
    streams = True
    media_type = "application/vnd.oci.image.layout.v1+tar"
    Options = OciOptions
    options: OciOptions

    def filename(self, capsule: Capsule, fmt: str) -> str:
        return f"{capsule.name}-{capsule.version}.oci" + ("" if fmt == "oci-dir" else ".tar")

    def media_type_for(self, fmt: str) -> str:
        return "inode/directory" if fmt == "oci-dir" else self.media_type

    def build_artifact(self, capsule: Capsule, workdir: Path) -> tuple[bytes, list[Blob]]:
        """:func:`build_oci_artifact` with this exporter's options."""
        return build_oci_artifact(capsule, workdir, compression=self.options.compression)

    def export(self, capsule: Capsule, out: BinaryIO, fmt: str, payload: PayloadReader) -> None:
        with tempfile.TemporaryDirectory(prefix="qlcapsule-oci-") as work:
            files = layout_files(capsule, Path(work), self.options, payload)
            entries = [(name, data, 0o644, None) for name, data in files]
            write_tar(out, sort_entries(entries), self.timestamp(capsule))

    def export_dir(self, capsule: Capsule, dest: Path, fmt: str, payload: PayloadReader) -> None:
        (dest / "blobs" / "sha256").mkdir(parents=True)
        os.chmod(dest / "blobs", 0o755)
        os.chmod(dest / "blobs" / "sha256", 0o755)
        work = dest / "blobs" / ".work"
        work.mkdir()
        try:
            for name, data in layout_files(capsule, work, self.options, payload):
                target = dest / name
                if isinstance(data, Path):
                    os.replace(data, target)
                else:
                    target.write_bytes(data)
                target.chmod(0o644)
        finally:
            for leftover in work.iterdir():
                leftover.unlink()
            work.rmdir()


@hookimpl
def qlcapsule_register_exporters(register: Register) -> None:
    register(OciExporter)
