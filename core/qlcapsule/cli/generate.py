"""``new`` (generate a capsule from a template) and ``validate`` (findings and a score)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import DefinitionError, InputError, UsageError
from ._common import emit, is_ci, json_option, main


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    answers: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            shown = item if len(item) <= 80 else item[:77] + "..."
            raise InputError(f"--set {shown!r}: expected KEY=VALUE")
        answers[key.strip()] = value
    return answers


@main.command()
@click.argument("template")
@click.argument("directory", type=click.Path(path_type=str))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Answer a template question (repeatable).")
@click.option(
    "--answers-file",
    type=click.Path(dir_okay=False, path_type=str),
    help="YAML/JSON mapping of answers, or a capsule.yaml whose generator.answers to reuse.",
)
@click.option("--no-input", is_flag=True, help="Never prompt: unanswered questions take their defaults.")
@json_option
def new(
    template: str, directory: str, sets: tuple[str, ...], answers_file: str | None, no_input: bool, as_json: bool
) -> None:
    """Generate a capsule in DIRECTORY from TEMPLATE, record the answers, and seal it.

    TEMPLATE is a built-in template name (fastapi-service), a local template
    directory, or a git URL with an optional @REV
    (https://host/org/repo.git@v1.2.0, file:///srv/tpl.git@main).

    Answers come from --set, then --answers-file, then a prompt on a terminal;
    with --no-input the defaults are used. Without a terminal and without
    --no-input, a question with no answer is an error. DIRECTORY must not
    exist or be empty (an empty one, such as ., is filled in place); nothing
    is left behind when generation fails. A DIRECTORY already generated from
    TEMPLATE with the same answers is left as it is (exit 0, 'created': false
    in --json), so a script may run 'new' again.

    \b
    Exit codes: 0 generated and sealed, or generated already; 2 bad template, answer or directory;
    3 the template's git server failed.
    """
    from ..steps.generation import generated_already, new_capsule  # noqa: PLC0415 -- start-up: generation (pydantic, yaml) loads only in the commands that use it, not for --help

    answers = _parse_sets(sets)
    capsule = generated_already(template, directory, answers=answers, answers_file=answers_file)
    created = capsule is None
    if capsule is None:
        capsule = new_capsule(
            template, Path(directory), answers=answers, answers_file=answers_file, interactive=not no_input
        )
    gen = capsule.definition.generator
    data = {
        "directory": str(capsule.root),
        "capsule": capsule.name,
        "version": capsule.version,
        "digest": capsule.digest,
        "files": len(capsule.files()),
        "generator": gen.model_dump(exclude_none=True) if gen else None,
        "created": created,
    }
    source = f"{gen.template if gen else template}" + (f" {gen.version}" if gen and gen.version and not created else "")
    text = (
        f"generated {capsule.ref} in {directory} from {source} ({data['files']} files, sha256:{data['digest']})"
        if created
        else f"{directory}: {capsule.ref} was generated from {source} with these answers already: nothing to do, "
        f"no file touched ('qlcapsule update {directory}' re-renders it from a newer template)"
    )
    emit(as_json, data, text)


@main.command()
@click.argument("sources", nargs=-1, metavar="[TEMPLATE]...")
@json_option
def templates(sources: tuple[str, ...], as_json: bool) -> None:
    """List templates for 'qlcapsule new' with their questions.

    Without TEMPLATE, every template the generators offer by name (the
    built-ins); with TEMPLATE (a name, a template directory or a git
    URL@REV, as 'new' takes it), that template. Nothing is rendered.

    \b
    Exit codes: 0 listed; 2 a TEMPLATE that is not a template;
    3 the template's git server failed.
    """

    from ..steps.generation import describe_templates  # noqa: PLC0415 -- start-up: generation (pydantic, yaml) loads only in the commands that use it, not for --help
    from ._text import print_table  # noqa: PLC0415 -- start-up: the click group (click) loads only in the commands that use it, not for --help

    infos = describe_templates(sources)

    def text() -> None:
        styled = sys.stdout.isatty() and not is_ci()
        for i, info in enumerate(infos):
            if i:
                click.echo()
            where = "built-in" if not sources else info.source
            version = f" {info.version}" if info.version else ""
            click.echo(f"{info.template}{version} ({where}, generator {info.generator})")
            if info.description:
                click.echo(f"  {info.description}")
            rows = [
                (
                    str(q["name"]),
                    str(q["type"]) + (f" ({' | '.join(map(str, q['choices']))})" if q["choices"] else ""),
                    "-" if q["default"] is None else json.dumps(q["default"], default=str),
                    " ".join(
                        filter(None, [str(q["help"]), f"(asked when {q['when']})" if q["when"] is not None else ""])
                    )
                    or "-",
                )
                for q in info.questions
            ]
            if rows:
                print_table(("question", "type", "default", "help"), rows, styled=styled)
            else:
                click.echo("  (no questions)")
        if not infos:
            click.echo("no templates (pass a template directory or git URL to describe it)")

    emit(as_json, [info.to_dict() for info in infos], text)


@main.command()
@click.argument("directories", nargs=-1, type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "sarif", "github"]),
    default="text",
    show_default=True,
    help="Report format: text, JSON, SARIF 2.1.0 (GitHub code scanning) or GitHub workflow annotations.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=str), help="Write the report to FILE instead of stdout."
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning", "never"]),
    help="Fail on findings of this severity or worse (default: capsule.yaml validate.fail_on, else error).",
)
@click.option("--min-score", type=click.FloatRange(0.0, 1.0), help="Fail when a capsule's score is below this (0..1).")
@click.option("-r", "--recursive", is_flag=True, help="Validate every capsule found below each DIRECTORY.")
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 256), help="Worker processes for many capsules (default: CPU count)."
)
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False, path_type=str),
    help="A JSON report of an earlier run: its findings are left out, only new ones count.",
)
@click.option(
    "--engines", is_flag=True, help="List the engines validators run, their versions and what is missing, and exit."
)
@json_option
def validate(
    directories: tuple[str, ...],
    fmt: str,
    output: str | None,
    fail_on: str | None,
    min_score: float | None,
    recursive: bool,
    jobs: int | None,
    baseline: str | None,
    engines: bool,
    as_json: bool,
) -> None:
    """Run every applicable validator over each capsule DIRECTORY (default: .) and score it.

    The score is 0..1 per validator (1 / (1 + errors + warnings/4 + notes/20)),
    averaged per capsule; see docs/validation.md. Rules are switched off in
    capsule.yaml under validate.rules. --format chooses the report written to
    stdout or -o FILE; --json prints the one JSON answer instead, the report
    (as --format json) being its result.

    \b
    Exit codes: 0 passed; 1 a finding at or above --fail-on, or a score below
    --min-score (with --engines: an engine of the default install is missing);
    2 bad input (no such directory, a missing or malformed capsule.yaml, bad option).
    """
    from ..steps.report import render, write  # noqa: PLC0415 -- start-up: the report loads only in the commands that use it, not for --help
    from ..steps.validation import engines_table, find_capsules, validate_capsules  # noqa: PLC0415 -- start-up: validation loads only in the commands that use it, not for --help

    if engines:
        data, text, broken = engines_table()
        emit(as_json, data, text)
        raise SystemExit(1 if broken else 0)

    if as_json and fmt != "text" and output in (None, "-"):
        raise UsageError(f"--json prints the answer on stdout; write the --format {fmt} report with -o FILE")
    dirs = list(directories) or ["."]
    if recursive:
        found = [str(p) for d in dirs for p in find_capsules(Path(d))]
        if not found:
            raise InputError(f"no capsule.yaml found below {', '.join(dirs)}")
        dirs = found
    report = validate_capsules(dirs, fail_on=fail_on, min_score=min_score, jobs=jobs, baseline=baseline)
    if output not in (None, "-") or not as_json:
        write(render(report, fmt), output)
    if output not in (None, "-"):
        n = report.counts()
        click.echo(
            f"wrote {output}: {n['error']} error(s), {n['warning']} warning(s), score {report.score:.2f}; "
            f"{'FAILED' if report.failed else 'passed'}",
            err=True,
        )
    emit(as_json, report.to_dict())
    refuse_unreadable(report)
    if report.failed:
        raise SystemExit(1)


def refuse_unreadable(report: Any) -> None:
    """Bad input (exit 2) when a capsule's capsule.yaml is missing or malformed.

    The report already lists each of its errors as a ``schema.invalid`` finding (annotations, SARIF);
    the error raised here names them again with file, line and key: the error validation met loading
    it (the one validator, the model, from the capsule directory as the user named it), not a second read.
    """
    failed = [c.definition_error for c in report.capsules if c.definition_error is not None]
    if len(failed) == 1:
        raise failed[0]
    if failed:
        combined = DefinitionError(
            "\n".join(e.message for e in failed), file=failed[0].file, line=failed[0].line, key=failed[0].key
        )
        combined.problems = [p for e in failed for p in getattr(e, "problems", ())]  # type: ignore[attr-defined]
        raise combined
