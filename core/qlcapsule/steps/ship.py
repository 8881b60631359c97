"""``ship``: validate -> seal -> sign -> commit -> export -> deliver, for one or more capsules.

Every step is one call into the module that owns it (``validation``,
``pipeline``, ``signing``, ``store``, ``exporting``, ``delivery``); this module
only plans, runs and reports. The capsule's ``ship:`` section in capsule.yaml
switches steps on and off and names formats and targets; flags override it.

Defaults need nothing outside the machine:

- **commit** goes to the git repository that contains the capsule (under
  ``refs/capsules/...``), or to ``--store``/``QLCAPSULE_STORE``, or else to a
  bare repository ``.qlcapsule/store.git`` created beside the capsule (in its
  parent directory, so capsules side by side share one store);
- **sign** uses ``--key`` or a development key created on first use (with a
  warning);
- **deliver** goes to the built-in ``local`` target: ``./dist``.

Several capsules run concurrently in worker processes (one per core by
default), so CPU-bound validators use every core. Each capsule stops at its
first failing step; the others carry on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, QlcapsuleError
from ..format.capsule import Capsule
from ..format.tree import walk
from ..log import event, get_logger, scrub

if TYPE_CHECKING:
    from .targets import OperatorTargets
    from .validation import CapsuleReport

__all__ = [
    "STEPS",
    "ShipOptions",
    "StepResult",
    "CapsuleResult",
    "ShipResult",
    "ship",
    "ship_capsules",
    "default_store",
    "plan",
]

log = get_logger("ship")

STEPS = ("validate", "seal", "sign", "commit", "export", "deliver")
DEFAULT_STORE = Path(".qlcapsule") / "store.git"

#: ``events(index, step, status, detail)``: status is running, ok, skipped or failed
EventSink = Callable[[int, str, str, str], None]


@dataclass
class ShipOptions:
    """What the caller (CLI, Action) asks for; ``None`` means "as capsule.yaml says"."""

    skip: frozenset[str] = frozenset()
    formats: Sequence[str] | None = None
    targets: Sequence[str] | None = None
    fail_on: str | None = None
    min_score: float | None = None
    store: str | None = None
    branch: str | None = None
    message: str | None = None
    key: str | None = None
    key_env: str | None = None
    output: str = "dist"
    dry_run: bool = False
    #: the operator's targets file (None: $QLCAPSULE_TARGETS_FILE, else ~/.config/qlcapsule/targets.yaml)
    targets_file: str | None = None
    #: also trust targets capsule.yaml defines (None: $QLCAPSULE_CAPSULE_TARGETS)
    trust_capsule_targets: bool | None = None


@dataclass
class StepResult:
    name: str
    status: str = "pending"  # pending, ok, skipped, failed, not-run
    detail: str = ""
    seconds: float = 0.0


@dataclass
class CapsuleResult:
    """What shipping one capsule did."""

    path: str
    name: str = ""
    version: str = ""
    digest: str | None = None
    score: float | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    commit: str | None = None
    store: str | None = None
    signed_by: list[str] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0
    #: ``--dry-run``: every step ran on a copy; nothing was written, committed or uploaded
    dry_run: bool = False
    #: the validation.CapsuleReport of the validate step (not in to_dict: ``findings`` and ``score`` carry it)
    validation: Any = field(default=None, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}" if self.name else self.path

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def urls(self) -> list[str]:
        return [r["url"] for r in self.receipts if r.get("url")]

    def step(self, name: str) -> StepResult:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        validation, self.validation = self.validation, None
        try:
            data = asdict(self)
        finally:
            self.validation = validation
        del data["validation"]
        data.update(ref=self.ref, ok=self.ok, urls=self.urls)
        return data


@dataclass
class ShipResult:
    capsules: list[CapsuleResult]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.capsules)

    @property
    def exit_code(self) -> int:
        return max((c.exit_code for c in self.capsules), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "exit_code": self.exit_code, "capsules": [c.to_dict() for c in self.capsules]}

    def validation_report(self) -> Any:
        """The validate steps' findings as one ``validation.Report`` (for the SARIF and GitHub renderers)."""
        from ..plugins.manager import registry  # noqa: PLC0415 -- plugin: the plugin manager loads only when validators run
        from .validation import Report  # noqa: PLC0415 -- start-up: validation loads only when the report is asked for (the hooks import ship too)

        rules = {r.id: (r, v.name) for v in registry().all("validator") for r in v.rules}  # type: ignore[attr-defined]
        return Report([c.validation for c in self.capsules if c.validation is not None], rules)


# -- planning -----------------------------------------------------------------


@dataclass
class _Job:
    index: int
    root: str
    steps: tuple[str, ...]
    formats: tuple[str, ...]
    targets: tuple[str | None, ...]
    store: str | None
    branch: str
    options: ShipOptions
    #: the operator's targets, read once by plan()
    operator: OperatorTargets | None = None


def default_store(root: Path, store: str | None = None) -> str | None:
    """The store ``commit`` writes to: explicit, the enclosing git repository (None), or the local default."""
    store = store or os.environ.get("QLCAPSULE_STORE") or None
    if store:
        return store
    if _enclosing_repo(root) is not None:
        return None
    return str(root.parent / DEFAULT_STORE)


def _enclosing_repo(root: Path) -> str | None:
    import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only to find the enclosing repository

    try:
        found = pygit2.discover_repository(str(root))
    except pygit2.GitError:
        return None
    return found or None


def plan(paths: Iterable[str | Path], options: ShipOptions) -> list[_Job]:
    """Load every capsule and resolve its steps, formats and targets before any work starts.

    Bad input (no capsule.yaml, an unknown format or target, a bad option) raises
    here, naming the file and field, so nothing is half-shipped.
    """
    from ..plugins import manager as plugins  # noqa: PLC0415 -- plugin: the plugin manager loads only when a ship is planned
    from .delivery import load_deliverer, resolve_target  # noqa: PLC0415 -- start-up: delivery loads only when a ship delivers (the hooks import ship too)
    from .targets import operator_targets  # noqa: PLC0415 -- start-up: the targets file loads only when a ship delivers (the hooks import ship too)

    unknown = set(options.skip) - set(STEPS)
    if unknown:
        raise InputError(f"unknown step(s) to skip: {', '.join(sorted(unknown))} (steps: {', '.join(STEPS)})")
    roots = [Path(p) for p in paths] or [Path(".")]
    seen: set[Path] = set()
    refs: dict[str, Path] = {}
    jobs: list[_Job] = []
    reg = plugins.registry()
    operator = (
        operator_targets(options.targets_file, options.trust_capsule_targets) if "deliver" not in options.skip else None
    )
    for root in roots:
        capsule = Capsule.load(root)
        if capsule.root in seen:
            continue
        seen.add(capsule.root)
        other = refs.setdefault(capsule.ref, capsule.root)
        if other != capsule.root:  # one store branch, one artifact name: the second would clash mid-run
            raise InputError(f"{capsule.root}: {capsule.ref} is also {other}; ship one capsule per name and version")
        cfg = capsule.definition.ship
        steps = [s for s in STEPS if s not in options.skip]
        switched = {"validate": cfg.validate_, "sign": cfg.sign, "commit": cfg.commit, "deliver": cfg.deliver}
        steps = [s for s in steps if switched.get(s, True)]
        if "export" not in steps and "deliver" in steps:
            steps.remove("deliver")
        formats = tuple(options.formats or cfg.formats or ["tar.gz"])
        for fmt in formats:
            reg.exporter_for(fmt)  # raises naming the format and the known ones
        targets: tuple[str | None, ...] = tuple(options.targets or cfg.targets) or (None,)
        if "deliver" in steps:
            for target in targets:
                name, config = resolve_target(capsule, target, operator)
                load_deliverer(name, config, capsule)  # options checked now, not after the export
                for fmt in config.formats or ():
                    reg.exporter_for(fmt)
        jobs.append(
            _Job(
                index=len(jobs),
                root=str(capsule.root),
                steps=tuple(steps),
                formats=formats,
                targets=targets,
                store=default_store(capsule.root, options.store) if "commit" in steps else None,
                branch=options.branch or cfg.branch,
                options=options,
                operator=operator,
            )
        )
    if any("sign" in j.steps for j in jobs) and (options.key or options.key_env):
        from ..signing import signatures as signing  # noqa: PLC0415 -- start-up: signing loads only when a ship signs (the hooks import ship too)

        # a bad key must fail here, not after the seal step rewrote capsule.lock
        signing.load_signing_key(options.key, key_env=options.key_env)
    return jobs


# -- the steps ----------------------------------------------------------------


class _Context:
    def __init__(self, job: _Job, capsule: Capsule, result: CapsuleResult, staging: Path) -> None:
        self.job = job
        self.capsule = capsule
        self.result = result
        self.staging = staging
        self.artifacts: dict[str, Any] = {}  # format -> Artifact


#: findings about the signature that ship's own sign step replaces a moment later
_FIXED_BY_SIGN = frozenset({"signature.missing", "signature.stale", "signature.expired", "signature.expiring"})


def _leave_to_sign(report: CapsuleReport) -> int:
    """Drop the findings the sign step makes moot (a reseal always makes the old signature stale,
    so after the seal hook's commit every ship would fail); rescore their validators."""
    from .validation import validator_score  # noqa: PLC0415 -- start-up: validation loads only when a ship validates (the hooks import ship too)

    moot = [f for f in report.findings if f.rule in _FIXED_BY_SIGN]
    if not moot:
        return 0
    report.findings = [f for f in report.findings if f.rule not in _FIXED_BY_SIGN]
    for name in {f.validator for f in moot}:
        summary = report.validators.get(name or "")
        if summary is None:
            continue
        kept = [f for f in report.findings if f.validator == name]
        summary.score = validator_score(kept)
        for sev in ("error", "warning", "note"):
            setattr(summary, f"{sev}s", sum(1 for f in kept if f.severity.value == sev))
    return len(moot)


def _step_validate(ctx: _Context) -> str:
    from .validation import validate_capsules  # noqa: PLC0415 -- start-up: validation loads only when a ship validates (the hooks import ship too)

    opts = ctx.job.options
    root = Path(ctx.job.root)  # the capsule itself, also in a dry run (whose steps work on a copy)
    report = validate_capsules([root], fail_on=opts.fail_on, min_score=opts.min_score, jobs=1)
    (capsule_report,) = report.capsules
    moot = _leave_to_sign(capsule_report) if "sign" in ctx.job.steps else 0
    ctx.result.validation = capsule_report
    ctx.result.findings = [f.to_dict() for f in capsule_report.findings]
    ctx.result.score = round(capsule_report.score, 4)
    n = capsule_report.counts()
    detail = f"score {capsule_report.score:.2f}, {n['error']} error(s), {n['warning']} warning(s), {n['note']} note(s)"
    if moot:
        detail += f"; {moot} about the old signature left to the sign step"
    if capsule_report.failed:
        first = next((f for f in capsule_report.findings if f.severity.value == "error"), None)
        why = (
            f"; first: {first.text()}"
            if first
            else f" (fail_on {capsule_report.fail_on}, min_score {capsule_report.min_score})"
        )
        raise _StepFailed(f"validation failed: {detail}{why}")
    return detail


def _step_seal(ctx: _Context) -> str:
    from ..pipeline import seal_capsule  # noqa: PLC0415 -- start-up: the pipeline loads only when a ship seals (the hooks import ship too)

    result = seal_capsule(ctx.capsule.root)
    ctx.capsule = Capsule.load(ctx.capsule.root)
    ctx.result.digest = result.digest
    if ctx.job.options.dry_run:
        return f"{'would seal' if result.written else 'unchanged'} sha256:{result.digest[:12]}"
    return f"{'sealed' if result.written else 'unchanged'} sha256:{result.digest[:12]}"


def _verify_sealed(ctx: _Context) -> str:
    """With ``--no-seal``: ship exactly what was sealed, or fail naming the change."""
    lock = ctx.capsule.verify_integrity()
    ctx.result.digest = lock.digest
    return f"verified sha256:{lock.digest[:12]} (not resealed)"


def _step_sign(ctx: _Context) -> str:
    from ..signing import signatures as signing  # noqa: PLC0415 -- start-up: signing loads only when a ship signs (the hooks import ship too)

    opts = ctx.job.options
    if opts.key_env:
        skey = signing.load_signing_key(key_env=opts.key_env)
    elif opts.key:
        skey = signing.load_signing_key(opts.key)
    else:
        if opts.dry_run and not (signing.qlcapsule_home() / "dev.key").exists():
            return "would sign with a new development key (created on the first real ship)"
        dev = signing.dev_key(create=not opts.dry_run)  # a damaged key fails a dry run too
        skey = signing.load_signing_key(dev)
    ctx.result.signed_by = [skey.keyid]
    if _already_signed(ctx, skey):
        return f"already signed by {skey.keyid[:16]}"
    result = signing.sign_capsule(ctx.capsule.root, key=skey)
    ctx.result.signed_by = list(result.keyids)
    return f"{'would sign' if opts.dry_run else 'signed'} by {skey.keyid[:16]}" + (
        " (development key)" if not (opts.key or opts.key_env) else ""
    )


def _already_signed(ctx: _Context, skey: Any) -> bool:
    """True when ``skey`` itself already signed this exact seal: re-shipping stays a no-op.

    capsule.sig comes with the content: a signature only counts when the signing key's own
    public half verifies it over the PAE bytes (a key id the envelope claims proves nothing),
    and only then is the statement read.
    """
    from ..signing.envelope import Envelope, Statement, verify_envelope  # noqa: PLC0415 -- start-up: signing loads only when a ship signs (the hooks import ship too)

    where = str(ctx.capsule.sig_path)
    try:
        raw = ctx.capsule.sig_bytes()
        if raw is None:
            return False
        envelope = Envelope.from_json(raw, where)
        verify_envelope(envelope, [skey.verify_key()], 1, where)
        statement = Statement.parse(envelope.payload, where)
    except (OSError, QlcapsuleError):
        return False
    return (
        statement.subject_name == ctx.capsule.ref
        and statement.name == ctx.capsule.name
        and statement.version == ctx.capsule.version
        and statement.digest == ctx.capsule.digest
        and statement.expires is None
    )


def _step_commit(ctx: _Context) -> str:
    from ..store.versions import commit_capsule  # noqa: PLC0415 -- start-up: the store (pygit2) loads only when a ship commits

    opts = ctx.job.options
    if opts.dry_run:
        store = ctx.job.store or "the enclosing git repository"
        return f"would commit {ctx.capsule.ref} to {store} (branch {ctx.job.branch or 'main'})"
    result = commit_capsule(ctx.capsule.root, message=opts.message, store=ctx.job.store, branch=ctx.job.branch)
    ctx.result.commit, ctx.result.store = result.commit, result.store
    what = f"{result.branch} {result.commit[:12]}"
    return what if result.created else f"{what} (unchanged)"


def _needed_formats(ctx: _Context) -> list[str]:
    from .delivery import resolve_target  # noqa: PLC0415 -- start-up: delivery loads only when a ship delivers (the hooks import ship too)

    fmts = list(ctx.job.formats)
    if "deliver" in ctx.job.steps:
        for target in ctx.job.targets:
            _, config = resolve_target(ctx.capsule, target, ctx.job.operator)
            fmts += [f for f in config.formats or () if f not in fmts]
    return fmts


def _step_export(ctx: _Context) -> str:
    from ..plugins.records import Artifact  # noqa: PLC0415 -- start-up: the records load only when a ship exports (the hooks import ship too)
    from .exporting import export_capsule  # noqa: PLC0415 -- start-up: exporting loads only when a ship exports (the hooks import ship too)

    deliver = "deliver" in ctx.job.steps
    outdir = ctx.staging if deliver or ctx.job.options.dry_run else Path(ctx.job.options.output).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    for fmt in _needed_formats(ctx):
        result = export_capsule(ctx.capsule.root, fmt, _out_path(ctx, fmt, outdir))
        assert result.path is not None
        if result.directory and deliver:
            raise InputError(
                f"format {fmt!r} exports a directory, which cannot be delivered; "
                "pick an archive format or ship with --no-deliver"
            )
        artifact = Artifact(result.path, result.path.name, result.sha256, result.size, result.media_type)
        ctx.artifacts[fmt] = artifact
        if "deliver" not in ctx.job.steps:
            where = Path(ctx.job.options.output).resolve() / result.path.name if ctx.job.options.dry_run else None
            ctx.result.artifacts.append(_artifact_dict(artifact, fmt, str(where) if where else None))
    names = ", ".join(a.name for a in ctx.artifacts.values())
    return f"would write {names} to {ctx.job.options.output}" if ctx.job.options.dry_run and not deliver else names


def _out_path(ctx: _Context, fmt: str, outdir: Path) -> Path:
    from ..plugins import manager as plugins  # noqa: PLC0415 -- plugin: the plugin manager loads only when a ship is planned

    exporter = plugins.registry().exporter_for(fmt)()
    return outdir / exporter.filename(ctx.capsule, fmt)


def _artifact_dict(artifact: Any, fmt: str, path: str | None = None) -> dict[str, Any]:
    return {
        "format": fmt,
        "name": artifact.name,
        "path": path or str(artifact.path),
        "sha256": artifact.sha256,
        "size": artifact.size,
    }


def _step_deliver(ctx: _Context) -> str:
    from .delivery import deliver_capsule, resolve_target  # noqa: PLC0415 -- start-up: delivery loads only when a ship delivers (the hooks import ship too)

    where = []
    for target in ctx.job.targets:
        name, config = resolve_target(ctx.capsule, target, ctx.job.operator)
        fmts = list(config.formats or ctx.job.formats)
        arts = [ctx.artifacts[f] for f in fmts]
        receipts = deliver_capsule(
            ctx.capsule.root, name, arts, dry_run=ctx.job.options.dry_run, operator=ctx.job.operator
        )
        by_sha = {r.sha256: r for r in receipts}
        for fmt, art in zip(fmts, arts, strict=True):
            receipt = by_sha.get(art.sha256) or receipts[fmts.index(fmt)]  # dry runs have no digests yet
            rd = receipt.to_dict()
            ctx.result.receipts.append(rd)
            ctx.result.artifacts.append(_artifact_dict(art, fmt, rd["location"]))
        where.append(f"{name}: {len(receipts)} artifact(s)")
    return "; ".join(where)


_RUNNERS: dict[str, Callable[[_Context], str]] = {
    "validate": _step_validate,
    "seal": _step_seal,
    "sign": _step_sign,
    "commit": _step_commit,
    "export": _step_export,
    "deliver": _step_deliver,
}


def _dry_copy(capsule: Capsule, into: Path) -> Capsule:
    """A copy of the capsule's files (and lock and signature) for ``--dry-run`` to seal, sign and
    export, so it reports the digest and artifacts a real run would give without touching the capsule."""
    from ..format.model import LOCK_FILE, SIG_FILE  # noqa: PLC0415 -- start-up: the capsule.yaml model (pydantic) loads only for --dry-run

    dest = into / capsule.root.name
    names = [f.path for f in walk(capsule.root, capsule.globs(), stat_files=False)]
    names += [n for n in (LOCK_FILE, SIG_FILE) if (capsule.root / n).is_file()]
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(capsule.root / name, target)
    return Capsule.load(dest)


class _StepFailed(QlcapsuleError):
    exit_code = 1


def ship_one(job: _Job, events: EventSink | None = None) -> CapsuleResult:
    """Ship one planned capsule; never raises for an expected failure (it is in the result)."""
    emit = events or (lambda *_: None)
    result = CapsuleResult(path=job.root)
    result.steps = [StepResult(s, "pending" if s in job.steps else "skipped") for s in STEPS]
    staging = Path(tempfile.mkdtemp(prefix="qlcapsule-ship-"))
    try:
        capsule = Capsule.load(job.root)
        result.name, result.version = capsule.name, capsule.version
        if job.options.dry_run:
            result.dry_run = True
            capsule = _dry_copy(capsule, staging / "dry-run")
        ctx = _Context(job, capsule, result, staging)
        for step in result.steps:
            runner = _RUNNERS[step.name]
            if step.status == "skipped":
                if step.name != "seal":
                    emit(job.index, step.name, step.status, step.detail)
                    continue
                runner = _verify_sealed  # not resealing still means: ship only what was sealed
            emit(job.index, step.name, "running", "")
            started = time.perf_counter()
            try:
                step.detail = runner(ctx)
                step.status = "ok"
            except QlcapsuleError as exc:
                step.status, step.detail = "failed", scrub(exc.message)
                result.error, result.exit_code = f"{step.name}: {step.detail}", exc.exit_code
            except Exception as exc:  # noqa: BLE001 - a bug in a step must not take down the other capsules
                step.status, step.detail = "failed", scrub(f"internal error: {type(exc).__name__}: {exc}")
                result.error, result.exit_code = f"{step.name}: {step.detail}", 70
            step.seconds = round(time.perf_counter() - started, 3)
            emit(job.index, step.name, step.status, step.detail)
            if step.status == "failed":
                for later in result.steps:
                    if later.status == "pending":
                        later.status = "not-run"
                break
    except QlcapsuleError as exc:
        result.error, result.exit_code = scrub(exc.message), exc.exit_code
        emit(job.index, "ship", "failed", result.error)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    event(log, "ship.done", capsule=result.ref, ok=result.ok, digest=result.digest)
    return result


# -- running several ----------------------------------------------------------

_worker_queue: Any = None


def _init_worker(queue: Any, env: dict[str, str]) -> None:
    global _worker_queue
    _worker_queue = queue
    os.environ.update(env)


def _worker(job: _Job) -> CapsuleResult:
    def sink(index: int, step: str, status: str, detail: str) -> None:
        if _worker_queue is not None:
            _worker_queue.put((index, step, status, detail))

    try:
        return ship_one(job, sink)
    finally:
        # The queue's feeder thread may still hold this job's events when the
        # result reaches the parent; this marker, queued after them, tells the
        # parent they have all arrived.
        if _worker_queue is not None:
            _worker_queue.put((job.index, None, None, None))


def _prepare_shared(jobs: list[_Job]) -> None:
    """Create what workers would otherwise race for: the dev key and the default stores."""
    dev_signed = [j for j in jobs if "sign" in j.steps and not (j.options.key or j.options.key_env)]
    if dev_signed:
        from ..signing import signatures as signing  # noqa: PLC0415 -- start-up: signing loads only when a ship signs (the hooks import ship too)

        real = any(not j.options.dry_run for j in dev_signed)  # a dry run creates no key...
        if real or (signing.qlcapsule_home() / "dev.key").exists():
            signing.dev_key(create=real)  # ...but a damaged one fails it as it would fail the real run
    jobs = [j for j in jobs if not j.options.dry_run]  # a dry run creates no store
    stores = {j.store for j in jobs if "commit" in j.steps and j.store}
    for store in sorted(stores):
        if not Path(store).exists():
            from ..store.versions import open_store  # noqa: PLC0415 -- start-up: the store (pygit2) loads only when a ship commits

            Path(store).parent.mkdir(parents=True, exist_ok=True)
            open_store(store=store, create=True)


def ship(
    paths: Iterable[str | Path],
    options: ShipOptions | None = None,
    *,
    jobs: int | None = None,
    events: EventSink | None = None,
    on_plan: Callable[[list[CapsuleResult]], None] | None = None,
) -> ShipResult:
    """Ship every capsule in ``paths``; see the module docstring.

    ``jobs`` caps the worker processes (default: one per core, never more than
    the capsules); ``jobs=1`` runs in this process. ``events`` is called for
    every step start and end, from this process.
    """
    options = options or ShipOptions()
    planned = plan(paths, options)
    if on_plan is not None:
        on_plan([_named(j.root) for j in planned])
    _prepare_shared(planned)
    workers = min(len(planned), jobs or os.cpu_count() or 1)
    if workers <= 1:
        return ShipResult([ship_one(j, events) for j in planned])
    return ShipResult(_run_pool(planned, workers, events))


#: the public name (``from qlcapsule import ship_capsules``): in the package, ``ship`` is this module
ship_capsules = ship


def _run_pool(planned: list[_Job], workers: int, events: EventSink | None) -> list[CapsuleResult]:
    import multiprocessing  # noqa: PLC0415 -- start-up: multiprocessing loads only for parallel ships
    import queue as queue_mod  # noqa: PLC0415 -- start-up: queue loads only for parallel ships
    from concurrent.futures import Future, ProcessPoolExecutor  # noqa: PLC0415 -- start-up: concurrent.futures loads only for parallel ships

    ctx = multiprocessing.get_context("spawn")  # safe with threads; the same on every OS
    queue = ctx.Queue()
    env = {k: v for k, v in os.environ.items() if k.startswith("QLCAPSULE_")}
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue, env)) as pool:
        futures: list[Future[CapsuleResult]] = [pool.submit(_worker, j) for j in planned]
        flushed: set[int] = set()

        def drain(block: bool) -> None:
            while True:
                try:
                    item = queue.get(timeout=0.1) if block else queue.get_nowait()
                except queue_mod.Empty:
                    return
                if item[1] is None:
                    flushed.add(item[0])
                elif events is not None:
                    events(*item)
                block = False

        while not all(f.done() for f in futures):
            drain(True)
        # A job that returned has queued its end marker; wait (bounded) until
        # every such marker is in, so no event arrives after ship() returns.
        expected = {j.index for j, f in zip(planned, futures, strict=True) if f.exception() is None}
        deadline = time.monotonic() + 10
        while not expected <= flushed and time.monotonic() < deadline:
            drain(True)
        drain(False)
        results = []
        for job, fut in zip(planned, futures, strict=True):
            try:
                results.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - a crashed worker fails its capsule only
                results.append(CapsuleResult(path=job.root, error=f"worker failed: {exc}", exit_code=70))
    queue.close()
    return results


# -- hooks: which capsules do these files belong to ----------------------------

_SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", ".venv", "venv", "node_modules", ".tox", ".nox", ".qlcapsule", "__pycache__"}
)


def capsules_containing(files: Iterable[str]) -> list[Path]:
    """The capsule of each file: its nearest ancestor directory holding a capsule.yaml.

    Files outside every capsule are ignored; deleted files still map through
    their directories. The walk stops at the current directory for relative
    paths (pre-commit passes paths relative to the repository top), so a hook
    run touching one capsule of hundreds only looks at that capsule.
    """
    found: dict[str, str | None] = {}
    roots: list[Path] = []
    seen: set[str] = set()
    for name in files:
        d = os.path.dirname(os.path.normpath(name)) if not os.path.isdir(name) else os.path.normpath(name)
        chain: list[str] = []
        root: str | None = None
        while True:
            key = d or "."
            if key in found:
                root = found[key]
                break
            chain.append(key)
            if os.path.isfile(os.path.join(key, "capsule.yaml")):
                root = key
                break
            parent = os.path.dirname(d)
            if not d or parent == d or key == ".":
                break
            d = parent
        for key in chain:
            found[key] = root
        if root is not None and root not in seen:
            seen.add(root)
            roots.append(Path(root))
    return roots


def all_capsules(top: str | Path = ".") -> list[Path]:
    """Every capsule under ``top`` (not descending into VCS, virtualenv or cache directories)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        if "capsule.yaml" in filenames:
            out.append(Path(dirpath))
    return out


def _named(root: str) -> CapsuleResult:
    capsule = Capsule.load(root)
    return CapsuleResult(path=root, name=capsule.name, version=capsule.version)
