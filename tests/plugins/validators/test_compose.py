"""The compose validator: Compose files against the Compose Specification schema (draft 2020-12)."""

from __future__ import annotations

from vcase import findings

GOOD = """services:
  web:
    image: nginx:1.27
    ports:
      - "${PORT:-8080}:80"
    restart: unless-stopped
    depends_on: [db]
    environment:
      MODE: prod
  db:
    image: postgres:16
    healthcheck:
      interval: 5s
      retries: 3
volumes:
  data:
"""


def test_a_good_compose_file(tmp_path):
    assert findings(tmp_path, {"compose.yaml": GOOD}, "compose") == []


def test_unknown_keys_and_wrong_values_on_their_lines(tmp_path):
    """An unknown key is named once; a known key whose value is wrong is not also called unexpected."""
    text = "services:\n  web:\n    imagee: nginx:1.27\n    ports: {a: 1}\n"
    found = findings(tmp_path, {"docker-compose.yml": text}, "compose")
    assert [(f.rule, f.line, f.column, f.message) for f in found] == [
        ("compose.schema", 3, 5, "services.web.imagee: unexpected key 'imagee'"),
        ("compose.schema", 4, 12, "services.web.ports: {'a': 1} is not of type 'array'"),
    ]
    assert found[0].extra["keyword"] == "unevaluatedProperties"
