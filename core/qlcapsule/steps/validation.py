"""Validation: run every applicable validator over capsules and score the result.

What runs: every registered validator, except those switched off in
capsule.yaml (``validate.rules: {python: false}`` turns a validator off,
``{python.warning: false}`` one rule; a rule switch beats its validator's). A
severity in place of ``true`` (``{zizmor.unpinned-uses: error}``) keeps the rule
on and reports its findings with that severity.
Findings of a rule switched off are counted (``suppressed``); a validator
switched off does not run, so it is listed (``disabled``) when it would have
applied, its findings uncounted. A validator applies to a capsule when it
checks the capsule as a whole, or when at least one file matches its ``patterns``.

Every finding's message has its secrets hidden (``***``, by the secrets
validator's patterns) and is cut to :data:`MAX_MESSAGE_CHARS` before it is
reported, whichever validator wrote it.

Score (documented in docs/validation.md), per validator::

    score_v = 1 / (1 + E + W/4 + N/20)

where E, W, N count its errors, warnings and notes in that capsule (one error
-> 0.5, one warning -> 0.8, one note -> 0.95). A capsule's score is the mean of
``score_v`` over the validators that applied; a run's score is the lowest
capsule score. A capsule.yaml that cannot be loaded scores 0.

Many capsules are validated in parallel in worker processes, each a batch of
capsules: parsing (YAML, Python ``compile``, regexes) holds the GIL, so threads
would use one core. The validators that run engines (subprocesses such as zizmor
and hadolint) get the files of a whole batch in one call
(``Validator.check_files``), so an engine starts once per batch, not once per
file; the engines of a batch run side by side in a few threads while the Python
validators check the same files.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import DefinitionError, InputError, OptionsError, QlcapsuleError, parse_json
from ..format.capsule import Capsule
from ..format.globs import compile_glob
from ..format.tree import walk
from ..log import event, get_logger, scrub
from ..plugins.components import FileToCheck, Validator
from ..plugins.findings import Engine, Finding, Rule, Severity, meets, redact_secrets

log = get_logger("validation")

#: files larger than this are not handed to file validators (they are still sealed)
MAX_FILE_BYTES = 10 * 1024 * 1024
WEIGHTS = {Severity.ERROR: 1.0, Severity.WARNING: 0.25, Severity.NOTE: 0.05}
_SKIP_DIRS = {".git", ".hg", ".svn", ".venv", "node_modules", "__pycache__", ".tox", ".nox"}


def validator_score(findings: Iterable[Finding]) -> float:
    """``1 / (1 + E + W/4 + N/20)`` for one validator's findings."""
    return 1.0 / (1.0 + sum(WEIGHTS[f.severity] for f in findings))


@dataclass
class ValidatorSummary:
    name: str
    score: float
    errors: int = 0
    warnings: int = 0
    notes: int = 0
    files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "errors": self.errors,
            "warnings": self.warnings,
            "notes": self.notes,
            "files": self.files,
        }


@dataclass
class CapsuleReport:
    """Findings and scores for one capsule directory."""

    directory: str
    name: str | None = None
    version: str | None = None
    findings: list[Finding] = field(default_factory=list)
    validators: dict[str, ValidatorSummary] = field(default_factory=dict)
    #: findings of rules switched off in capsule.yaml (their validator ran)
    suppressed: int = 0
    #: validators switched off in capsule.yaml that would have applied (they did not run)
    disabled: list[str] = field(default_factory=list)
    #: findings left out because the operator's baseline (``--baseline``) holds them
    baselined: int = 0
    fail_on: str = "error"
    min_score: float = 0.0
    #: why capsule.yaml could not be loaded (its errors are the ``schema.invalid`` findings too); not reported
    definition_error: QlcapsuleError | None = field(default=None, repr=False, compare=False)

    @property
    def score(self) -> float:
        if any(f.rule == "schema.invalid" for f in self.findings):
            return 0.0
        if not self.validators:
            return 1.0
        return sum(v.score for v in self.validators.values()) / len(self.validators)

    @property
    def failed(self) -> bool:
        return any(meets(f.severity, self.fail_on) for f in self.findings) or self.score < self.min_score

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for f in self.findings if f.severity is s) for s in Severity}

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "name": self.name,
            "version": self.version,
            "score": round(self.score, 4),
            "passed": not self.failed,
            "fail_on": self.fail_on,
            "min_score": self.min_score,
            "counts": self.counts(),
            "suppressed": self.suppressed,
            "baselined": self.baselined,
            "disabled": self.disabled,
            "validators": {n: v.to_dict() for n, v in sorted(self.validators.items())},
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class Report:
    """The result of one ``validate`` run."""

    capsules: list[CapsuleReport]
    #: every rule of every validator that ran: id -> (rule, validator name)
    rules: dict[str, tuple[Rule, str]] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return min((c.score for c in self.capsules), default=1.0)

    @property
    def failed(self) -> bool:
        return any(c.failed for c in self.capsules)

    @property
    def findings(self) -> list[Finding]:
        return [f for c in self.capsules for f in c.findings]

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for f in self.findings if f.severity is s) for s in Severity}

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "passed": not self.failed,
            "counts": self.counts(),
            "capsules": [c.to_dict() for c in self.capsules],
        }


# -- one capsule ----------------------------------------------------------------


def _validators() -> list[Validator]:
    from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only when validators run (the report imports this module)

    reg = registry()
    return [cls() for cls in reg.all("validator")]  # type: ignore[misc]


def _switch(rules: dict[str, bool | str], rule: str, validator: str) -> bool | str:
    """A rule's setting: on (True), off (False) or the severity its findings take; a rule's beats its validator's."""
    if rule in rules:
        return rules[rule]
    return rules.get(validator, True)


def _definition_finding(exc: QlcapsuleError, directory: str) -> Finding:
    """``schema.invalid`` from a one-line definition error ``path:LINE: message``."""
    message = exc.message
    line = None
    prefix = str(Path(directory) / "capsule.yaml")
    for candidate in (str((Path(directory) / "capsule.yaml").resolve()), prefix):
        if message.startswith(candidate):
            rest = message[len(candidate) :]
            if rest.startswith(":") and rest[1:].split(":", 1)[0].isdigit():
                num, _, rest = rest[1:].partition(":")
                line = int(num)
            message = rest.lstrip(": ").strip() or message
            break
    return Finding("schema.invalid", Severity.ERROR, message, "capsule.yaml", line, validator="schema")


def validate_one(
    directory: str | Path,
    *,
    fail_on: str | None = None,
    min_score: float | None = None,
    validators: Sequence[Validator] | None = None,
) -> CapsuleReport:
    """Validate one capsule directory; never raises for what is wrong *inside* the capsule."""
    return validate_batch([directory], fail_on=fail_on, min_score=min_score, validators=validators)[0]


def validate_batch(
    directories: Sequence[str | Path],
    *,
    fail_on: str | None = None,
    min_score: float | None = None,
    validators: Sequence[Validator] | None = None,
) -> list[CapsuleReport]:
    """Validate capsule directories in this process, one report each, in order.

    Each capsule's own checks run as it is read; the files of validators that run engines
    are gathered across the capsules and handed to each such validator in batches
    (:meth:`Validator.check_files`), so zizmor or hadolint starts once per batch rather
    than once per file. The engines of a batch run side by side in threads.
    """
    every = list(validators) if validators is not None else _validators()
    batch = _EngineBatch()
    opened: list[_Open | CapsuleReport] = []
    for d in directories:
        try:
            opened.append(_open(str(d), fail_on, min_score, every, batch))
        except QlcapsuleError as exc:
            opened.append(_unreadable(str(d), exc))
        if batch.nbytes > MAX_BATCH_BYTES:
            batch.run()
    batch.run()
    return [o if isinstance(o, CapsuleReport) else _close(o) for o in opened]


@dataclass
class _Open:
    """A capsule between its own checks and its engines' answers."""

    report: CapsuleReport
    capsule: Capsule
    active: list[Validator]
    switches: dict[str, bool | str]
    raw: dict[str, list[Finding]]
    applied: dict[str, int]
    skipped: set[str]


def _unreadable(directory: str, exc: QlcapsuleError) -> CapsuleReport:
    rep = CapsuleReport(directory)
    rep.findings.append(Finding("qlcapsule.load", Severity.ERROR, _clean(exc.message), None, validator="schema"))
    rep.validators["schema"] = ValidatorSummary("schema", 0.0, errors=1)
    return rep


def _open(
    directory: str, fail_on: str | None, min_score: float | None, every: list[Validator], batch: _EngineBatch
) -> _Open | CapsuleReport:
    """Load a capsule and run its own checks; its engine-backed file checks go to ``batch``."""
    report = CapsuleReport(directory, fail_on=fail_on or "error", min_score=min_score or 0.0)
    try:
        capsule = Capsule.load(directory)
    except DefinitionError as exc:
        report.definition_error = exc
        problems = getattr(exc, "problems", None)  # model.SchemaError: every error of capsule.yaml, one finding each
        if problems:
            for p in problems:
                report.findings.append(
                    Finding(
                        "schema.invalid",
                        Severity.ERROR,
                        f"{p.key}: {p.message}",
                        "capsule.yaml",
                        p.line,
                        validator="schema",
                    )
                )
        else:
            report.findings.append(_definition_finding(exc, directory))
        _sanitize(report.findings)
        report.validators["schema"] = ValidatorSummary("schema", 0.0, errors=len(report.findings))
        return report
    rules, cfg_fail_on, cfg_min_score = capsule.validate_settings()
    report.name, report.version = capsule.name, capsule.version
    report.fail_on = fail_on or cfg_fail_on
    report.min_score = cfg_min_score if min_score is None else min_score
    switches = dict(rules)
    # a validator switched off still runs when one of its rules is switched back on
    active = [v for v in every if switches.get(v.name, True) or any(switches.get(r.id) for r in v.rules)]
    known = {v.name for v in every} | {r.id for v in every for r in v.rules}
    raw: dict[str, list[Finding]] = {v.name: [] for v in active}
    applied: dict[str, int] = {v.name: 0 for v in active if type(v).check_capsule is not Validator.check_capsule}
    # an engine's rules are open-ended (hadolint's DL/SC codes): any "<validator>.<id>" of a validator with engines
    open_ended = {v.name for v in every if _runs_engines(v)}
    for key in sorted(switches):
        if key not in known and key.split(".", 1)[0] not in open_ended and "schema" in raw:
            raw["schema"].append(
                Finding(
                    "schema.unknown-rule",
                    Severity.WARNING,
                    f"validate.rules: {key!r} names no known validator or rule",
                    "capsule.yaml",
                )
            )
    if "schema" in raw:
        raw["schema"].extend(_export_settings(capsule))
    off = [v for v in every if v not in active]
    matchers = [(v, [compile_glob(p).regex for p in v.patterns]) for v in active + off if v.patterns]
    skipped: set[str] = {v.name for v in off if type(v).check_capsule is not Validator.check_capsule}
    for entry in walk(capsule.root, capsule.globs()):
        wanted = [v for v, regexes in matchers if any(r.fullmatch(entry.path) for r in regexes)]
        skipped.update(v.name for v in wanted if v in off)
        wanted = [v for v in wanted if v not in off]
        if not wanted or entry.size > MAX_FILE_BYTES:
            continue
        try:
            data = (capsule.root / entry.path).read_bytes()
        except OSError as exc:
            raise InputError(f"{capsule.root / entry.path}: cannot read: {exc.strerror}") from None
        for v in wanted:
            applied[v.name] = applied.get(v.name, 0) + 1
            if _runs_engines(v):
                batch.add(v, FileToCheck(capsule, entry.path, data), raw[v.name])
            else:
                call = lambda v=v, p=entry.path, d=data: v.check_file(capsule, p, d)  # noqa: E731
                batch.add_local(v, entry.path, call, raw[v.name], len(data))
    for v in active:
        if type(v).check_capsule is not Validator.check_capsule:
            batch.add_local(v, None, lambda v=v: v.check_capsule(capsule), raw[v.name])
    return _Open(report, capsule, active, switches, raw, applied, skipped)


def _close(o: _Open) -> CapsuleReport:
    """The report of a capsule whose engines have answered: switches and severities applied, scored."""
    report = o.report
    for v in o.active:
        if v.name not in o.applied:
            continue
        o.raw[v.name].extend(_missing_engines(v))
        # a declared rule's help page goes with each of its findings (an engine's own, in extra, is kept), so
        # a report read without the rules table (ship --json, the catalog) still links the rule's help
        helps = {r.id: r.help_uri for r in v.rules if r.help_uri}
        kept = []
        for f in o.raw[v.name]:
            f.validator = f.validator or v.name
            if f.rule in helps:
                f.extra.setdefault("help_uri", helps[f.rule])
            setting = _switch(o.switches, f.rule, v.name)
            if setting is False:
                report.suppressed += 1
                continue
            if isinstance(setting, str):
                f.severity = Severity(setting)  # validate.rules: {zizmor.unpinned-uses: error}
            kept.append(f)
        summary = ValidatorSummary(v.name, validator_score(kept), files=o.applied[v.name])
        for f in kept:
            setattr(summary, f"{f.severity.value}s", getattr(summary, f"{f.severity.value}s") + 1)
        report.validators[v.name] = summary
        report.findings.extend(kept)
    report.disabled = sorted(o.skipped)
    report.findings.sort(key=lambda f: ((f.path or "").encode("utf-8"), f.line or 0, f.column or 0, f.rule))
    _sanitize(report.findings)
    for f in report.findings:
        f.capsule = o.capsule.ref
    return report


def _runs_engines(v: Validator) -> bool:
    return type(v).engines is not Validator.engines


class _EngineBatch:
    """The file checks of a batch of capsules, gathered until :meth:`run`.

    A validator that runs engines gets its files in one :meth:`Validator.check_files` call (a
    plugin may split it further); those validators run side by side in at most
    :data:`ENGINE_THREADS` threads, as their engines are mostly other processes (zizmor,
    hadolint) that a thread only waits for, while this thread runs the Python validators'
    checks of the same files and the whole-capsule checks (the lock, the signature).
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[Validator, list[FileToCheck], list[list[Finding]]]] = {}
        self._local: list[tuple[Validator, str | None, Any, list[Finding]]] = []
        self.nbytes = 0

    def add(self, v: Validator, file: FileToCheck, into: list[Finding]) -> None:
        """Check ``file`` with ``v``'s engines at the next :meth:`run`, its findings appended to ``into``."""
        _, files, sinks = self._files.setdefault(v.name, (v, [], []))
        files.append(file)
        sinks.append(into)
        self.nbytes += len(file.data)

    def add_local(self, v: Validator, path: str | None, call: Any, into: list[Finding], nbytes: int = 0) -> None:
        """Run ``call`` (``v``'s check of ``path``, or of the capsule when None) in this thread at the next
        :meth:`run`."""
        self._local.append((v, path, call, into))
        self.nbytes += nbytes

    def run(self) -> None:
        pending, self._files = list(self._files.values()), {}
        local, self._local, self.nbytes = self._local, [], 0
        pool = None
        if pending:
            from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 -- start-up: concurrent.futures loads only when engines run

            pool = ThreadPoolExecutor(min(ENGINE_THREADS, len(pending)), thread_name_prefix="qlcapsule-engine")
        try:
            futures = [pool.submit(_run_files, v, files) for v, files, _ in pending] if pool else []
            for v, path, call, into in local:
                into.extend(_run(v, path, call))
            for (_, _, sinks), future in zip(pending, futures, strict=True):
                for sink, findings in zip(sinks, future.result(), strict=True):
                    sink.extend(findings)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


#: validators (engines) running at once on one batch
ENGINE_THREADS = 4
#: capsules one worker validates as one batch (engines start once per batch)
MAX_BATCH_CAPSULES = 64
#: file bytes gathered for engines before they run (a bound on memory, not a tuning knob)
MAX_BATCH_BYTES = 64 * 1024 * 1024


def _run_files(v: Validator, files: list[FileToCheck]) -> list[list[Finding]]:
    """``v.check_files(files)`` as one finding list per file, each capped like :func:`_run`'s."""
    try:
        answers = v.check_files(files)
        out: list[list[Finding]] = []
        for f, found in zip(files, answers, strict=False):  # a short answer: said below
            out.append(_run(v, f.path, lambda found=found: found))
    except QlcapsuleError as exc:
        return [[Finding(f"{v.name}.failed", Severity.ERROR, exc.message, f.path, validator=v.name)] for f in files]
    except Exception as exc:  # noqa: BLE001 - a broken validator is a finding, not a crash of the run
        msg = f"validator {v.name!r} crashed: {type(exc).__name__}: {exc}"
        return [[Finding(f"{v.name}.failed", Severity.ERROR, msg, f.path, validator=v.name)] for f in files]
    if len(out) != len(files):
        msg = f"validator {v.name!r} answered for {len(out)} of {len(files)} files"
        out += [[Finding(f"{v.name}.failed", Severity.ERROR, msg, f.path, validator=v.name)] for f in files[len(out) :]]
    return out


def _missing_engines(v: Validator) -> list[Finding]:
    """A warning per engine ``v`` needs that is not installed: checking less is never silent."""
    try:
        engines = list(v.engines())
    except Exception as exc:  # noqa: BLE001 - a broken engine probe is a finding, not a crash of the run
        return [Finding(f"{v.name}.failed", Severity.ERROR, f"engine probe crashed: {exc}", validator=v.name)]
    return [
        Finding(
            f"{v.name}.engine-missing",
            Severity.WARNING,
            f"{e.name} is not installed, so {e.purpose} did not run (install it: {e.install})",
            validator=v.name,
        )
        for e in engines
        if not e.present and not e.optional
    ]


def engine_status() -> list[tuple[str, Engine]]:
    """``(validator, engine)`` for every engine of every registered validator (``validate --engines``)."""
    return [(v.name, e) for v in _validators() for e in v.engines()]


def engines_table() -> tuple[list[dict[str, Any]], str, bool]:
    """``validate --engines``: each engine once (JSON rows, text), and whether a default-install one is missing."""
    rows: dict[str, dict[str, Any]] = {}
    for validator, e in engine_status():
        row = rows.setdefault(
            e.name,
            {
                "engine": e.name,
                "present": e.present,
                "version": e.version,
                "optional": e.optional,
                "install": e.install,
                "purpose": e.purpose,
                "validators": [],
            },
        )
        row["validators"].append(validator)
    lines = []
    for row in rows.values():
        if row["present"]:
            state = row["version"]
        else:
            state = f"MISSING{' (optional)' if row['optional'] else ''}: {row['install']}"
        lines.append(f"{row['engine']}: {state} [{', '.join(row['validators'])}] - {row['purpose']}")
    broken = any(not r["present"] and not r["optional"] for r in rows.values())
    return list(rows.values()), "\n".join(lines) or "no validator runs an external engine", broken


#: the longest message a finding keeps; validators quote at most ~120 characters of source
#: (:func:`qlcapsule.plugins.findings.quote`), this bounds what a third-party one might paste
MAX_MESSAGE_CHARS = 1000


def _clean(text: str) -> str:
    text = redact_secrets(scrub(text))
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _sanitize(findings: Iterable[Finding]) -> None:
    """Hide secrets in every finding, whichever validator wrote it (the README's promise).

    A validator that quotes a line (a requirement with a token in its URL, a pasted
    token read as a Dockerfile instruction) would otherwise print what the secrets
    validator reports as "value not shown". Done here, once, third-party validators
    are covered too.
    """
    for f in findings:
        f.message = _clean(f.message)
        if f.extra:
            f.extra = {k: _clean(v) if isinstance(v, str) else v for k, v in f.extra.items()}


def _export_settings(capsule: Capsule) -> list[Finding]:
    """capsule.yaml ``exports``: each key an installed exporter, each value options it accepts.

    Otherwise a typo (``zpi:``) is silently ignored and a bad value shows up
    only when that format is exported, perhaps in the middle of ``ship``.
    """
    exports = capsule.setting("exports", {})
    if not isinstance(exports, dict) or not exports:
        return []
    from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only when validators run (the report imports this module)

    reg = registry()
    names = reg.names("exporter")
    found: list[Finding] = []
    for key in sorted(exports):
        if key not in names:
            found.append(
                Finding(
                    "schema.unknown-exporter",
                    Severity.WARNING,
                    f"exports.{key}: no installed exporter is named {key!r} (installed: {', '.join(names)})",
                    "capsule.yaml",
                )
            )
            continue
        try:
            reg.get("exporter", key, runnable=False).from_options(exports[key], where=f"exports.{key}")
        except OptionsError as exc:
            found.append(Finding("schema.export-options", Severity.ERROR, exc.message, "capsule.yaml"))
    return found


#: findings kept per file and validator; past it, one note says the rest were not listed (a binary
#: file named requirements.txt once gave 235,000 findings, 18 s and 671 MB)
MAX_FINDINGS_PER_FILE = 200


def _run(v: Validator, path: str | None, call: Any) -> list[Finding]:
    try:
        if path is None:
            return list(call())
        found: list[Finding] = []
        for finding in call():
            if len(found) == MAX_FINDINGS_PER_FILE:
                found.append(
                    Finding(
                        finding.rule,
                        Severity.NOTE,
                        f"more findings in this file are not listed (stopped after {MAX_FINDINGS_PER_FILE})",
                        path,
                        validator=v.name,
                    )
                )
                break  # and stop the validator's work on this file
            found.append(finding)
        return found
    except QlcapsuleError as exc:
        return [Finding(f"{v.name}.failed", Severity.ERROR, exc.message, path, validator=v.name)]
    except Exception as exc:  # noqa: BLE001 - a broken validator is a finding, not a crash of the run
        msg = f"validator {v.name!r} crashed: {type(exc).__name__}: {exc}"
        return [Finding(f"{v.name}.failed", Severity.ERROR, msg, path, validator=v.name)]


# -- many capsules --------------------------------------------------------------


def find_capsules(root: Path) -> list[Path]:
    """Every directory under ``root`` holding a capsule.yaml (not descending into capsules)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if "capsule.yaml" in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
    return sorted(found)


def _worker(args: tuple[list[str], str | None, float | None]) -> list[CapsuleReport]:
    directories, fail_on, min_score = args
    return validate_batch(directories, fail_on=fail_on, min_score=min_score)


def _single_threaded() -> bool:
    """True when this process runs one OS thread (threads started by C code count too)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _pool_context() -> Any:
    import multiprocessing  # noqa: PLC0415 -- start-up: multiprocessing loads only to validate in parallel

    # fork starts workers in milliseconds and inherits the loaded plugins; macOS and
    # Windows lack a safe fork, so they spawn. A process that already runs other
    # threads (an embedding server, pytest-xdist) spawns too: a fork there can copy
    # a lock some other thread holds and hang the child.
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods() and _single_threaded():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


#: the largest baseline file read (a JSON report of many capsules stays far below it)
MAX_BASELINE_BYTES = 64 * 1024 * 1024
Fingerprint = tuple[Any, Any, Any, Any]


def load_baseline(path: str | Path) -> Counter[Fingerprint]:
    """The findings of a JSON report (``validate --format json``) as fingerprints to leave out.

    A finding is known by its capsule's name, its file, its rule and its message, not its line
    (lines move as a file is edited); the same fingerprint twice leaves out two findings.
    """

    where = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BASELINE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{where}: cannot read the baseline: {exc.strerror}") from None
    if len(raw) > MAX_BASELINE_BYTES:
        raise InputError(f"{where}: a baseline larger than {MAX_BASELINE_BYTES} bytes is not read")
    data = parse_json(raw, where, InputError)
    capsules = data.get("capsules") if isinstance(data, dict) else None
    if not isinstance(capsules, list):
        raise InputError(f"{where}: not a report written by 'qlcapsule validate --format json' (no 'capsules' list)")
    prints: Counter[Fingerprint] = Counter()
    for c in capsules:
        for f in (c.get("findings") or []) if isinstance(c, dict) else []:
            if isinstance(f, dict):
                prints[(c.get("name"), f.get("path"), f.get("rule"), f.get("message"))] += 1
    return prints


def apply_baseline(report: Report, baseline: Counter[Fingerprint]) -> None:
    """Leave out the findings ``baseline`` holds (counted in ``baselined``); only new ones count and fail."""
    left = Counter(baseline)
    for c in report.capsules:
        kept = []
        for f in c.findings:
            key = (c.name, f.path, f.rule, f.message)
            if left[key] > 0 and f.rule != "schema.invalid":
                left[key] -= 1
                c.baselined += 1
            else:
                kept.append(f)
        if len(kept) == len(c.findings):
            continue
        c.findings = kept
        for name, summary in c.validators.items():
            mine = [f for f in kept if f.validator == name]
            c.validators[name] = ValidatorSummary(name, validator_score(mine), files=summary.files)
            for f in mine:
                setattr(
                    c.validators[name], f"{f.severity.value}s", getattr(c.validators[name], f"{f.severity.value}s") + 1
                )


def validate_capsules(
    paths: Sequence[str | Path],
    *,
    fail_on: str | None = None,
    min_score: float | None = None,
    jobs: int | None = None,
    baseline: str | Path | None = None,
) -> Report:
    """Validate every capsule in ``paths`` (in parallel when there are several).

    ``baseline``: a JSON report of an earlier run (the operator's, never the capsule's); its
    findings are left out and counted as ``baselined``, so only new ones fail the run.
    """
    from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only when validators run (the report imports this module)

    if fail_on is not None and fail_on not in ("error", "warning", "never"):
        raise InputError(f"--fail-on: {fail_on!r} is not one of error, warning, never")
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise InputError(f"--min-score: {min_score} is not between 0 and 1")
    dirs = [str(p) for p in paths] or ["."]
    for d in dirs:
        if not Path(d).is_dir():
            raise InputError(f"{d}: no such directory")
    known = load_baseline(baseline) if baseline is not None else None
    validators = _validators()
    rules = {r.id: (r, v.name) for v in validators for r in v.rules}
    workers = max(1, min(jobs or (os.cpu_count() or 1), len(dirs)))
    if workers == 1 or len(dirs) < 4:
        results = validate_batch(dirs, fail_on=fail_on, min_score=min_score)
    else:
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415 -- start-up: concurrent.futures loads only to validate in parallel

        registry()  # load plugins once, before forking
        # each task a batch of capsules, so an engine starts once per batch; several batches per
        # worker, so the workers finish together
        size = max(1, min(MAX_BATCH_CAPSULES, -(-len(dirs) // (workers * 4))))
        args = [(dirs[i : i + size], fail_on, min_score) for i in range(0, len(dirs), size)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
            results = [rep for batch in pool.map(_worker, args) for rep in batch]
    report = Report(results, rules)
    if known is not None:
        apply_baseline(report, known)
    event(log, "validate.done", capsules=len(results), score=round(report.score, 4), failed=report.failed)
    return report


__all__ = [
    "Report",
    "CapsuleReport",
    "ValidatorSummary",
    "validate_capsules",
    "validate_one",
    "validate_batch",
    "validator_score",
    "find_capsules",
    "engine_status",
    "engines_table",
    "load_baseline",
    "apply_baseline",
]
