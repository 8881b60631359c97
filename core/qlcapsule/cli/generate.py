"""``new`` (generate a capsule from a template) and ``validate`` (findings and a score)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError
from ._common import emit, json_option, main


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
    is left behind when generation fails.

    \b
    Exit codes: 0 generated and sealed; 2 bad template, answer or directory;
    3 the template's git server failed.
    """
    from ..steps.generation import new_capsule

    capsule = new_capsule(
        template, Path(directory), answers=_parse_sets(sets), answers_file=answers_file, interactive=not no_input
    )
    gen = capsule.definition.generator
    data = {
        "directory": str(capsule.root),
        "capsule": capsule.name,
        "version": capsule.version,
        "digest": capsule.digest,
        "files": len(capsule.files()),
        "generator": gen.model_dump(exclude_none=True) if gen else None,
    }
    text = (
        f"generated {capsule.ref} in {directory} from {gen.template if gen else template} "
        f"({data['files']} files, sha256:{data['digest']})"
    )
    emit(as_json, data, text)


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
    capsule.yaml under validate.rules.

    \b
    Exit codes: 0 passed; 1 a finding at or above --fail-on, or a score below
    --min-score (with --engines: an engine of the default install is missing);
    2 bad input (no such directory, bad option).
    """
    from ..steps.report import render, write
    from ..steps.validation import engines_table, find_capsules, validate_capsules

    if engines:
        data, text, broken = engines_table()
        emit(as_json, data, text)
        raise SystemExit(1 if broken else 0)

    dirs = list(directories) or ["."]
    if recursive:
        found = [str(p) for d in dirs for p in find_capsules(Path(d))]
        if not found:
            raise InputError(f"no capsule.yaml found below {', '.join(dirs)}")
        dirs = found
    report = validate_capsules(dirs, fail_on=fail_on, min_score=min_score, jobs=jobs, baseline=baseline)
    write(render(report, "json" if as_json else fmt), output)
    if output not in (None, "-"):
        n = report.counts()
        click.echo(
            f"wrote {output}: {n['error']} error(s), {n['warning']} warning(s), score {report.score:.2f}; "
            f"{'FAILED' if report.failed else 'passed'}",
            err=True,
        )
    if report.failed:
        raise SystemExit(1)
