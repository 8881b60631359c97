"""The ``helm-values`` validator: a Helm chart's ``values.yaml`` against its own ``values.schema.json``.

Helm checks a chart's values against the JSON Schema the chart ships
(``values.schema.json`` beside ``Chart.yaml``) on ``install``, ``upgrade``,
``lint`` and ``template``; this validator does the same before the chart
leaves the capsule, with ``jsonschema``, each error on its line in
``values.yaml`` (``_jsonschema``).

The schema is the capsule's own content, so it is run as untrusted code would
be: a ``pattern`` (or ``patternProperties``) regular expression such as
``^(a+)+$`` runs in Python's ``re``, which backtracks exponentially, and
``jsonschema`` calls ``re`` in several places. The evaluation therefore runs
in a child process (this module, ``python -I -m``) that is killed after
:data:`TIMEOUT` seconds, reported as ``helm-values.timeout``; both files are
bounded to :data:`MAX_BYTES` before they are read, a schema ``$ref`` is never
fetched (only references inside the schema resolve), and a link out of the
capsule is not followed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Iterable

from qlcapsule import Capsule, Finding, Register, Rule, Severity, Validator, clip, hookimpl

from . import _jsonschema
from ._yaml import compose_all, to_data

HELM_SCHEMA_DOCS = "https://helm.sh/docs/topics/charts/#schema-files"
#: seconds the schema may take on the values, and the largest values or schema file read
TIMEOUT = 10.0
MAX_BYTES = 1024 * 1024


class HelmValuesValidator(Validator):
    name = "helm-values"
    description = "a Helm chart's values.yaml against its values.schema.json (jsonschema, in a bounded process)"
    patterns = ("values.yaml",)
    rules = (
        Rule("helm-values.schema", "values.yaml does not match the chart's values.schema.json", help_uri=HELM_SCHEMA_DOCS),
        Rule("helm-values.invalid-schema", "values.schema.json is not a usable JSON Schema", help_uri=HELM_SCHEMA_DOCS),
        Rule("helm-values.timeout", "the chart's schema took too long on its values (a catastrophic pattern)", Severity.ERROR),
    )  # fmt: skip

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        chart = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
        root = capsule.root.resolve()
        schema_file = (capsule.root / f"{chart}values.schema.json").resolve()
        if not (capsule.root / f"{chart}Chart.yaml").is_file() or not schema_file.is_file():
            return  # not a chart's values, or a chart without a schema
        schema_path = f"{chart}values.schema.json"
        if not schema_file.is_relative_to(root) or schema_file.stat().st_size > MAX_BYTES or len(data) > MAX_BYTES:
            message = f"values.yaml or values.schema.json is over {MAX_BYTES} bytes or outside the capsule: not checked"
            yield Finding("helm-values.invalid-schema", Severity.WARNING, message, schema_path, 1, 1)
            return
        try:
            schema = json.loads(schema_file.read_bytes())
        except ValueError as exc:
            yield Finding(
                "helm-values.invalid-schema", Severity.ERROR, f"not JSON: {clip(str(exc))}", schema_path, 1, 1
            )
            return
        docs, error = compose_all(data.decode("utf-8", "replace"))
        if error is not None:
            return  # the yaml validator reports it
        node = docs[0] if docs else None
        values = to_data(node) if node is not None else {}
        answer = _evaluate(schema, {} if values is None else values)
        if isinstance(answer, str):
            rule = "helm-values.timeout" if answer.startswith("took") else "helm-values.invalid-schema"
            yield Finding(rule, Severity.ERROR, answer, schema_path if rule.endswith("schema") else path, 1, 1)
            return
        if node is None:
            if answer:
                yield Finding("helm-values.schema", Severity.ERROR, f"(root): {answer[0].message}", path, 1, 1)
            return
        yield from _jsonschema.located("helm-values.schema", answer, node, path, HELM_SCHEMA_DOCS)


def _evaluate(schema: Any, values: Any) -> list[_jsonschema.SchemaError] | str:
    """The schema's errors on ``values``, computed in a child process with a time limit; or why there are none."""
    request = json.dumps({"schema": schema, "values": values}, default=str).encode()
    cmd = [sys.executable, "-I", "-m", __name__]
    try:
        done = subprocess.run(cmd, input=request, capture_output=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return f"took more than {TIMEOUT:g} s on values.yaml and was stopped (a pattern that backtracks?)"
    if done.returncode != 0:
        return "the schema could not be evaluated (the checking process failed)"
    answer = json.loads(done.stdout)
    if isinstance(answer, str):
        return answer
    return [_jsonschema.SchemaError(tuple(p), m, k, a) for p, m, k, a in answer]


def _work() -> None:
    """The child: a request on stdin, the errors (or one line saying why there are none) on stdout."""
    import jsonschema  # noqa: PLC0415 -- start-up: only the child process evaluates chart schemas
    import referencing.exceptions  # noqa: PLC0415 -- start-up: with jsonschema, in the child only

    request = json.loads(sys.stdin.buffer.read())
    schema = request["schema"]
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        found = _jsonschema.errors_of(cls(schema), request["values"])
        answer: Any = [[list(e.path), e.message, e.keyword, e.at_key] for e in found]
    except jsonschema.SchemaError as exc:
        answer = f"not a valid JSON Schema: {clip(exc.message)}"
    except referencing.exceptions.Unresolvable as exc:
        answer = f"a $ref that is not inside the schema is not fetched: {clip(str(exc))}"
    sys.stdout.write(json.dumps(answer, default=str))


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(HelmValuesValidator)


if __name__ == "__main__":
    _work()
