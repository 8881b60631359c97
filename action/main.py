"""The GitHub Action runtime: ``INPUT_*`` -> qlcapsule's Python API -> outputs, summary, annotations, SARIF.

Thin on purpose (black's pattern): every decision lives in the library. This
file reads the inputs, masks secrets, calls one command, and reports in the
places a workflow looks: ``$GITHUB_OUTPUT`` (digest, artifacts, urls, score,
report, report-file), ``$GITHUB_STEP_SUMMARY`` (Markdown), ``::error``/``::warning``
annotations on stdout, and an optional SARIF file.

``python action/main.py --extras`` prints the pip extras the targets need
(``s3,github``); it uses only the standard library, since it runs before
qlcapsule is installed.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

COMMANDS = ("ship", "validate", "verify", "export", "deliver")
EXTRAS = ("s3", "gcs", "azure", "github", "gitlab")
#: environment variables whose values are secrets: masked in the log and scrubbed by qlcapsule
SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSPHRASE|PRIVATE|CREDENTIAL|ACCESS_KEY|CONNECTION_STRING|SAS|_KEY$)", re.I
)
NOT_SECRET = frozenset(
    {"GITHUB_ACTION_PATH", "QLCAPSULE_ACTION_PATH", "QLCAPSULE_SIGNING_KEY", "GOOGLE_APPLICATION_CREDENTIALS"}
)
MAX_REPORT_OUTPUT = 512 * 1024


# -- inputs -----------------------------------------------------------------------


def get_input(env: Mapping[str, str], name: str, default: str = "") -> str:
    """An input as the runner passes it (``INPUT_FAIL-ON``), or with underscores (``INPUT_FAIL_ON``)."""
    key = "INPUT_" + name.upper().replace(" ", "_")
    for k in (key, key.replace("-", "_")):
        if k in env:
            return env[k].strip()
    return default


def split_list(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", text) if w]


def expand_paths(spec: str, cwd: Path) -> list[str]:
    """Capsule directories from ``path``: words, each a directory or a glob (``capsules/*``).

    A glob keeps only the directories holding a capsule.yaml; a plain word is
    kept as given, so a wrong path fails with qlcapsule's own clear message.
    """
    out: list[str] = []
    for word in split_list(spec) or ["."]:
        if glob.has_magic(word):
            hits = sorted(glob.glob(str(cwd / word), recursive=True))
            caps = [h for h in hits if os.path.isfile(os.path.join(h, "capsule.yaml"))]
            if not caps:
                raise SystemExit(_fail(f"path: {word!r} matches no capsule directory"))
            out += [os.path.relpath(h, cwd) for h in caps]
        else:
            out.append(word)
    return list(dict.fromkeys(out))


def needed_extras(env: Mapping[str, str], cwd: Path) -> list[str]:
    """Extras for the targets' providers, read from capsule.yaml without any YAML library."""
    wanted = set()
    names = set(split_list(get_input(env, "targets")))
    wanted |= names & set(EXTRAS)
    try:
        paths = expand_paths(get_input(env, "path", "."), cwd)
    except SystemExit:
        paths = []
    for p in paths:
        try:
            text = (cwd / p / "capsule.yaml").read_text(encoding="utf-8")
        except OSError:
            continue
        wanted |= set(re.findall(r"^\s*provider:\s*[\"']?([a-z0-9-]+)", text, re.M)) & set(EXTRAS)
    return sorted(wanted)


# -- the runner's files and workflow commands ----------------------------------------


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def set_output(path: str | None, name: str, value: str) -> None:
    """Append ``name`` to $GITHUB_OUTPUT with a random heredoc delimiter (multiline-safe)."""
    if not path:
        print(f"{name}={value}")
        return
    delim = f"ghadelimiter_{uuid.uuid4()}"
    while delim in value:
        delim = f"ghadelimiter_{uuid.uuid4()}"
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{name}<<{delim}\n{value}\n{delim}\n")


def mask_secrets(env: Mapping[str, str]) -> int:
    """``::add-mask::`` every secret-looking environment value, and have qlcapsule scrub it too."""
    from qlcapsule import redact

    n = 0
    for name, value in env.items():
        if name in NOT_SECRET or name.startswith(("INPUT_", "GITHUB_", "RUNNER_")) or len(value) < 4:
            continue
        if SECRET_NAME.search(name):
            for line in value.splitlines():
                if len(line.strip()) >= 4:
                    print(f"::add-mask::{line.strip()}")
            redact(value)
            n += 1
    return n


def _fail(message: str) -> int:
    print(f"::error title=qlcapsule::{escape_data(message)}")
    return 2


# -- running one command --------------------------------------------------------------


class Outcome:
    """What any command produced, in the shape the outputs and the summary need."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.capsules: list[dict[str, Any]] = []  # ref, path, digest, score, ok, error, artifacts, urls
        self.validation: Any = None  # a qlcapsule.validation.Report when findings were collected
        self.errors: list[tuple[str, str]] = []  # (file, message) for failures that are not findings
        self.report: dict[str, Any] = {}
        self.exit_code = 0

    @property
    def scores(self) -> list[float]:
        return [c["score"] for c in self.capsules if c.get("score") is not None]

    @property
    def findings(self) -> list[tuple[str, Any]]:
        if self.validation is None:
            return []
        return [(c.directory, f) for c in self.validation.capsules for f in c.findings]


def _capsule(ref: str, path: str, **kw: Any) -> dict[str, Any]:
    data = {
        "ref": ref,
        "path": path,
        "digest": None,
        "score": None,
        "ok": True,
        "error": None,
        "artifacts": [],
        "urls": [],
    }
    data.update(kw)
    return data


def run_ship(paths: list[str], env: Mapping[str, str]) -> Outcome:
    from qlcapsule.ship import ShipOptions, ship

    out = Outcome("ship")
    options = ShipOptions(
        formats=split_list(get_input(env, "formats")) or None,
        targets=split_list(get_input(env, "targets")) or None,
        fail_on=get_input(env, "fail-on") or None,
        min_score=_score_input(env),
        key_env="QLCAPSULE_KEY" if env.get("QLCAPSULE_KEY") else None,
    )
    refs: list[str] = []

    def progress(index: int, step: str, status: str, detail: str) -> None:
        if status not in ("running", "skipped"):
            who = refs[index] if index < len(refs) else str(index)
            print(f"{who}: {step}: {status}{': ' + detail if detail else ''}", flush=True)

    result = ship(paths, options, events=progress, on_plan=lambda cs: refs.extend(c.ref for c in cs))
    for c in result.capsules:
        out.capsules.append(
            _capsule(
                c.ref,
                c.path,
                digest=c.digest,
                score=c.score,
                ok=c.ok,
                error=c.error,
                artifacts=[a["path"] for a in c.artifacts],
                urls=c.urls,
            )
        )
        if c.error and not c.findings:
            out.errors.append((_rel(c.path, "capsule.yaml"), f"{c.ref}: {c.error}"))
    out.validation = result.validation_report()
    out.report = result.to_dict()
    out.exit_code = result.exit_code
    return out


def _rel(root: str, name: str) -> str:
    full = Path(root).resolve() / name
    try:
        return full.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return full.as_posix()


def _score_input(env: Mapping[str, str]) -> float | None:
    raw = get_input(env, "min-score")
    if not raw:
        return None
    from qlcapsule import InputError

    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"min-score: {raw!r} is not a number between 0 and 1") from None
    if not 0 <= value <= 1:
        raise InputError(f"min-score: {raw!r} is not between 0 and 1")
    return value


def run_validate(paths: list[str], env: Mapping[str, str]) -> Outcome:
    from qlcapsule.validation import validate_capsules

    out = Outcome("validate")
    report = validate_capsules(paths, fail_on=get_input(env, "fail-on") or None, min_score=_score_input(env))
    for c in report.capsules:
        ref = f"{c.name}@{c.version}" if c.name else c.directory
        out.capsules.append(_capsule(ref, c.directory, score=round(c.score, 4), ok=not c.failed))
    out.validation = report
    out.report = report.to_dict()
    out.exit_code = 1 if report.failed else 0
    return out


def run_verify(paths: list[str], env: Mapping[str, str]) -> Outcome:
    from qlcapsule import QlcapsuleError
    from qlcapsule.pipeline import verify_capsule

    out = Outcome("verify")
    for p in paths:
        try:
            r = verify_capsule(Path(p))
            out.capsules.append(_capsule(f"{r['capsule']}@{r['version']}", p, digest=r["digest"]))
        except QlcapsuleError as exc:
            out.capsules.append(_capsule(p, p, ok=False, error=exc.message))
            out.errors.append((_rel(p, "capsule.lock"), exc.message))
            out.exit_code = max(out.exit_code, exc.exit_code)
    out.report = {"ok": out.exit_code == 0, "capsules": out.capsules}
    return out


def run_export(paths: list[str], env: Mapping[str, str]) -> Outcome:
    from qlcapsule import Capsule
    from qlcapsule.exporting import export_capsule

    out = Outcome("export")
    outdir = Path(env.get("QLCAPSULE_OUTPUT") or "dist")
    outdir.mkdir(parents=True, exist_ok=True)
    for p in paths:
        capsule = Capsule.load(p)
        fmts = split_list(get_input(env, "formats")) or list(capsule.definition.ship.formats)
        results = [export_capsule(p, fmt, outdir) for fmt in fmts]
        out.capsules.append(_capsule(capsule.ref, p, digest=capsule.digest, artifacts=[str(r.path) for r in results]))
    out.report = {"ok": True, "capsules": out.capsules}
    return out


def run_deliver(paths: list[str], env: Mapping[str, str]) -> Outcome:
    from qlcapsule import Capsule
    from qlcapsule.delivery import deliver_capsule

    out = Outcome("deliver")
    formats = split_list(get_input(env, "formats")) or None
    for p in paths:
        capsule = Capsule.load(p)
        receipts = []
        for target in split_list(get_input(env, "targets")) or list(capsule.definition.ship.targets) or [None]:
            receipts += deliver_capsule(p, target, formats=formats)
        out.capsules.append(
            _capsule(
                capsule.ref,
                p,
                digest=capsule.digest,
                artifacts=[r.location for r in receipts],
                urls=[r.url for r in receipts if r.url],
            )
        )
    out.report = {"ok": True, "capsules": out.capsules, "receipts": [r.to_dict() for r in receipts]}
    return out


RUNNERS = {
    "ship": run_ship,
    "validate": run_validate,
    "verify": run_verify,
    "export": run_export,
    "deliver": run_deliver,
}


# -- reporting ---------------------------------------------------------------------


def annotation_lines(outcome: Outcome) -> list[str]:
    """``::error file=..,line=..::message`` per finding (qlcapsule's GitHub renderer) and per failure."""
    lines = []
    if outcome.validation is not None and outcome.validation.capsules:
        from qlcapsule.report import render_github

        lines += render_github(outcome.validation).splitlines()[:-1]  # the last line is a summary, not an annotation
    for file, message in outcome.errors:
        props = (f"file={escape_property(file)}," if file else "") + f"title=qlcapsule {outcome.command}"
        lines.append(f"::error {props}::{escape_data(message)}")
    return lines


def sarif_document(outcome: Outcome) -> dict[str, Any]:
    """SARIF 2.1.0 (URIs relative to the workspace); a run with no results when nothing was validated."""
    from qlcapsule.report import sarif
    from qlcapsule.validation import Report

    return sarif(outcome.validation if outcome.validation is not None else Report([]))


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_markdown(outcome: Outcome) -> str:
    ok = outcome.exit_code == 0
    lines = [f"## qlcapsule {outcome.command}: {'✅ passed' if ok else '❌ failed'}", ""]
    lines += ["| capsule | status | digest | score | artifacts |", "|---|---|---|---|---|"]
    for c in outcome.capsules:
        status = "✅ ok" if c["ok"] else f"❌ {c.get('error') or 'failed'}"
        digest = f"`sha256:{c['digest'][:16]}…`" if c.get("digest") else "–"
        score = f"{c['score']:.2f}" if c.get("score") is not None else "–"
        arts = "<br>".join(_cell(os.path.basename(a)) for a in c["artifacts"]) or "–"
        lines.append(f"| {_cell(c['ref'])} | {_cell(status)} | {digest} | {score} | {arts} |")
    if outcome.findings:
        lines += [
            "",
            f"### Findings ({len(outcome.findings)})",
            "",
            "| severity | location | rule | message |",
            "|---|---|---|---|",
        ]
        for root, f in outcome.findings[:100]:
            where = _rel(root, f.path or "capsule.yaml") + (f":{f.line}" if f.line else "")
            lines.append(f"| {f.severity.value} | `{_cell(where)}` | `{_cell(f.rule)}` | {_cell(f.message)} |")
        if len(outcome.findings) > 100:
            lines.append(f"\n…and {len(outcome.findings) - 100} more (see the report output).")
    return "\n".join(lines) + "\n"


def write_outputs(outcome: Outcome, env: Mapping[str, str], cwd: Path) -> None:
    gh_out = env.get("GITHUB_OUTPUT")
    set_output(gh_out, "digest", "\n".join(f"sha256:{c['digest']}" for c in outcome.capsules if c.get("digest")))
    set_output(gh_out, "artifacts", json.dumps([a for c in outcome.capsules for a in c["artifacts"]]))
    set_output(gh_out, "urls", json.dumps([u for c in outcome.capsules for u in c["urls"]]))
    scores = outcome.scores
    set_output(gh_out, "score", f"{min(scores):.4g}" if scores else "")
    full = json.dumps(outcome.report, default=str, sort_keys=True)
    report_dir = Path(env.get("RUNNER_TEMP") or cwd)
    report_file = report_dir / "qlcapsule-report.json"
    report_file.write_text(full + "\n", encoding="utf-8")
    if len(full) > MAX_REPORT_OUTPUT:
        full = json.dumps({"ok": outcome.exit_code == 0, "truncated": True, "report_file": str(report_file)})
    set_output(gh_out, "report", full)
    set_output(gh_out, "report-file", str(report_file))


# -- main -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ
    cwd = Path.cwd()
    if args == ["--extras"]:
        print(",".join(needed_extras(env, cwd)))
        return 0
    if args:
        print("usage: main.py [--extras]  (inputs come from INPUT_* environment variables)", file=sys.stderr)
        return 2

    from qlcapsule import QlcapsuleError
    from qlcapsule.errors import interruption
    from qlcapsule.log import scrub

    mask_secrets(env)
    command = get_input(env, "command", "ship") or "ship"
    if command not in COMMANDS:
        return _fail(f"command: {command!r} is not one of {', '.join(COMMANDS)}")
    try:
        paths = expand_paths(get_input(env, "path", "."), cwd)
        outcome = RUNNERS[command](paths, env)
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C, or qlcapsule.errors.Terminated (SIGTERM/SIGHUP)
        what, code = interruption(exc)
        print(f"::error title=qlcapsule {command}::{what}")
        return code
    except QlcapsuleError as exc:
        outcome = Outcome(command)
        outcome.errors.append(("", scrub(exc.message)))
        outcome.exit_code = exc.exit_code
        outcome.report = {"ok": False, "error": scrub(exc.message)}
    except Exception as exc:  # noqa: BLE001 - a bug still ends as one annotation, never a bare traceback
        print(
            f"::error title=qlcapsule {command}::{escape_data(scrub(f'internal error: {type(exc).__name__}: {exc}'))}"
        )
        return 70
    for line in annotation_lines(outcome):
        print(line)
    sarif_file = get_input(env, "sarif-file")
    if sarif_file:
        Path(sarif_file).parent.mkdir(parents=True, exist_ok=True)
        Path(sarif_file).write_text(json.dumps(sarif_document(outcome), indent=2) + "\n", encoding="utf-8")
    write_outputs(outcome, env, cwd)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(summary_markdown(outcome))
    return outcome.exit_code


if __name__ == "__main__":
    from qlcapsule.cli import on_termination

    on_termination()  # a cancelled workflow sends SIGINT, then SIGTERM: temp files go either way
    sys.exit(main())
