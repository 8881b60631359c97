"""The ``terraform`` exporter: a Terraform module deploying the capsule's image to Kubernetes.

Formats: ``terraform`` writes ``<name>-<version>-terraform.tar.gz`` (the files
at the archive root, as Terraform's module sources expect); ``terraform-dir``
writes the module as a directory. Files: ``versions.tf`` (required_version and
required_providers), ``variables.tf``, ``main.tf`` (a
``kubernetes_deployment_v1`` and a ``kubernetes_service_v1``), ``outputs.tf``
and ``README.md``. The text is what ``terraform fmt`` would write; option
values become the variables' defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

from qlcapsule import Capsule, Exporter, PayloadReader, Register, hookimpl

from ._k8s import image_tag, label_value
from ._options import TerraformOptions
from ._tarstream import sort_entries, write_tar


def hcl_string(value: str) -> str:
    """A quoted HCL string; ``${`` and ``%{`` are escaped so values are never templates."""
    return json.dumps(value, ensure_ascii=False).replace("${", "$${").replace("%{", "%%{")


def module_files(capsule: Capsule, opts: TerraformOptions) -> list[tuple[str, bytes]]:
    q = hcl_string
    name, version, digest = capsule.name, capsule.version, f"sha256:{capsule.digest}"
    versions = f"""\
terraform {{
  required_version = ">= 1.3.0"

  required_providers {{
    kubernetes = {{
      source  = "hashicorp/kubernetes"
      version = {q(opts.provider_version)}
    }}
  }}
}}
"""
    variables = f"""\
variable "name" {{
  description = "Name of the Deployment and Service."
  type        = string
  default     = {q(name)}
}}

variable "namespace" {{
  description = "Kubernetes namespace to deploy into."
  type        = string
  default     = {q(opts.namespace)}
}}

variable "image" {{
  description = "Container image repository."
  type        = string
  default     = {q(opts.image or name)}
}}

variable "tag" {{
  description = "Container image tag."
  type        = string
  default     = {q(opts.tag or image_tag(version))}
}}

variable "replicas" {{
  description = "Number of pods."
  type        = number
  default     = {opts.replicas}
}}

variable "port" {{
  description = "Port the container listens on and the Service exposes."
  type        = number
  default     = {opts.port}
}}

variable "env" {{
  description = "Environment variables of the container."
  type        = map(string)
  default     = {{}}
}}

variable "resources" {{
  description = "Resource requests and limits of the container."
  type = object({{
    requests = map(string)
    limits   = map(string)
  }})
  default = {{
    requests = {{ cpu = "100m", memory = "128Mi" }}
    limits   = {{ cpu = "500m", memory = "256Mi" }}
  }}
}}

variable "labels" {{
  description = "Extra labels for every object."
  type        = map(string)
  default     = {{}}
}}
"""
    main = f"""\
locals {{
  capsule_digest = {q(digest)}
  selector = {{
    "app.kubernetes.io/name"     = var.name
    "app.kubernetes.io/instance" = var.name
  }}
  labels = merge(var.labels, local.selector, {{
    "app.kubernetes.io/version"    = {q(label_value(version))}
    "app.kubernetes.io/managed-by" = "terraform"
  }})
  annotations = {{
    "qlcapsule.dev/digest"  = local.capsule_digest
    "qlcapsule.dev/capsule" = {q(capsule.ref)}
  }}
}}

resource "kubernetes_deployment_v1" "this" {{
  metadata {{
    name        = var.name
    namespace   = var.namespace
    labels      = local.labels
    annotations = local.annotations
  }}

  spec {{
    replicas = var.replicas

    selector {{
      match_labels = local.selector
    }}

    template {{
      metadata {{
        labels      = local.labels
        annotations = local.annotations
      }}

      spec {{
        container {{
          name  = var.name
          image = "${{var.image}}:${{var.tag}}"

          port {{
            name           = "http"
            container_port = var.port
          }}

          dynamic "env" {{
            for_each = var.env
            content {{
              name  = env.key
              value = env.value
            }}
          }}

          resources {{
            requests = var.resources.requests
            limits   = var.resources.limits
          }}
        }}
      }}
    }}
  }}
}}

resource "kubernetes_service_v1" "this" {{
  metadata {{
    name        = var.name
    namespace   = var.namespace
    labels      = local.labels
    annotations = local.annotations
  }}

  spec {{
    selector = local.selector

    port {{
      name        = "http"
      port        = var.port
      target_port = "http"
    }}
  }}
}}
"""
    outputs = """\
output "deployment_name" {
  description = "Name of the Deployment."
  value       = kubernetes_deployment_v1.this.metadata[0].name
}

output "service_name" {
  description = "Name of the Service."
  value       = kubernetes_service_v1.this.metadata[0].name
}

output "image" {
  description = "The image the Deployment runs."
  value       = "${var.image}:${var.tag}"
}

output "capsule_digest" {
  description = "Digest of the capsule this module was exported from."
  value       = local.capsule_digest
}
"""
    readme = f"""\
# {name} {version} — Terraform module

Exported by qlcapsule from capsule `{capsule.ref}` (digest `{digest}`).
Deploys the image `{opts.image or name}:{opts.tag or image_tag(version)}` to Kubernetes with the
`hashicorp/kubernetes` provider.

```hcl
module "{name}" {{
  source    = "./{name}"
  namespace = "default"
}}
```
"""
    return [
        ("README.md", readme.encode()),
        ("main.tf", main.encode()),
        ("outputs.tf", outputs.encode()),
        ("variables.tf", variables.encode()),
        ("versions.tf", versions.encode()),
    ]


class TerraformExporter(Exporter):
    name = "terraform"
    description = "Terraform module deploying the capsule image to Kubernetes (.tar.gz or a directory)"
    formats = ("terraform", "terraform-dir")
    directory_formats = ("terraform-dir",)
    streams = True
    media_type = "application/gzip"
    Options = TerraformOptions
    options: TerraformOptions

    def filename(self, capsule: Capsule, fmt: str) -> str:
        suffix = "" if fmt == "terraform-dir" else ".tar.gz"
        return f"{capsule.name}-{capsule.version}-terraform{suffix}"

    def media_type_for(self, fmt: str) -> str:
        return "inode/directory" if fmt == "terraform-dir" else self.media_type

    def export(self, capsule: Capsule, out: BinaryIO, fmt: str, payload: PayloadReader) -> None:
        # the module is generated (it carries no capsule file): the core verifies the payload after this
        entries = [(rel, data, 0o644, None) for rel, data in module_files(capsule, self.options)]
        write_tar(out, sort_entries(entries), self.timestamp(capsule), "gzip", 9)

    def export_dir(self, capsule: Capsule, dest: Path, fmt: str, payload: PayloadReader) -> None:
        for rel, data in module_files(capsule, self.options):
            (dest / rel).write_bytes(data)
            (dest / rel).chmod(0o644)


@hookimpl
def qlcapsule_register_exporters(register: Register) -> None:
    register(TerraformExporter)
