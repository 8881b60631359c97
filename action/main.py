"""The GitHub Action runtime: ``INPUT_*`` -> qlcapsule's Python API -> outputs, summary, annotations, SARIF.

Thin on purpose (black's pattern): every decision lives in the library, reached
only through its public API (``from qlcapsule import ...``, never a submodule;
tests/action/test_main.py holds it to that). This file reads the inputs, masks
secrets, calls one command, and reports in the places a workflow looks:
``$GITHUB_OUTPUT`` (digest, artifacts, urls, score, published, report, report-file),
``$GITHUB_STEP_SUMMARY`` (Markdown), ``::error``/``::warning`` annotations on
stdout, and an optional SARIF file.

``python action/main.py --extras`` prints the pip extras the targets need
(``s3,github``); it uses only the standard library, since it runs before
qlcapsule is installed.

Trust boundary (issue 16): on pull-request events the content under test is the
pull request's, so unless the workflow opts in with ``allow-pull-request-release``
the run signs nothing, commits nothing, delivers nothing, and the library never
sees a credential (they are removed from the environment first). Every line
printed goes through :func:`emit` (workflow commands) or :func:`plain` (text),
and everything else the process writes to stdout/stderr goes through
:func:`guard_streams`, so capsule data can never start a workflow command.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import sys
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
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
#: events whose checkout is (or may be) a pull request's content
PR_EVENTS = frozenset({"pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment"})
MAX_EVENT_BYTES = 8 * 1024 * 1024
#: credentials a pull-request run never passes on, beyond the secret-looking names of SECRET_NAME
CREDENTIAL_NAME = re.compile(
    r"^(QLCAPSULE_(KEY|SIGNING_KEY|REGISTRY_\w*|HMAC\w*)|AWS_\w+|AZURE_\w+|GOOGLE_\w+|GCLOUD_\w+|CLOUDSDK_\w+"
    r"|GITHUB_TOKEN|GH_TOKEN|GITLAB_\w*TOKEN\w*|ACTIONS_ID_TOKEN_REQUEST_\w+|ACTIONS_RUNTIME_TOKEN|DOCKER_CONFIG"
    r"|DOCKER_AUTH_CONFIG|SSH_AUTH_SOCK|GIT_ASKPASS|SSH_ASKPASS|NETRC)$"
)
#: the library's opt-in that lets capsule.yaml define credentialed targets (never on a pull request)
CAPSULE_TARGETS_ENV = "QLCAPSULE_CAPSULE_TARGETS"
TARGETS_FILE_ENV = "QLCAPSULE_TARGETS_FILE"
#: where the catalog token is by default (``publish-token-env``): the variable ``qlcapsule ship --publish`` reads
CATALOG_TOKEN_ENV = "QLCAPSULE_CATALOG_TOKEN"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")


# -- inputs -----------------------------------------------------------------------


class ActionInputError(Exception):
    """A bad input, found before qlcapsule is imported: one ``::error`` line and exit 2."""


def get_input(env: Mapping[str, str], name: str, default: str = "") -> str:
    """An input as the runner passes it (``INPUT_FAIL-ON``), or with underscores (``INPUT_FAIL_ON``)."""
    key = "INPUT_" + name.upper().replace(" ", "_")
    for k in (key, key.replace("-", "_")):
        if k in env:
            return env[k].strip()
    return default


def split_list(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", text) if w]


def bool_input(env: Mapping[str, str], name: str) -> bool:
    raw = get_input(env, name).lower()
    if raw in ("", "false", "no", "0", "off"):
        return False
    if raw in ("true", "yes", "1", "on"):
        return True
    raise ActionInputError(f"{name}: {raw!r} is not true or false")


def pull_request_event(env: Mapping[str, str]) -> str | None:
    """The event's name when this run may be building a pull request's content, else None.

    ``issue_comment`` counts when the comment is on a pull request, and
    ``workflow_run`` when the run that triggered it was a pull request's (both
    read from ``GITHUB_EVENT_PATH``); a payload that cannot be read is taken as one.
    """
    name = env.get("GITHUB_EVENT_NAME", "")
    if name in PR_EVENTS:
        return name
    if name not in ("issue_comment", "workflow_run"):
        return None
    try:
        with open(env.get("GITHUB_EVENT_PATH") or "", "rb") as f:
            raw = f.read(MAX_EVENT_BYTES + 1)
        payload = json.loads(raw) if len(raw) <= MAX_EVENT_BYTES else None
        if not isinstance(payload, dict):
            on_pr = True
        elif name == "issue_comment":
            on_pr = bool((payload.get("issue") or {}).get("pull_request"))
        else:  # a workflow_run after a pull request's run builds what that pull request made
            run = payload.get("workflow_run") or {}
            on_pr = run.get("event") in PR_EVENTS or bool(run.get("pull_requests"))
    except (OSError, ValueError, AttributeError):
        on_pr = True
    return f"{name} on a pull request" if on_pr else None


def is_credential(name: str) -> bool:
    if name.startswith(("INPUT_", "RUNNER_")) or name in NOT_SECRET - {"QLCAPSULE_SIGNING_KEY"}:
        return False
    return bool(CREDENTIAL_NAME.match(name) or (not name.startswith("GITHUB_") and SECRET_NAME.search(name)))


def drop_credentials(env: dict[str, str] | os._Environ[str]) -> list[str]:
    """Remove every credential from ``env`` (the library's environment); the names removed."""
    gone = sorted(n for n in env if is_credential(n))
    for n in gone:
        del env[n]
    return gone


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
                raise ActionInputError(f"path: {word!r} matches no capsule directory")
            out += [os.path.relpath(h, cwd) for h in caps]
        else:
            out.append(word)
    return list(dict.fromkeys(out))


def needed_extras(env: Mapping[str, str], cwd: Path) -> list[str]:
    """Extras for the targets' providers, read from capsule.yaml without any YAML library."""
    wanted = set()
    try:
        if pull_request_event(env) and not bool_input(env, "allow-pull-request-release"):
            return []  # a sandboxed pull-request run delivers nothing: no provider is installed
    except ActionInputError:
        return []  # the run step reports the bad input
    names = set(split_list(get_input(env, "targets")))
    wanted |= names & set(EXTRAS)
    try:
        paths = expand_paths(get_input(env, "path", "."), cwd)
    except ActionInputError:
        paths = []
    files = [cwd / p / "capsule.yaml" for p in paths]
    if get_input(env, "targets-file"):
        files.append(cwd / get_input(env, "targets-file"))
    for file in files:
        try:
            with open(file, encoding="utf-8", errors="replace") as f:
                text = f.read(1024 * 1024)
        except OSError:
            continue
        # [ \t]*, not \s*: "\s" spans lines, so a file of newlines took quadratic time (minutes for 1 MiB)
        wanted |= set(re.findall(r"^[ \t]*provider:[ \t]*[\"']?([a-z0-9-]+)", text, re.M)) & set(EXTRAS)
    return sorted(wanted)


# -- the runner's files and workflow commands ----------------------------------------
#
# The runner reads every line of stdout and stderr for workflow commands: ``::name
# props::data`` when the line, after leading white space, starts with ``::``, and the
# legacy ``##[name props]data`` anywhere in a line. So the Action prints commands
# only through emit(), whose properties and data are escaped, and text only through
# plain(), which starts every line with our own word and escapes line breaks and
# brackets: no data can begin a line, break one, or hold ``##[...]``.

#: the first word of every plain line the Action prints: data never begins a line
PREFIX = "qlcapsule:"
_OUT: Any = None  # where emit() writes; guard_streams() points it past the filter


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _scrub(text: str) -> str:
    qlcapsule = sys.modules.get("qlcapsule")  # --extras runs before qlcapsule is installed
    return qlcapsule.scrub(text) if qlcapsule is not None else text


def plain(text: str) -> str:
    """One line of text: escaped so that nothing in it is a workflow command, secrets scrubbed."""
    return escape_data(_scrub(text)).replace("[", "%5B").replace("]", "%5D")


def _write(line: str) -> None:
    out = _OUT or sys.stdout
    out.write(line + "\n")
    out.flush()


def emit(command: str | None, message: str, **props: str | int | None) -> None:
    """Print a workflow command (``emit("error", msg, file=f)``), or with ``command=None`` a line of text.

    The one way the Action prints anything: properties and data are escaped the
    way the runner unescapes them, so data can neither end the command's line nor
    start another; text lines start with :data:`PREFIX`.
    """
    if command is None:
        _write(f"{PREFIX} {plain(message)}")
        return
    if command != "add-mask":
        message = _scrub(message)
    shown = ",".join(f"{k}={escape_property(str(v))}" for k, v in props.items() if v not in (None, ""))
    _write(f"::{command}{' ' + shown if shown else ''}::{escape_data(message)}")


def neutralize(line: str) -> str:
    """A line someone else (the library, a plugin, a worker process) wrote: never a workflow command.

    Every non-empty line gets :data:`PREFIX` (so nothing the line holds, however it
    starts, is at its beginning) and its brackets escaped (no legacy ``##[...]``).
    """
    return f"{PREFIX} {_scrub(line).replace('[', '%5B').replace(']', '%5D')}" if line else line


def guard_streams() -> Callable[[], None]:
    """Send everything written to fds 1 and 2 (this process and its children) through :func:`neutralize`.

    emit() writes to a duplicate of the original stdout instead. Returns the
    function that flushes and restores the streams (called once, at exit).
    """
    global _OUT
    sys.stdout.flush()
    sys.stderr.flush()
    real = {fd: os.dup(fd) for fd in (1, 2)}
    _OUT = os.fdopen(os.dup(real[1]), "w", encoding="utf-8", errors="replace", newline="\n")
    threads = []
    for fd in (1, 2):
        r, w = os.pipe()
        os.dup2(w, fd)
        os.close(w)

        def pump(r: int = r, dest: int = real[fd]) -> None:
            with os.fdopen(r, "rb") as src:
                for raw in src:  # split at \n; a lone \r is a line break for the runner too
                    text = raw.decode("utf-8", "replace")
                    parts = re.split(r"\r\n|\r|\n", text)
                    if parts and parts[-1] == "":
                        parts.pop()
                    out = "".join(neutralize(part) + "\n" for part in parts)
                    os.write(dest, out.encode("utf-8"))

        t = threading.Thread(target=pump, daemon=True, name=f"qlcapsule-guard-{fd}")
        t.start()
        threads.append(t)

    def finish() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed stream has nothing left to flush
                stream.flush()
        for fd in (1, 2):
            os.dup2(real[fd], fd)  # closes the pipe's last write end held by this process
        for t in threads:
            t.join(timeout=10)
        _OUT.flush()

    return finish


def set_output(path: str | None, name: str, value: str) -> None:
    """Append ``name`` to $GITHUB_OUTPUT with a random heredoc delimiter (multiline-safe)."""
    if not path:
        emit(None, f"{name}={value}")
        return
    delim = f"ghadelimiter_{uuid.uuid4()}"
    while delim in value:
        delim = f"ghadelimiter_{uuid.uuid4()}"
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{name}<<{delim}\n{value}\n{delim}\n")


def mask_secrets(env: Mapping[str, str]) -> int:
    """``::add-mask::`` every secret-looking environment value, and have qlcapsule scrub it too."""
    n = 0
    for name, value in env.items():
        if name in NOT_SECRET or name.startswith(("INPUT_", "GITHUB_", "RUNNER_")) or len(value) < 4:
            continue
        if SECRET_NAME.search(name):
            mask(value)
            n += 1
    return n


def mask(value: str) -> None:
    """``::add-mask::`` each line of a secret, and have qlcapsule scrub it from what it prints."""
    from qlcapsule import redact  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

    for line in value.splitlines():
        if len(line.strip()) >= 4:
            emit("add-mask", line.strip())
    redact(value)


def _fail(message: str) -> int:
    emit("error", message, title="qlcapsule")
    return 2


# -- running one command --------------------------------------------------------------


class Outcome:
    """What any command produced, in the shape the outputs and the summary need."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.capsules: list[dict[str, Any]] = []  # ref, path, digest, score, ok, error, artifacts, urls
        self.validation: Any = None  # a qlcapsule.Report when findings were collected
        self.errors: list[tuple[str, str]] = []  # (file, message) for failures that are not findings
        self.warnings: list[tuple[str, str]] = []  # (file, message): passed, but something to look at
        self.report: dict[str, Any] = {}
        self.exit_code = 0
        self.published: list[dict[str, Any]] = []  # the catalog's answer per published capsule (publish input)
        self.catalog = ""  # where they were published

    @property
    def scores(self) -> list[float]:
        return [c["score"] for c in self.capsules if c.get("score") is not None]

    @property
    def findings(self) -> list[tuple[str, Any]]:
        if self.validation is None:
            return []
        return [(c.directory, f) for c in self.validation.capsules for f in c.findings]


def _capsule(ref: str, path: str, **kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
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


def sandboxed(env: Mapping[str, str]) -> str | None:
    """The pull-request event this run is confined for (no release key, no credentials), else None."""
    event = pull_request_event(env)
    return event if event and not bool_input(env, "allow-pull-request-release") else None


#: what a sandboxed pull-request ship leaves out: the release signature, the store, the upload
SANDBOX_SKIP = frozenset({"sign", "commit", "deliver"})


def run_ship(paths: list[str], env: Mapping[str, str]) -> Outcome:
    from qlcapsule import ShipOptions, ship_capsules  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

    out = Outcome("ship")
    pr = sandboxed(env)
    targets = split_list(get_input(env, "targets")) or None
    if pr:
        emit(
            "notice",
            f"{pr} event: validate, seal and export to {env.get('QLCAPSULE_OUTPUT') or 'dist'} only; nothing is "
            "signed, committed or delivered, and no credential is passed on "
            "(allow-pull-request-release: true lifts this)",
            title="qlcapsule ship",
        )
    options = ShipOptions(
        skip=SANDBOX_SKIP if pr else frozenset(),
        formats=split_list(get_input(env, "formats")) or None,
        targets=None if pr else targets,
        fail_on=_fail_on_input(env),
        min_score=_score_input(env),
        key_env="QLCAPSULE_KEY" if env.get("QLCAPSULE_KEY") and not pr else None,
        output=env.get("QLCAPSULE_OUTPUT") or "dist",
    )
    refs: list[str] = []

    def progress(index: int, step: str, status: str, detail: str) -> None:
        if status not in ("running", "skipped"):
            who = refs[index] if index < len(refs) else str(index)
            emit(None, f"{who}: {step}: {status}{': ' + detail if detail else ''}")

    result = ship_capsules(paths, options, events=progress, on_plan=lambda cs: refs.extend(c.ref for c in cs))
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


#: what ``fail-on`` takes: the values of ``qlcapsule validate --fail-on`` (a test holds the two, and action.yml, equal)
FAIL_ON = ("error", "warning", "never")


def _fail_on_input(env: Mapping[str, str]) -> str | None:
    raw = get_input(env, "fail-on")
    if not raw:
        return None
    if raw not in FAIL_ON:
        from qlcapsule import InputError  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

        raise InputError(f"fail-on: {raw!r} is not one of {', '.join(FAIL_ON)}")
    return raw


def _score_input(env: Mapping[str, str]) -> float | None:
    raw = get_input(env, "min-score")
    if not raw:
        return None
    from qlcapsule import InputError  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"min-score: {raw!r} is not a number between 0 and 1") from None
    if not 0 <= value <= 1:
        raise InputError(f"min-score: {raw!r} is not between 0 and 1")
    return value


def run_validate(paths: list[str], env: Mapping[str, str]) -> Outcome:
    from qlcapsule import validate_capsules  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

    out = Outcome("validate")
    report = validate_capsules(paths, fail_on=_fail_on_input(env), min_score=_score_input(env))
    for c in report.capsules:
        ref = f"{c.name}@{c.version}" if c.name else c.directory
        out.capsules.append(_capsule(ref, c.directory, score=round(c.score, 4), ok=not c.failed))
    out.validation = report
    out.report = report.to_dict()
    # a missing or malformed capsule.yaml is bad input (2), as 'qlcapsule validate' exits; its errors
    # are still the report's schema.invalid findings, so annotations and SARIF show them
    unreadable = any(f.rule == "schema.invalid" for c in report.capsules for f in c.findings)
    out.exit_code = 2 if unreadable else 1 if report.failed else 0
    return out


def trust_roots(env: Mapping[str, str]) -> dict[str, Any]:
    """The operator's trusted keys for ``verify``: ``trusted-keys`` (public key files) and ``trust-file``."""
    return {"keys": split_list(get_input(env, "trusted-keys")), "trust": get_input(env, "trust-file") or None}


def run_verify(paths: list[str], env: Mapping[str, str]) -> Outcome:
    from qlcapsule import QlcapsuleError, verify_capsule  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

    out = Outcome("verify")
    roots = trust_roots(env)
    for p in paths:
        try:
            r = verify_capsule(Path(p), **roots)
            signature = (r.get("signature") or {}).get("status", "unsigned")
            out.capsules.append(_capsule(f"{r['capsule']}@{r['version']}", p, digest=r["digest"], signature=signature))
            if signature == "unchecked":
                out.warnings.append(
                    (
                        _rel(p, "capsule.sig"),
                        (
                            f"{r['capsule']}@{r['version']}: signed, but the signature was not checked: "
                            "give the keys you trust with trusted-keys or trust-file"
                        ),
                    )
                )
        except QlcapsuleError as exc:
            out.capsules.append(_capsule(p, p, ok=False, error=exc.message))
            out.errors.append((_rel(p, "capsule.lock"), exc.message))
            out.exit_code = max(out.exit_code, exc.exit_code)
    out.report = {"ok": out.exit_code == 0, "capsules": out.capsules}
    return out


def run_export(paths: list[str], env: Mapping[str, str]) -> Outcome:
    from qlcapsule import Capsule, export_capsule  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

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
    pr = sandboxed(env)
    if pr:
        raise ActionInputError(
            f"deliver is refused on a {pr} event: the pull request's content would be delivered with this "
            "workflow's credentials; set allow-pull-request-release: true to allow it"
        )
    from qlcapsule import Capsule, deliver_capsule  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

    out = Outcome("deliver")
    formats = split_list(get_input(env, "formats")) or None
    every = []
    for p in paths:
        capsule = Capsule.load(p)
        receipts = []
        targets: list[str | None] = list(split_list(get_input(env, "targets")) or capsule.definition.ship.targets)
        for target in targets or [None]:  # None: deliver_capsule's default target
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
        every += receipts
    out.report = {"ok": True, "capsules": out.capsules, "receipts": [r.to_dict() for r in every]}
    return out


RUNNERS = {
    "ship": run_ship,
    "validate": run_validate,
    "verify": run_verify,
    "export": run_export,
    "deliver": run_deliver,
}


# -- publishing to a catalog ------------------------------------------------------------


class Publication:
    """Where ``ship`` publishes its report (the ``publish`` input), and the token read from the environment."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token


def publication(env: dict[str, str] | os._Environ[str], command: str) -> Publication | None:
    """The ``publish`` and ``publish-token-env`` inputs, checked before anything runs; None without ``publish``.

    On a pull-request run that is not allowed to release, nothing is published and the token's variable is
    removed from the environment (a notice says so). Otherwise the token is masked in the log and scrubbed
    from everything qlcapsule prints, and the URL, the token and an installed publisher are checked now,
    without a request (``publish_report`` with no capsule), so a bad input stops the run before ship writes.
    """
    url = get_input(env, "publish")
    token_env = get_input(env, "publish-token-env") or CATALOG_TOKEN_ENV
    if not ENV_NAME.match(token_env):
        raise ActionInputError(f"publish-token-env: {token_env[:60]!r} is not an environment variable name")
    if not url:
        return None
    if command != "ship":
        raise ActionInputError(f"publish: only the ship command publishes to a catalog, not {command}")
    pr = sandboxed(env)
    if pr:
        env.pop(token_env, None)
        emit(
            "notice",
            f"{pr} event: the report is not published to {url} (allow-pull-request-release: true lifts this)",
            title="qlcapsule ship",
        )
        return None
    from qlcapsule import QlcapsuleError, publish_report, read_secret  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

    try:
        token = read_secret(token_env, what="the catalog token with the publish scope, from a secret") or ""
        mask(token)
        publish_report(url, token, {"capsules": []})  # no capsule: the checks, no request
    except QlcapsuleError as exc:
        raise ActionInputError(f"publish: {exc.message}") from None
    return Publication(url, token)


def publish(outcome: Outcome, target: Publication) -> None:
    """Publish each capsule the ship delivered, one at a time, into ``outcome``: the catalog's answers, or an
    error per capsule it refused (the exit code of the refusal: 1 untrusted, 2 token, 3 unreachable)."""
    from qlcapsule import QlcapsuleError, VerificationError, publish_report  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

    outcome.catalog = target.url
    shipped = [c for c in outcome.report.get("capsules", []) if isinstance(c, dict) and c.get("ok")]
    for i, entry in enumerate(shipped):
        ref = f"{entry.get('name')}@{entry.get('version')}"
        try:
            answers = publish_report(target.url, target.token, {"capsules": [entry]})
        except QlcapsuleError as exc:
            where = _rel(str(entry.get("path") or "."), "capsule.lock")
            outcome.errors.append((where, f"{ref}: not published to {target.url}: {exc.message}"))
            outcome.exit_code = max(outcome.exit_code, exc.exit_code)
            if isinstance(exc, VerificationError):
                continue  # the catalog refused this version; the next may be fine
            rest = [f"{c.get('name')}@{c.get('version')}" for c in shipped[i + 1 :]]
            if rest:
                outcome.errors.append(("", f"not published to {target.url}: {', '.join(rest)} (after the error above)"))
            break
        outcome.published += [_answer(a) for a in answers if isinstance(a, dict)]
    outcome.report["published"] = outcome.published
    if outcome.exit_code:
        outcome.report.update(ok=False, exit_code=outcome.exit_code)


def _answer(answer: dict[str, Any]) -> dict[str, Any]:
    """What the outputs carry of one catalog answer (the catalog's JSON is data: only these fields, as text)."""
    return {
        "ref": str(answer.get("ref", "")),
        "digest": str(answer.get("digest", "")),
        "created": answer.get("created") is True,
        "signature_status": str(answer.get("signature_status", "")),
    }


# -- reporting ---------------------------------------------------------------------


_LEVEL = {"error": "error", "warning": "warning", "note": "notice"}


def annotate(outcome: Outcome) -> int:
    """``::error file=..,line=..::message`` per finding and per failure, through :func:`emit`; how many."""
    n = 0
    if outcome.validation is not None:
        from qlcapsule import finding_uri  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

        for c in outcome.validation.capsules:
            for f in c.findings:
                col = f.column if f.line else None
                emit(
                    _LEVEL.get(f.severity.value, "warning"),
                    f.message,
                    file=finding_uri(c, f),
                    line=f.line or None,
                    col=col or None,
                    title=f.rule,
                )
                n += 1
    for level, items in (("error", outcome.errors), ("warning", outcome.warnings)):
        for file, message in items:
            emit(level, message, file=file or None, title=f"qlcapsule {outcome.command}")
            n += 1
    return n


def sarif_document(outcome: Outcome) -> dict[str, Any]:
    """SARIF 2.1.0 (URIs relative to the workspace); a run with no results when nothing was validated."""
    from qlcapsule import Report, sarif  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

    return sarif(outcome.validation if outcome.validation is not None else Report([]))


MAX_CELL = 300


def _cell(text: Any) -> str:
    """Data in a Markdown table cell, as a code span: no HTML, link, image or emphasis can come out of it.

    White space (line breaks too) collapses to one space, ``|`` is escaped for the
    table, the fence is one backtick longer than any run inside, and the text is
    clipped to :data:`MAX_CELL` characters and scrubbed of secrets.
    """
    value = " ".join(_scrub(str(text)).split())
    if len(value) > MAX_CELL:
        value = value[: MAX_CELL - 1] + "…"
    if not value:
        return "–"
    value = value.replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def summary_markdown(outcome: Outcome) -> str:
    ok = outcome.exit_code == 0
    lines = [f"## qlcapsule {outcome.command}: {'✅ passed' if ok else '❌ failed'}", ""]
    lines += ["| capsule | status | digest | score | artifacts |", "|---|---|---|---|---|"]
    for c in outcome.capsules:
        status = "✅ ok" if c["ok"] else f"❌ {_cell(c.get('error') or 'failed')}"
        if c.get("signature") and c["ok"]:
            status += f" ({'signature ' + c['signature'] if c['signature'] in _SIGNATURE_STATES else '?'})"
        digest = _cell(f"sha256:{c['digest'][:16]}…") if c.get("digest") else "–"
        score = f"{c['score']:.2f}" if isinstance(c.get("score"), (int, float)) else "–"
        arts = "<br>".join(_cell(os.path.basename(a)) for a in c["artifacts"]) or "–"
        lines.append(f"| {_cell(c['ref'])} | {status} | {digest} | {score} | {arts} |")
    if outcome.published:
        lines += [
            "",
            f"### Published to {_cell(outcome.catalog)}",
            "",
            "| capsule | signature | new |",
            "|---|---|---|",
        ]
        for p in outcome.published:
            lines.append(f"| {_cell(p['ref'])} | {_cell(p['signature_status'])} | {'yes' if p['created'] else 'no'} |")
    for level, items in (("Errors", outcome.errors), ("Warnings", outcome.warnings)):
        if items:
            lines += ["", f"### {level} ({len(items)})", "", "| location | message |", "|---|---|"]
            lines += [f"| {_cell(file)} | {_cell(message)} |" for file, message in items[:100]]
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
            severity = f.severity.value if f.severity.value in _LEVEL else "?"
            lines.append(f"| {severity} | {_cell(where)} | {_cell(f.rule)} | {_cell(f.message)} |")
        if len(outcome.findings) > 100:
            lines.append(f"\n…and {len(outcome.findings) - 100} more (see the report output).")
    return "\n".join(lines) + "\n"


_SIGNATURE_STATES = frozenset({"verified", "unsigned", "unchecked"})


def write_outputs(outcome: Outcome, env: Mapping[str, str], cwd: Path) -> None:
    gh_out = env.get("GITHUB_OUTPUT")
    set_output(gh_out, "digest", "\n".join(f"sha256:{c['digest']}" for c in outcome.capsules if c.get("digest")))
    set_output(gh_out, "artifacts", json.dumps([a for c in outcome.capsules for a in c["artifacts"]]))
    set_output(gh_out, "urls", json.dumps([u for c in outcome.capsules for u in c["urls"]]))
    scores = outcome.scores
    set_output(gh_out, "score", f"{min(scores):.4g}" if scores else "")
    set_output(gh_out, "published", json.dumps(outcome.published))
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

    from qlcapsule import QlcapsuleError, interruption, scrub  # noqa: PLC0415 -- extra: qlcapsule is not installed yet when --extras runs

    mask_secrets(env)
    command = get_input(env, "command", "ship") or "ship"
    if command not in COMMANDS:
        return _fail(f"command: {command!r} is not one of {', '.join(COMMANDS)}")
    try:
        confine(env, command)
        target = publication(env, command)
        paths = expand_paths(get_input(env, "path", "."), cwd)
        outcome = RUNNERS[command](paths, env)
        if target is not None:
            publish(outcome, target)
    except ActionInputError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP once on_termination() is installed
        what, code = interruption(exc)
        emit("error", what, title=f"qlcapsule {command}")
        return code
    except QlcapsuleError as exc:
        outcome = Outcome(command)
        outcome.errors.append(("", scrub(exc.message)))
        outcome.exit_code = exc.exit_code
        outcome.report = {"ok": False, "error": scrub(exc.message)}
    except Exception as exc:  # noqa: BLE001 - a bug still ends as one annotation, never a bare traceback
        emit("error", scrub(f"internal error: {type(exc).__name__}: {exc}"), title=f"qlcapsule {command}")
        return 70
    annotate(outcome)
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


def confine(env: dict[str, str] | os._Environ[str], command: str) -> None:
    """Apply the trust boundary before the library sees anything (see docs/action.md, "Pull requests").

    - ``targets-file`` becomes the library's ``QLCAPSULE_TARGETS_FILE`` (the operator's targets);
    - ``QLCAPSULE_CAPSULE_TARGETS=trust`` (capsule.yaml may define credentialed targets) is never
      allowed on a pull-request event, whether asked by input or by environment;
    - a pull-request run without ``allow-pull-request-release`` loses every credential from the
      environment, so neither the library nor a plugin nor a worker process can send one anywhere.
    """
    event = pull_request_event(env)
    trust_targets = bool_input(env, "trust-capsule-targets")
    if event and (trust_targets or env.get(CAPSULE_TARGETS_ENV)):
        raise ActionInputError(
            f"trust-capsule-targets ({CAPSULE_TARGETS_ENV}) is refused on a {event} event: "
            "a pull request's capsule.yaml never chooses where credentials go"
        )
    if trust_targets:
        env[CAPSULE_TARGETS_ENV] = "trust"
    targets_file = get_input(env, "targets-file")
    if targets_file:
        env[TARGETS_FILE_ENV] = str(Path(targets_file).absolute())
    if not sandboxed(env):
        if event:
            emit(
                "warning",
                f"allow-pull-request-release is on: this {event} run may sign with QLCAPSULE_KEY and deliver "
                "with the credentials in its environment",
                title=f"qlcapsule {command}",
            )
        return
    drop_credentials(env)


if __name__ == "__main__":
    if sys.argv[1:] == ["--extras"]:  # before qlcapsule is installed: the standard library only
        sys.exit(main())
    from qlcapsule import on_termination

    on_termination()  # a cancelled workflow sends SIGINT, then SIGTERM: temp files go either way
    restore = guard_streams()
    try:
        code = main()
    finally:
        restore()
    sys.exit(code)
