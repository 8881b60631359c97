"""The docker exporter: a `docker build - < ctx.tar` context with a compose file."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import yaml

from qlcapsule import Capsule, OptionsError
from qlcapsule.steps.exporting import write_export
from qlcapsule.testing import check_exporter
from qlcapsule_plugins.exporters.docker import DockerExporter


def context(capsule: Capsule, **options: object) -> dict[str, bytes]:
    buf = io.BytesIO()
    write_export(DockerExporter.from_options(options), capsule, buf, "docker")
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]


def test_context_has_dockerfile_at_root_payload_and_compose(demo_capsule: Capsule) -> None:
    check_exporter(DockerExporter, demo_capsule)
    files = context(demo_capsule, port=9000, base_image="python:3.13-slim")
    assert set(demo_capsule.files()) | {"capsule.lock", "Dockerfile", "docker-compose.yml"} == set(files)
    dockerfile = files["Dockerfile"].decode()
    assert dockerfile.splitlines()[1] == "FROM python:3.13-slim"
    assert f'dev.qlcapsule.capsule.digest="sha256:{demo_capsule.digest}"' in dockerfile
    assert json.loads(dockerfile.split("CMD ", 1)[1]) == ["python", "-m", "http.server", "9000"]
    compose = yaml.safe_load(files["docker-compose.yml"])
    service = compose["services"]["demo"]
    assert service["build"]["context"] == "." and service["ports"] == ["9000:9000"]
    assert service["labels"]["dev.qlcapsule.capsule.digest"] == f"sha256:{demo_capsule.digest}"


def test_the_capsules_own_dockerfile_is_kept(make_capsule) -> None:
    capsule = make_capsule({"Dockerfile": "FROM scratch\n", "compose.yaml": "services: {}\n"})
    files = context(capsule)
    assert files["Dockerfile"] == b"FROM scratch\n"
    assert "docker-compose.yml" not in files


def test_gzip_context(demo_capsule: Capsule) -> None:
    exporter = DockerExporter.from_options({"compression": "gzip"})
    assert exporter.filename(demo_capsule, "docker").endswith("-docker-context.tar.gz")
    buf = io.BytesIO()
    write_export(exporter, demo_capsule, buf, "docker")
    assert buf.getvalue()[:2] == b"\x1f\x8b"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"base_image": ""}, "base_image: '' is not an image reference"),
        ({"base_image": "python:3.12 AS x"}, "is not an image reference"),
        ({"workdir": "/app\nRUN rm -rf /"}, "workdir: .* is not an absolute path"),
        ({"workdir": "app"}, "is not an absolute path"),
    ],
)
def test_options_that_would_break_the_dockerfile_are_refused(options: dict, expected: str) -> None:
    with pytest.raises(OptionsError, match=expected):
        DockerExporter.from_options(options)


def test_image_references_with_registry_port_tag_and_digest_are_accepted(demo_capsule: Capsule) -> None:
    ref = "registry.example:5000/team/python:3.12-slim@sha256:" + "a" * 64
    assert f"\nFROM {ref}\n".encode() in context(demo_capsule, base_image=ref)["Dockerfile"]
