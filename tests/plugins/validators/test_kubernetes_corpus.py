"""kubernetes-validate's own test manifests (tests/corpus/kubernetes): qlcapsule finds what the engine finds.

Each document is checked twice: by ``kubernetes_validate.validate`` (strict, the
Kubernetes version the validator uses) and by the ``kubernetes`` validator. Where
the engine raises a validation error, qlcapsule reports a ``kubernetes.schema``
error naming the same path; where the engine has no schema (a made-up kind),
neither reports; where it passes, qlcapsule reports nothing.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from vcase import findings

from qlcapsule_plugins.validators import kubernetes

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "kubernetes"
FILES = sorted(CORPUS.glob("*.yaml"))


def _engine(doc: dict[str, object]) -> str | None:
    """The engine's verdict: the failing path (``""`` for the root), or None when it passes or has no schema."""
    try:
        kubernetes_validate.validate(doc, kubernetes.kubernetes_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        return ".".join(str(p) for p in exc.path)
    except kubernetes_validate.SchemaNotFoundError:
        return None
    return None


def test_the_corpus_is_there():
    assert [f.name for f in FILES] == [
        "kuard-all.yaml",
        "kuard-extra-property.yaml",
        "kuard-invalid-type.yaml",
        "kuard-made-up-kind.yaml",
        "resource.yaml",
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_document_as_the_engine_judges_it(tmp_path, path):
    docs = [d for d in path.read_text().split("\n---") if yaml.safe_load(d)]
    for i, text in enumerate(docs):
        expected = _engine(yaml.safe_load(text))
        found = findings(tmp_path / str(i), {"manifest.yaml": text.lstrip("-\n")}, "kubernetes")
        if expected is None:
            assert found == [], (path.name, i, found)
        else:
            assert found and {f.rule for f in found} == {"kubernetes.schema"}, (path.name, i)
            labels = [f.message.split(": ", 1)[0] for f in found]
            assert any(label.startswith(expected) or expected.startswith(label) for label in labels), (
                expected,
                labels,
            )
