"""The ``compose`` validator: Compose files against the Compose Specification's schema.

The schema is ``compose-spec.json`` as check-jsonschema vendors it (from the
compose-spec project, its licence beside it), evaluated by ``jsonschema`` like
the workflow schemas (``_jsonschema``). Interpolation (``${PORT:-8000}``) is not
expanded: the schema takes strings wherever Compose interpolates.
"""

from __future__ import annotations

from qlcapsule import Register, Rule, Severity, hookimpl

from ._jsonschema import SchemaValidator

COMPOSE_SPEC = "https://github.com/compose-spec/compose-spec/blob/main/spec.md"


class ComposeValidator(SchemaValidator):
    name = "compose"
    description = "Compose files (compose.yaml, docker-compose.yml): the Compose Specification schema (jsonschema)"
    patterns = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
    schema_name = "compose-spec"
    help_uri = COMPOSE_SPEC
    what = "compose file"
    rules = (
        Rule("compose.schema", "the file does not match the Compose Specification schema", help_uri=COMPOSE_SPEC),
        Rule("compose.engine-missing", "the schema engine is not installed", Severity.WARNING),
    )


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(ComposeValidator)
