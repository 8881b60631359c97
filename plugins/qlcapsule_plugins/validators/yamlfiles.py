"""The ``yaml`` validator: YAML files parse, and no mapping repeats a key.

Custom tags (GitLab's ``!reference``, CloudFormation's ``!Ref``...) are
tolerated. Multi-document files are checked document by document. Files under a Helm
chart's ``templates/`` are Go templates and are skipped.
"""

from __future__ import annotations

from typing import Iterable

from qlcapsule import Capsule, Finding, Register, Rule, Severity, Validator, hookimpl, quote

from ._yaml import compose_all, duplicate_keys, helm_template


class YamlValidator(Validator):
    name = "yaml"
    description = "YAML files parse; no duplicate keys (custom tags tolerated)"
    patterns = ("*.yml", "*.yaml")
    rules = (
        Rule("yaml.syntax", "the file is not valid YAML", Severity.ERROR),
        Rule("yaml.duplicate-key", "a mapping repeats a key (YAML loaders silently keep the last one)", Severity.ERROR),
        Rule("yaml.encoding", "the file is not UTF-8", Severity.ERROR),
    )

    def check_file(self, capsule: Capsule, path: str, data: bytes) -> Iterable[Finding]:
        if helm_template(capsule, path):
            return  # Go templates, not YAML until Helm renders them
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Finding("yaml.encoding", Severity.ERROR, f"not UTF-8 (byte {exc.start})", path, 1, 1)
            return
        docs, error = compose_all(text)
        if error is not None:
            yield Finding(
                "yaml.syntax", Severity.ERROR, f"invalid YAML: {error.message}", path, error.line, error.column
            )
        for doc in docs:
            for key, line, column, first in duplicate_keys(doc):
                yield Finding(
                    "yaml.duplicate-key",
                    Severity.ERROR,
                    f"duplicate key {quote(key)} (first at line {first})",
                    path,
                    line,
                    column,
                )


@hookimpl
def qlcapsule_register_validators(register: Register) -> None:
    register(YamlValidator)
