"""ship, hook validate|seal|verify, hooks install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import InputError, QlcapsuleError
from ._common import Command, emit, is_ci, json_option, main
from ._errors import problems
from .deliver import targets_file_option, trust_capsule_targets_option

if TYPE_CHECKING:
    from ..steps.ship import CapsuleResult, ShipResult

FAIL_ON = click.Choice(["error", "warning", "never"])


# -- progress and summary -------------------------------------------------------


class LineReporter:
    """Quiet, line-oriented progress for CI logs: one line per finished step, on stderr."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.names: list[str] = []

    def plan(self, capsules: list[CapsuleResult]) -> None:
        self.names = [c.ref for c in capsules]

    def __call__(self, index: int, step: str, status: str, detail: str) -> None:
        if status in ("running", "skipped"):
            return
        who = self.names[index] if index < len(self.names) else str(index)
        self.stream.write(f"{who}: {step}: {status}{': ' + detail if detail else ''}\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class RichReporter:
    """A live table on a terminal: one row per capsule, its current step and state."""

    def __init__(self) -> None:
        from rich.console import Console  # noqa: PLC0415 -- start-up: rich loads only for ship's terminal output
        from rich.live import Live  # noqa: PLC0415 -- start-up: rich loads only for ship's terminal output

        self.console = Console(stderr=True)
        self.rows: list[list[str]] = []
        self.live = Live(console=self.console, transient=True, refresh_per_second=8)

    def plan(self, capsules: list[CapsuleResult]) -> None:
        self.rows = [[c.ref, "", "waiting", ""] for c in capsules]
        self.live.start()
        self.live.update(self._table())

    def _table(self) -> Any:
        from rich.table import Table  # noqa: PLC0415 -- start-up: rich loads only for ship's terminal output

        table = Table(box=None, show_header=False)
        for name, step, status, detail in self.rows:
            style = {"failed": "red", "ok": "green", "running": "yellow"}.get(status, "dim")
            table.add_row(name, step, f"[{style}]{status}[/]", detail)
        return table

    def __call__(self, index: int, step: str, status: str, detail: str) -> None:
        if status == "skipped" or index >= len(self.rows):
            return
        self.rows[index] = [self.rows[index][0], step, status, detail[:60]]
        self.live.update(self._table())

    def close(self) -> None:
        self.live.stop()


def make_reporter(quiet: bool) -> Any:
    if quiet:
        return None
    if is_ci() or os.environ.get("QLCAPSULE_NO_PROGRESS"):
        return LineReporter()
    # the live table owns the terminal: the steps' own byte bars (seal, export) would draw over it,
    # in this process and in the workers, which inherit the environment
    os.environ["QLCAPSULE_NO_PROGRESS"] = "1"
    return RichReporter()


def _short_artifacts(c: CapsuleResult) -> str:
    return ", ".join(_rel(a["path"]) for a in c.artifacts) or "-"


def _rel(path: str) -> str:
    """A local path relative to the current directory; a location like s3://b/k as it is."""
    if "://" in path or not os.path.isabs(path):
        return path
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def _status(c: CapsuleResult) -> str:
    if not c.ok:
        return f"FAILED ({c.error})"
    if c.dry_run:
        return "ok (dry run: already shipped, nothing would change)" if c.unchanged else "ok (dry run: nothing written)"
    return "ok (already shipped: nothing changed)" if c.unchanged else "ok"


def summary_rows(result: ShipResult) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for c in result.capsules:
        digest = f"sha256:{c.digest[:12]}" if c.digest else "-"
        score = f"{c.score:.2f}" if c.score is not None else "-"
        rows.append((c.ref, digest, score, _short_artifacts(c), _status(c)))
    return rows


def plan_lines(c: CapsuleResult) -> list[str]:
    """A dry run's plan for one capsule: what each step would do, each artifact's destination, the outcome."""
    plan = c.plan or {}
    lines = [f"plan for {c.ref} (dry run: nothing was written):"]
    changes = (plan.get("seal") or {}).get("changes") or []
    for s in c.steps:
        state = "" if s.status == "ok" else f"{s.status}{': ' if s.detail else ''}"
        lines.append(f"  {s.name:<9}{state}{s.detail}")
        if s.name == "seal" and s.status == "ok":
            lines += [f"  {'':<9}{change}" for change in changes]
    for a in c.artifacts:
        lines.append(f"  {'artifact':<9}{a['name']} ({a['format']}) -> {_rel(a['path'])}")
    outcome = "would succeed" if c.ok else f"would fail: {c.error}"
    lines.append(f"  {'outcome':<9}{outcome} (exit {c.exit_code})")
    return lines


def print_summary(result: ShipResult) -> None:
    header = ("capsule", "digest", "score", "artifacts", "status")
    rows = summary_rows(result)
    if sys.stdout.isatty() and not is_ci():
        from rich.console import Console  # noqa: PLC0415 -- start-up: rich loads only for ship's terminal output
        from rich.table import Table  # noqa: PLC0415 -- start-up: rich loads only for ship's terminal output

        table = Table(title="qlcapsule ship")
        for name in header:  # fold, never "…": an artifact path cut short is useless
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*row[:-1], row[-1] if row[-1].startswith("ok") else f"[red]{row[-1]}[/]")
        Console().print(table)
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header[:-1])]
        for row in [header, *rows]:
            click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[-1])
    for c in result.capsules:
        if c.dry_run:
            click.echo("")
            click.echo("\n".join(plan_lines(c)))


# -- ship -----------------------------------------------------------------------


@main.command()
@click.argument("directories", nargs=-1, type=click.Path(file_okay=False, path_type=str))
@click.option("--no-validate", is_flag=True, help="Skip the validators.")
@click.option("--no-seal", is_flag=True, help="Do not reseal: ship exactly what is sealed, fail if anything changed.")
@click.option("--no-sign", is_flag=True, help="Do not sign.")
@click.option("--no-commit", is_flag=True, help="Do not commit the version to the store.")
@click.option("--no-export", is_flag=True, help="Do not export (implies --no-deliver).")
@click.option("--no-deliver", is_flag=True, help="Export into --output but deliver nowhere.")
@click.option("-f", "--format", "formats", multiple=True, help="Export format (repeatable; default: ship.formats).")
@click.option(
    "-t",
    "--target",
    "targets",
    multiple=True,
    help="Delivery target from the operator's targets file (repeatable; default: ship.targets, else local ./dist).",
)
@click.option("--fail-on", type=FAIL_ON, help="Lowest finding severity that fails the validate step.")
@click.option("--min-score", type=click.FloatRange(0, 1), help="Fail the validate step below this score (0..1).")
@click.option(
    "--store",
    envvar="QLCAPSULE_STORE",
    help="Bare git repository to commit to (default: the enclosing git repository, else .qlcapsule/store.git beside the capsule).",
)
@click.option("--branch", help="Store branch (default: ship.branch, 'main').")
@click.option("-m", "--message", help="Commit message.")
@click.option(
    "--key",
    envvar="QLCAPSULE_SIGNING_KEY",
    help="Signing key file (default: the development key, created on first use).",
)
@click.option("--key-env", metavar="NAME", help="Environment variable holding the signing key itself (CI secrets).")
@click.option("-o", "--output", default="dist", show_default=True, help="Where exports go with --no-deliver.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan: the files that would be sealed, the key that signs, the version committed, each "
    "artifact's destination, and the outcome the real run will have; write, commit and upload nothing.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Ship a changed capsule under a version already shipped: record a second build in the store and "
    "overwrite at targets that can (their 'overwrite' option), and commit a directory whose base the branch head "
    "has moved past (as 'commit --force'). Bumping 'version:' is the usual fix.",
)
@click.option(
    "--publish",
    metavar="URL",
    envvar="QLCAPSULE_PUBLISH_URL",
    help="Publish to the catalog at URL (qlcapsule serve; https, or http on this machine): each version before "
    "its deliveries, each delivery step as it happens, then the report. The URL and token are checked before "
    "anything is written; a catalog failing during the deliveries is a warning, not a failed ship.",
)
@click.option(
    "--publish-token-env",
    metavar="NAME",
    default="QLCAPSULE_CATALOG_TOKEN",
    show_default=True,
    help="Environment variable holding the catalog token (publish scope).",
)
@click.option("-j", "--jobs", type=click.IntRange(1), help="Capsules shipped at once (default: one per core).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@targets_file_option
@trust_capsule_targets_option
@json_option
def ship(directories: tuple[str, ...], **kw: Any) -> None:
    """Seal, validate, sign, commit, export and deliver each capsule DIRECTORY (default: .).

    Every input is checked before anything is written. Each step is driven by
    the capsule's ship: section and can be skipped with its --no-STEP flag.
    Out of the box nothing leaves the machine: the version is committed to the
    enclosing git repository (or .qlcapsule/store.git beside the capsule),
    signed with a development key and delivered to ./dist. Run it again at
    will: an unchanged version is a no-op, an interrupted run is finished, and
    a changed capsule under a version already shipped is refused (bump
    'version:' in capsule.yaml).

    \b
    Exit codes: 0 every capsule shipped; 1 findings, tampering or a failed
    signature; 2 bad input (definition, options, credentials); 3 a remote
    target failed after retries. With several capsules, the highest code wins.
    """
    from ..steps.ship import ShipOptions  # noqa: PLC0415 -- start-up: ship's steps load only for ship, not for the hooks or --help
    from ..steps.ship import ship as run_ship  # noqa: PLC0415 -- start-up: ship's steps load only for ship, not for the hooks or --help

    skip = frozenset(s for s in ("validate", "seal", "sign", "commit", "export", "deliver") if kw[f"no_{s}"])
    options = ShipOptions(
        skip=skip,
        formats=list(kw["formats"]) or None,
        targets=list(kw["targets"]) or None,
        fail_on=kw["fail_on"],
        min_score=kw["min_score"],
        store=kw["store"],
        branch=kw["branch"],
        message=kw["message"],
        key=kw["key"],
        key_env=kw["key_env"],
        output=kw["output"],
        dry_run=kw["dry_run"],
        force=kw["force"],
        targets_file=kw["targets_file"],
        trust_capsule_targets=True if kw["trust_capsule_targets"] else None,
    )
    publish_to, token = kw["publish"], None
    if publish_to:  # checked now, before anything is written: the token, the URL, a plugin that publishes
        from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only when ship publishes
        from ..resilience import read_secret  # noqa: PLC0415 -- start-up: resilience loads only when ship publishes

        token = read_secret(kw["publish_token_env"], what="a catalog token with the publish scope")
        registry().publish(publish_to, token or "", {"capsules": []})  # no capsule: the checks, no request
    live = None
    if publish_to and not options.dry_run:
        from ..steps.publishing import LivePublisher  # noqa: PLC0415 -- plugin: the publisher (and the plugin manager) loads only when ship publishes

        live = LivePublisher(publish_to, token or "")
    reporter = make_reporter(kw["quiet"])
    try:
        result = run_ship(
            directories,
            options,
            jobs=kw["jobs"],
            events=reporter,
            on_plan=reporter.plan if reporter is not None else None,
            watcher=live,
        )
    finally:
        if reporter is not None:
            reporter.close()
    data = result.to_dict()
    if live is not None:
        data["live"] = live.to_dict()
    if publish_to and not options.dry_run and any(c.ok for c in result.capsules):
        from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only when ship publishes

        try:
            data["published"] = registry().publish(publish_to, token or "", data)
        except QlcapsuleError:
            emit(
                kw["as_json"], data, lambda: print_summary(result)
            )  # what was shipped is said, then why publishing failed
            raise

    def text() -> None:
        print_summary(result)
        for answer in data.get("published", []):
            click.echo(f"published {answer.get('ref')} to {publish_to} (signature {answer.get('signature_status')})")
        if publish_to and options.dry_run:
            click.echo(f"would publish to {publish_to}")

    emit(kw["as_json"], data, text)
    if result.exit_code:
        raise SystemExit(result.exit_code)


# -- hook: pre-commit entry points -------------------------------------------------


@main.group()
def hook() -> None:
    """Entry points for pre-commit and git hooks: act on the capsules containing FILES.

    Options come first, then '--', then the FILES: 'qlcapsule hook verify
    --key k.pub -- a.py b.py'. The '--' is required, so a file name is never
    read as an option. Each FILE is mapped to its nearest ancestor directory
    holding a capsule.yaml; files outside every capsule are ignored, and no
    FILES means nothing to do (use '--all --' for every capsule under the
    current directory).
    """


def _roots(files: tuple[str, ...], all_: bool) -> list[Path]:
    from ..steps.ship import all_capsules, capsules_containing  # noqa: PLC0415 -- start-up: the hooks find capsules without loading ship's steps (pre-commit runs them often)

    return all_capsules(".") if all_ else capsules_containing(files)


class HookCommand(Command):
    """A hook command: its own options before ``--``, file names only after it.

    pre-commit runs ``entry + args + FILES`` and the git hooks run ``xargs -0
    ... -- FILES``, so without a separator a file named ``--key=evil.pub``,
    ``--fail-on=never`` or ``--help`` would be read as an option. Here nothing
    after the first ``--`` is ever an option, and ``--`` is required (a lone
    ``--help``/``-h`` outside pre-commit aside): a caller that forgot it gets
    exit 2 instead of a file name choosing the trusted keys or the threshold.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        me = f"qlcapsule hook {self.name}"
        if "--" not in args:
            if len(args) == 1 and args[0] in ctx.help_option_names and "PRE_COMMIT" not in os.environ:
                return super().parse_args(ctx, args)
            raise InputError(
                f"{me}: put the file names after '--' ('{me} [OPTIONS] -- FILE...'; with --all: '{me} --all --')"
            )
        split = args.index("--")
        rest = super().parse_args(ctx, args[:split])
        if ctx.params.get("files"):
            raise InputError(f"{me}: {ctx.params['files'][0]!r}: file names go after '--', options before it")
        ctx.params["files"] = tuple(args[split + 1 :])
        return rest


hook_files = click.argument("files", nargs=-1, type=click.Path(path_type=str))
all_option = click.option("--all", "all_", is_flag=True, help="Every capsule under the current directory.")


@hook.command("validate", cls=HookCommand, options_metavar="[OPTIONS] --")
@hook_files
@all_option
@click.option("--fail-on", type=FAIL_ON, help="Lowest severity that fails (default: the capsule's validate.fail_on).")
@click.option("--min-score", type=click.FloatRange(0, 1), help="Fail below this score.")
@json_option
def hook_validate(
    files: tuple[str, ...], all_: bool, fail_on: str | None, min_score: float | None, as_json: bool
) -> None:
    """Validate the capsules containing FILES. Exit 1 when findings fail them, 2 for a bad capsule.yaml."""
    roots = _roots(files, all_)
    if not roots:
        emit(as_json, {"capsules": [], "ok": True}, None)
        return
    from ..steps.report import render  # noqa: PLC0415 -- start-up: the report loads only in the commands that use it, not for --help
    from ..steps.validation import validate_capsules  # noqa: PLC0415 -- start-up: validation loads only in the commands that use it, not for --help
    from .generate import refuse_unreadable  # noqa: PLC0415 -- start-up: the click group (click) loads only in the commands that use it, not for --help

    report = validate_capsules(roots, fail_on=fail_on, min_score=min_score)
    emit(as_json, report.to_dict(), lambda: click.echo(render(report, "text"), nl=False))
    refuse_unreadable(report)
    if report.failed:
        raise SystemExit(1)


@hook.command("seal", cls=HookCommand, options_metavar="[OPTIONS] --")
@hook_files
@all_option
@click.option(
    "--sign", "resign", is_flag=True, help="Re-sign a capsule whose seal changed (--key or the development key)."
)
@click.option("--key", envvar="QLCAPSULE_SIGNING_KEY", help="Signing key file for --sign.")
@json_option
def hook_seal(files: tuple[str, ...], all_: bool, resign: bool, key: str | None, as_json: bool) -> None:
    """Reseal the capsules containing FILES (a fixer).

    Exit 1 when a capsule.lock was rewritten, so the commit stops and the new
    lock can be staged; 0 when every seal was already current.
    """
    from ..pipeline import seal_capsule  # noqa: PLC0415 -- start-up: the pipeline loads only for the seal hook

    out = []
    for root in _roots(files, all_):
        sig = root / "capsule.sig"
        result = seal_capsule(root)
        item: dict[str, Any] = {
            "capsule": str(root),
            "digest": result.digest,
            "written": result.written,
            "signed": False,
        }
        if result.written and resign:
            from ..signing import signatures as signing  # noqa: PLC0415 -- start-up: signing loads only when the seal hook re-signs

            signing.sign_capsule(root, key=key or signing.dev_key(create=True))
            item["signed"] = True
        elif result.written and sig.exists():
            item["warning"] = f"{sig}: signed an older seal; run 'qlcapsule sign {root}'"
        out.append(item)
    written = [i for i in out if i["written"]]

    def text() -> None:
        for i in written:
            click.echo(f"sealed {i['capsule']}: capsule.lock updated{' and re-signed' if i['signed'] else ''}")
            if "warning" in i:
                click.echo(f"warning: {i['warning']}", err=True)
        if written:
            click.echo("stage the updated capsule.lock and commit again", err=True)

    emit(as_json, {"capsules": out, "written": len(written)}, text)
    if written:
        raise SystemExit(1)


@hook.command("verify", cls=HookCommand, options_metavar="[OPTIONS] --")
@hook_files
@all_option
@click.option(
    "--key", "keys", multiple=True, help="Trusted public key file (repeatable); implies a signature is required."
)
@click.option("--trust", help="Trust file of public keys (default: $QLCAPSULE_TRUST_FILE).")
@json_option
def hook_verify(files: tuple[str, ...], all_: bool, keys: tuple[str, ...], trust: str | None, as_json: bool) -> None:
    """Verify integrity, then signatures, of the capsules containing FILES. Exit 1 on any failure.

    Signatures are checked against --key/--trust, else $QLCAPSULE_TRUST_FILE
    (never a capsule's own capsule.yaml); without any trusted key a
    capsule.sig is reported but not checked, exactly like 'qlcapsule verify'.
    """
    from ..pipeline import verify_capsule  # noqa: PLC0415 -- start-up: the pipeline loads only for the verify hook
    from ._text import signature_text  # noqa: PLC0415 -- start-up: _text loads only for the verify hook

    out: list[dict[str, Any]] = []
    code = 0
    for root in _roots(files, all_):
        try:
            report = verify_capsule(root, keys=keys, trust=trust)
            sig = report.get("signature") or {"status": "unsigned"}
            out.append({"capsule": str(root), "ok": True, "digest": report.get("digest"), "signature": sig})
        except QlcapsuleError as exc:
            code = max(code, exc.exit_code)
            out.append(
                {
                    "capsule": str(root),
                    "ok": False,
                    "error": exc.message,
                    "errors": problems(exc),
                    "exit_code": exc.exit_code,
                }
            )

    def text() -> None:
        for i in out:
            # "ok" vouches for integrity; the signature's own words say whether a trusted key checked it
            click.echo(
                f"ok {i['capsule']}; {signature_text(i['signature'])}"
                if i["ok"]
                else f"FAILED {i['capsule']}: {i['error']}"
            )

    emit(as_json, {"capsules": out, "ok": code == 0}, text)
    if code:
        raise SystemExit(code)


# -- hooks install: plain git hooks ---------------------------------------------------

HOOK_NAMES = ("pre-commit", "pre-push")


def hook_sources() -> Path:
    """The directory holding the plain git hook scripts (in the wheel, or the source checkout)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_hooks", here.parent.parent / "hooks"):
        if all((candidate / n).is_file() for n in HOOK_NAMES):
            return candidate
    raise InputError("the git hook scripts are missing from this installation (expected qlcapsule/_hooks)")


def git_hooks_dir() -> Path:
    git = shutil.which("git")
    if git is None:
        raise InputError("git: not found on PATH")
    proc = subprocess.run([git, "rev-parse", "--git-path", "hooks"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise InputError(f"{Path.cwd()}: not inside a git repository")
    return Path(proc.stdout.strip()).resolve()


@main.group()
def hooks() -> None:
    """Plain git hooks for teams without the pre-commit framework."""


@hooks.command("install")
@click.option("--force", is_flag=True, help="Replace existing hooks (the old one is kept as HOOK.bak).")
@json_option
def hooks_install(force: bool, as_json: bool) -> None:
    """Install pre-commit (seal + validate) and pre-push (verify) into this repository's hooks directory.

    Refuses to replace a different existing hook unless --force (exit 2).
    """
    src, dest = hook_sources(), git_hooks_dir()
    dest.mkdir(parents=True, exist_ok=True)
    installed = []
    for name in HOOK_NAMES:
        new = (src / name).read_bytes()
        target = dest / name
        state = "installed"
        if target.exists():
            if target.read_bytes() == new:
                state = "unchanged"
            elif not force:
                raise InputError(f"{target}: a different hook is already installed (use --force to replace it)")
            else:
                shutil.copy2(target, target.with_name(name + ".bak"))
                state = "replaced"
        if state != "unchanged":
            target.write_bytes(new)
        target.chmod(0o755)
        installed.append({"hook": name, "path": str(target), "state": state})
    emit(as_json, {"hooks": installed}, "\n".join(f"{i['state']} {i['path']}" for i in installed))
