"""The terraform exporter: every file parses with python-hcl2, every var is declared, fmt-clean."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile

import hcl2
import pytest

from qlcapsule import Capsule, OptionsError, PayloadReader
from qlcapsule.steps.exporting import write_export
from qlcapsule.testing import check_exporter
from qlcapsule_plugins.exporters.terraform import TerraformExporter, hcl_string


def module(capsule: Capsule, **options: object) -> dict[str, str]:
    data = io.BytesIO()
    write_export(TerraformExporter.from_options(options), capsule, data, "terraform")
    with tarfile.open(fileobj=io.BytesIO(data.getvalue())) as tf:
        return {m.name: tf.extractfile(m).read().decode() for m in tf.getmembers()}  # type: ignore[union-attr]


def test_files_parse_and_every_variable_is_declared(demo_capsule: Capsule) -> None:
    check_exporter(TerraformExporter, demo_capsule)
    files = module(demo_capsule)
    assert {"versions.tf", "variables.tf", "main.tf", "outputs.tf"} <= set(files)
    parsed = {name: hcl2.loads(text) for name, text in files.items() if name.endswith(".tf")}
    declared = {next(iter(v)).strip('"') for v in parsed["variables.tf"]["variable"]}
    used = set()
    for text in files.values():
        used |= set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)", text))
    used.discard("")
    assert used and used <= declared, used - declared
    providers = parsed["versions.tf"]["terraform"][0]["required_providers"][0]
    assert providers["kubernetes"]["source"].strip('"') == "hashicorp/kubernetes"
    assert f"sha256:{demo_capsule.digest}" in files["main.tf"]
    resources = {next(iter(r)).strip('"') for r in parsed["main.tf"]["resource"]}
    assert resources == {"kubernetes_deployment_v1", "kubernetes_service_v1"}


def test_option_values_become_defaults_and_are_escaped(demo_capsule: Capsule) -> None:
    files = module(demo_capsule, image="reg.example:5000/team/app", namespace="prod", replicas=3)
    assert '"reg.example:5000/team/app"' in files["variables.tf"]
    # options cannot carry templates (below); the quoting escapes them all the same
    assert hcl_string("reg.example/${evil}") == '"reg.example/$${evil}"'
    assert hcl_string("a%{b}") == '"a%%{b}"'
    parsed = hcl2.loads(files["variables.tf"])
    defaults = {next(iter(v)).strip('"'): next(iter(v.values())).get("default") for v in parsed["variable"]}
    assert defaults["namespace"].strip('"') == "prod" and defaults["replicas"] == 3


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("image", "reg.example/${evil}", "is not an image repository"),
        ("image", "Upper/Case", "is not an image repository"),
        ("tag", "1.0 beta", "is not an image tag"),
        ("namespace", "prod\nrm", "is not a Kubernetes namespace"),
        ("namespace", "Prod", "is not a Kubernetes namespace"),
        ("provider_version", '>= 2"\n}', "provider_version"),
    ],
)
def test_option_values_that_would_break_the_module_are_refused(
    demo_capsule: Capsule, option: str, value: str, expected: str
) -> None:
    with pytest.raises(OptionsError, match=expected):
        TerraformExporter.from_options({option: value})


def test_a_build_version_becomes_a_valid_label_and_tag(demo_capsule: Capsule, tmp_path) -> None:
    """SemVer build metadata (``+build.5``) is valid in neither a label value nor an image tag."""
    text = (demo_capsule.root / "capsule.yaml").read_text()
    (demo_capsule.root / "capsule.yaml").write_text(re.sub(r"(?m)^version: .*$", "version: 1.0.0-rc.1+build.5", text))
    capsule = Capsule.load(demo_capsule.root)
    capsule.seal()
    files = module(capsule)
    assert '"app.kubernetes.io/version"    = "1.0.0-rc.1_build.5"' in files["main.tf"]
    assert 'default     = "1.0.0-rc.1_build.5"' in files["variables.tf"]
    labels = re.findall(r'"app\.kubernetes\.io/[a-z-]+"\s*=\s*"([^"]*)"', files["main.tf"])
    assert labels and all(re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", v) for v in labels), labels


def test_terraform_fmt_and_validate_where_available(demo_capsule: Capsule, tmp_path) -> None:
    binary = shutil.which("terraform") or shutil.which("tofu")
    if binary is None:
        pytest.skip("no terraform or tofu binary on PATH")
    out = tmp_path / "mod"
    out.mkdir()
    TerraformExporter.from_options({}).export_dir(demo_capsule, out, "terraform-dir", PayloadReader(demo_capsule))
    fmt = subprocess.run([binary, "fmt", "-check", "-diff", str(out)], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TF_IN_AUTOMATION": "1"}
    init = subprocess.run(
        [binary, "init", "-backend=false", "-input=false", "-no-color"],
        cwd=out,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if init.returncode != 0:
        errors = [line for line in (init.stderr + init.stdout).splitlines() if line.startswith("Error")]
        print(f"skipping '{binary} validate': providers cannot be installed here: {errors[:1] or init.returncode}")
        return
    validate = subprocess.run([binary, "validate", "-no-color"], cwd=out, capture_output=True, text=True, env=env)
    assert validate.returncode == 0, validate.stdout + validate.stderr
