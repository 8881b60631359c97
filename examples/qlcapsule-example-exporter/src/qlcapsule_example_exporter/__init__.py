"""A third-party qlcapsule exporter: the capsule's file list as JSON or CSV.

It imports only ``qlcapsule`` (the public API), exactly like the built-in
exporters. ``qlcapsule export --format manifest.json`` (or ``manifest.csv``).
It reads no file content itself: the core checks every locked file against
capsule.lock (through the ``payload`` it hands ``export``) before the output
is committed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import BinaryIO

from pydantic import Field

from qlcapsule import Capsule, Exporter, Options, PayloadReader, Register, hookimpl

__version__ = "0.1.0"


class ManifestOptions(Options):
    include_lock: bool = Field(default=False, description="also list capsule.lock and capsule.sig")


class ManifestExporter(Exporter):
    name = "manifest"
    description = "file listing (path, size, mode, sha256) as JSON or CSV"
    formats = ("manifest.json", "manifest.csv")
    streams = True
    media_type = "application/json"
    Options = ManifestOptions
    options: ManifestOptions

    def media_type_for(self, fmt: str) -> str:
        return "text/csv" if fmt == "manifest.csv" else "application/json"

    def filename(self, capsule: Capsule, fmt: str) -> str:
        return f"{capsule.name}-{capsule.version}.{fmt}"

    def _rows(self, payload: PayloadReader) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = [
            {"path": e.path, "size": e.size, "mode": e.mode, "sha256": e.sha256} for e in payload.lock.files
        ]
        if self.options.include_lock:
            for f in payload.files:
                if f.path in ("capsule.lock", "capsule.sig"):
                    digest = hashlib.sha256(payload.read_bytes(f)).hexdigest()
                    rows.append({"path": f.path, "size": f.size, "mode": "644", "sha256": digest})
        return rows

    def export(self, capsule: Capsule, out: BinaryIO, fmt: str, payload: PayloadReader) -> None:
        rows = self._rows(payload)
        if fmt == "manifest.csv":
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=["path", "size", "mode", "sha256"], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            out.write(text.getvalue().encode("utf-8"))
            return
        doc = {"capsule": capsule.ref, "digest": f"sha256:{capsule.digest}", "files": rows}
        out.write((json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


@hookimpl
def qlcapsule_register_exporters(register: Register) -> None:
    register(ManifestExporter)
