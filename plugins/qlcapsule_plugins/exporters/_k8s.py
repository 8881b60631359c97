"""What Kubernetes and image registries accept, for the helm, terraform and docker exporters.

The patterns validate exporter options (``_options``) before a byte is
written, so an option can never break the YAML, HCL or Dockerfile it lands in
or yield manifests the API server rejects. The two helpers turn a SemVer
version into a label value and an image tag (``+`` is valid in neither;
Helm's own chart label replaces it with ``_`` too).
"""

from __future__ import annotations

import re

#: an image repository, without tag or digest: ``[registry[:port]/]path`` (distribution's reference grammar)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE = rf"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*$"
#: an image reference with an optional tag and/or digest (a Dockerfile's FROM)
IMAGE_REF = IMAGE[:-1] + r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
#: an image tag
TAG = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
#: a DNS-1123 subdomain (ingress class, host); a host may start with ``*.``
SUBDOMAIN = r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$"
HOST = r"^(?:\*\.)?[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$"
#: a DNS-1123 label (a namespace)
LABEL = r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$"
#: a container environment variable name (Kubernetes' rule)
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
#: a resource name (cpu, memory, ephemeral-storage, nvidia.com/gpu) and a quantity (500m, 1.5, 256Mi, 1e3)
RESOURCE = r"^[a-z0-9](?:[-a-z0-9./]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(?:\.[0-9]+)?(?:m|[kMGTPE]i?|[eE][0-9]+)?$"
#: an absolute path in an image, without whitespace or quotes
ABS_PATH = r"^/[^\s\"'\\]*$"
#: a Secret and one of its keys, ``NAME/KEY``: a DNS-1123 subdomain, then a key of ``-._a-zA-Z0-9`` (not . or ..)
SECRET_KEY_REF = SUBDOMAIN[:-1] + r"/(?!\.\.?$)[-._a-zA-Z0-9]+$"


def label_value(text: str) -> str:
    """``text`` as a Kubernetes label value: ``+`` (and anything else invalid) as ``_``, at most 63 characters."""
    value = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def image_tag(version: str) -> str:
    """``version`` as an image tag: ``1.0.0+build.5`` -> ``1.0.0_build.5``."""
    tag = re.sub(r"[^A-Za-z0-9._-]", "_", version)[:128]
    return tag if re.match(r"[A-Za-z0-9_]", tag) else "_" + tag[:127]
