"""A component whose SDK extra is not installed: bad input (exit 2) naming the ``pip install``, at lookup.

The subprocess tests hide an installed SDK with a meta path finder placed first on ``sys.meta_path``
(``-c`` below): to Python the module is then not installed, for ``import`` and ``find_spec`` alike. The
in-process tests use a module name that exists nowhere. Nothing of qlcapsule's own is replaced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qlcapsule import Exporter, InputError, hookimpl

BLOCKING_RUN = """
import sys

HIDDEN = set(sys.argv.pop(1).split(","))


class Hide:
    def find_spec(self, name, path=None, target=None):
        if name in HIDDEN or name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Hide())
sys.argv[0] = "qlcapsule"
from qlcapsule.cli import run

run()
"""


def _run(hidden: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKING_RUN, hidden, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "QLCAPSULE_NO_PROGRESS": "1"},
        timeout=120,
    )


def test_plugins_reports_a_deliverer_without_its_sdk_as_unavailable() -> None:
    proc = _run("boto3,botocore", "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    comps = {(c["kind"], c["name"]): c for p in json.loads(proc.stdout)["result"] for c in p["components"]}
    s3 = comps[("deliverer", "s3")]
    assert (s3["available"], s3["missing"], s3["install"]) == (False, ["boto3"], 'pip install "qlcapsule[s3]"')
    assert comps[("deliverer", "local")]["available"] is True
    assert comps[("deliverer", "gcs")]["available"] is True  # only what was hidden is missing
    text = _run("boto3", "plugins")
    row = next(line for line in text.stdout.splitlines() if line.split()[:2] == ["deliverer", "s3"])
    assert 'unavailable: no boto3; pip install "qlcapsule[s3]"' in row


@pytest.mark.parametrize(
    ("provider", "hidden", "extra"),
    [("s3", "boto3", "s3"), ("gcs", "google.cloud.storage", "gcs"), ("azure", "azure", "azure")],
)
def test_delivering_without_the_extra_is_bad_input_naming_the_install(
    tmp_path: Path, provider: str, hidden: str, extra: str
) -> None:
    options = {"s3": "bucket: b", "gcs": "bucket: b", "azure": "container: c"}[provider]
    targets = tmp_path / "targets.yaml"
    targets.write_text(f"targets:\n  prod:\n    provider: {provider}\n    options: {{{options}}}\n")
    capsule = tmp_path / "cap"
    capsule.mkdir()
    (capsule / "README.md").write_text("# cap\n")
    (capsule / "capsule.yaml").write_text("name: cap\nversion: 1.0.0\n")
    assert _run(hidden, "seal", str(capsule)).returncode == 0
    artifact = tmp_path / "a.txt"
    artifact.write_text("a\n")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = _run(
        hidden, "deliver", str(capsule), "--targets-file", str(targets), "-t", "prod", "--artifact", str(artifact)
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f'pip install "qlcapsule[{extra}]"' in proc.stderr
    assert "targets.prod.provider" in proc.stderr and str(targets) in proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


class _NeedsNothingThere(Exporter):
    """Writes a format whose library is not installed anywhere."""

    name = "needs-missing"
    formats = ("needs-missing",)
    requires = ("qlcapsule_test_module_that_does_not_exist",)
    extra = "qlcapsule-needs-missing[fast]"

    def export(self, capsule, out, fmt, payload):  # type: ignore[no-untyped-def]
        raise AssertionError("never reached: the lookup refuses first")


class _Plugin:
    @hookimpl
    def qlcapsule_register_exporters(self, register):  # type: ignore[no-untyped-def]
        register(_NeedsNothingThere)


def test_the_lookup_refuses_a_component_whose_requires_are_missing(qlcapsule_plugin) -> None:  # type: ignore[no-untyped-def]
    reg = qlcapsule_plugin(_Plugin(), "needs-missing")
    expected = (
        "exporter 'needs-missing' needs qlcapsule_test_module_that_does_not_exist, which is not installed: "
        'pip install "qlcapsule-needs-missing[fast]"'
    )
    for lookup in (lambda: reg.get("exporter", "needs-missing"), lambda: reg.exporter_for("needs-missing")):
        with pytest.raises(InputError) as info:
            lookup()
        assert info.value.message == expected and info.value.exit_code == 2
    # described without being run: its options and its row in `plugins`
    assert reg.get("exporter", "needs-missing", runnable=False) is _NeedsNothingThere
    assert _NeedsNothingThere.summary() == "Writes a format whose library is not installed anywhere."


def test_export_to_a_format_whose_extra_is_missing_writes_nothing(
    qlcapsule_plugin, qlcapsule_cli, make_capsule, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    qlcapsule_plugin(_Plugin(), "needs-missing")
    capsule = make_capsule()
    out = tmp_path / "out"
    out.mkdir()
    res = qlcapsule_cli("export", str(capsule.root), "-f", "needs-missing", "-o", str(out))
    assert res.exit_code == 2
    assert res.stderr.strip().endswith('pip install "qlcapsule-needs-missing[fast]"')
    assert list(out.iterdir()) == []
