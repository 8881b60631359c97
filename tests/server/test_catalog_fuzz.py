"""schemathesis against the server's own OpenAPI document, on a real server with a catalog in it: generated
requests, valid and invalid, get no 5xx, and every answer matches the document's schema and content type.

The operations are driven through schemathesis's Hypothesis strategies (``APIOperation.as_strategy``) rather
than its pytest plugin, which does not run under this project's pytest version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from catalog_fixtures import Key, LiveServer, Ship

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency (pip install -e '.[dev]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance  # noqa: E402

from qlcapsule_server.client import publish  # noqa: E402
from qlcapsule_server.config import Settings  # noqa: E402

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_the_api_holds_to_its_openapi_document(tmp_path: Path, ship: Ship, release_key: Key, mode: Any) -> None:
    server = LiveServer(Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", trust_file=str(release_key.trust)))
    try:
        token = server.token("admin")
        publish(server.url, token, ship("orders", key=release_key))
        # the event stream never ends by design: a request/response fuzzer cannot call it
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json").exclude(path="/api/v1/events")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        headers = {"Authorization": f"Bearer {token}"}
        fuzzed = 0
        for operation in operations:

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def fuzz(case: Any) -> None:
                case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)

            try:
                fuzz()
            except Unsatisfiable:  # an operation without inputs has no invalid form (GET /healthz)
                assert mode == GenerationMode.NEGATIVE, operation.label
                continue
            fuzzed += 1
        assert fuzzed >= (len(operations) if mode == GenerationMode.POSITIVE else 10), fuzzed
    finally:
        server.stop()
