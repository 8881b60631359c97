"""``ship``: seal -> validate -> sign -> commit -> export -> deliver, for one or more capsules.

A run is planned first (:mod:`qlcapsule.steps.shipplan`): every input is checked
and what each step will do is worked out before anything is written. The steps
then carry the plan out, each one call into the module that owns it
(``pipeline``, ``validation``, ``signing``, ``store``, ``exporting``,
``delivery``); ``--dry-run`` reports the same plan instead of acting on it. The
capsule's ``ship:`` section in capsule.yaml switches steps on and off and names
formats and targets; flags override it.

The order makes the loop work on every run, not just the first: a changed
capsule is sealed before it is judged (so the validators see the new lock), and
signed after, replacing the signature the seal made stale. Every step is
idempotent, so a second run finishes what an interrupted one left, and a run
that finds its version, seal and signature in the store already changes nothing
and says so.

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

A :class:`ShipWatcher` (``ship --publish``'s catalog) is told, in this process and in
order per capsule, when a capsule is ready to deliver (sealed, validated, signed and
committed) and each step of each delivery as it happens
(:mod:`qlcapsule.steps.delivery`); a worker's calls travel on the events' queue.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import IntegrityError, QlcapsuleError
from ..format.capsule import Capsule
from ..log import event, get_logger, scrub
from .shipplan import STEPS, CapsulePlan, ShipOptions, default_store, make_plan

if TYPE_CHECKING:
    from .validation import CapsuleReport

__all__ = [
    "STEPS",
    "ShipOptions",
    "StepResult",
    "CapsuleResult",
    "ShipResult",
    "ShipWatcher",
    "ship",
    "ship_capsules",
    "default_store",
    "plan",
]

log = get_logger("ship")

#: ``events(index, step, status, detail)``: status is running, ok, skipped or failed
EventSink = Callable[[int, str, str, str], None]


class ShipWatcher(Protocol):
    """What a ship tells an observer that reports it elsewhere as it happens (``ship --publish``).

    Called from the process that called :func:`ship`, in order for each capsule; a real run only
    (never a dry run). The calls must not raise, and should not wait long: with ``jobs=1`` the
    delivery waits for them.
    """

    def ready(self, index: int, capsule: dict[str, Any]) -> None:
        """The capsule is sealed, validated, signed and committed, and its deliveries start now:
        ``capsule`` is its result so far (:meth:`CapsuleResult.to_dict`, no artifacts or receipts yet)."""

    def delivery(self, index: int, status: dict[str, Any]) -> None:
        """One step of one of its deliveries (:data:`qlcapsule.steps.delivery.DELIVERY_STATUSES`): capsule,
        version, target, provider, status, url, detail, bytes."""


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
    #: ``--dry-run``: the plan was reported; nothing was written, committed or uploaded
    dry_run: bool = False
    #: this version, seal and signature were in the store already: nothing changed
    unchanged: bool = False
    #: what the run was planned to do (:meth:`qlcapsule.steps.shipplan.CapsulePlan.to_dict`)
    plan: dict[str, Any] | None = None
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


def plan(paths: Iterable[str | Path], options: ShipOptions) -> list[CapsulePlan]:
    """Load every capsule, check every input and work out each step before any work starts.

    Bad input (no capsule.yaml, an unknown format or target, a bad option or key) and
    refusals (a changed capsule under a version already shipped) raise here, naming the
    file and field, so nothing is half-shipped. See :mod:`qlcapsule.steps.shipplan`.
    """
    return make_plan(paths, options)


# -- the steps ----------------------------------------------------------------


class _Context:
    def __init__(
        self,
        job: CapsulePlan,
        capsule: Capsule,
        result: CapsuleResult,
        staging: Path,
        watcher: ShipWatcher | None = None,
    ) -> None:
        self.job = job
        self.capsule = capsule
        self.result = result
        self.staging = staging
        self.watcher = watcher
        self.dry_run = job.options.dry_run
        self.artifacts: dict[str, Any] = {}  # format -> Artifact
        self.wrote: set[str] = set()  # the steps that changed something


#: findings the seal step makes moot: the lock it writes matches the files (a dry run validates before it)
_FIXED_BY_SEAL = frozenset({"integrity.unsealed", "integrity.changed", "integrity.lock"})
#: findings about the signature that ship's own sign step replaces a moment later
_FIXED_BY_SIGN = frozenset({"signature.missing", "signature.stale", "signature.expired", "signature.expiring"})


def _leave_to(report: CapsuleReport, rules: frozenset[str]) -> int:
    """Drop the findings a step of this run makes moot; rescore their validators."""
    from .validation import validator_score  # noqa: PLC0415 -- start-up: validation loads only when this is called

    moot = [f for f in report.findings if f.rule in rules]
    if not moot:
        return 0
    report.findings = [f for f in report.findings if f.rule not in rules]
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
    """The validators, on the capsule as the seal step leaves it.

    The real run validates after sealing; a dry run validates the files as they are and
    leaves the lock's findings to the seal it plans. A seal that changes the digest makes
    any capsule.sig stale: the sign step replaces it, and with signing off the old
    signature is reported by the seal step, not counted against the files.
    """
    from .validation import validate_capsules  # noqa: PLC0415 -- start-up: validation loads only when this is called

    job, opts = ctx.job, ctx.job.options
    report = validate_capsules([Path(job.root)], fail_on=opts.fail_on, min_score=opts.min_score, jobs=1)
    (capsule_report,) = report.capsules
    moot = _leave_to(capsule_report, _FIXED_BY_SEAL) if "seal" in job.steps else 0
    by_sign = 0
    if "sign" in job.steps:
        by_sign = _leave_to(capsule_report, _FIXED_BY_SIGN)
    elif job.seal_writes:
        by_sign = _leave_to(capsule_report, frozenset({"signature.stale"}))
    ctx.result.validation = capsule_report
    ctx.result.findings = [f.to_dict() for f in capsule_report.findings]
    ctx.result.score = round(capsule_report.score, 4)
    n = capsule_report.counts()
    detail = f"score {capsule_report.score:.2f}, {n['error']} error(s), {n['warning']} warning(s), {n['note']} note(s)"
    if by_sign:
        detail += f"; {by_sign} about the old signature left to the sign step"
    if moot and ctx.dry_run:
        detail += f"; {moot} about capsule.lock left to the seal"
    if capsule_report.failed:
        first = next((f for f in capsule_report.findings if f.severity.value == "error"), None)
        why = (
            f"; first: {first.text()}"
            if first
            else f" (fail_on {capsule_report.fail_on}, min_score {capsule_report.min_score})"
        )
        raise _StepFailed(f"validation failed: {detail}{why}")
    return detail


def _changes(job: CapsulePlan, limit: int = 5) -> str:
    shown = job.changes[:limit]
    more = f" (+{len(job.changes) - limit} more)" if len(job.changes) > limit else ""
    return "; ".join(shown) + more


def _step_seal(ctx: _Context) -> str:
    from ..pipeline import seal_capsule  # noqa: PLC0415 -- start-up: the pipeline loads only when a ship seals (the hooks import ship too)

    job = ctx.job
    digest = job.digest or ""
    ctx.result.digest = job.digest
    stale = ""
    if job.seal_writes and "sign" not in job.steps and ctx.capsule.sig_path.exists():
        stale = "; capsule.sig now signs an older seal (signing is off: sign it before release)"
    if not job.seal_writes:
        return f"unchanged sha256:{digest[:12]} ({job.files} files)"
    if ctx.dry_run:
        return f"would seal {job.files} files as sha256:{digest[:12]}: {_changes(job)}{stale}"
    result = seal_capsule(Path(job.root))
    if result.digest != job.digest:  # a file changed between the plan and now
        raise IntegrityError(
            f"{job.root}: files changed while shipping (planned sha256:{digest[:12]}, sealed "
            f"sha256:{result.digest[:12]}); run ship again"
        )
    ctx.capsule = Capsule.load(job.root)
    ctx.wrote.add("seal")
    return f"sealed {job.files} files as sha256:{digest[:12]}: {_changes(job)}{stale}"


def _verify_sealed(ctx: _Context) -> str:
    """With ``--no-seal``: ship exactly what was sealed, or fail naming the change."""
    lock = ctx.capsule.verify_integrity()
    ctx.result.digest = lock.digest
    return f"verified sha256:{lock.digest[:12]} (not resealed)"


def _step_sign(ctx: _Context) -> str:
    from ..signing import signatures as signing  # noqa: PLC0415 -- start-up: signing loads only when a ship signs (the hooks import ship too)

    job = ctx.job
    if job.sign == "already":
        ctx.result.signed_by = [job.keyid or ""]
        return f"already signed by {(job.keyid or '')[:16]}"
    if job.sign == "keep":
        return "capsule.sig already signs this seal (by another key; no --key given, kept as it is)"
    if ctx.dry_run:
        return f"would sign with {job.key_label}" + (f" (key id {job.keyid[:16]})" if job.keyid else "")
    skey = job.signing_key
    if skey is None:  # a worker process, or the development key created since the plan
        if job.dev_key:
            skey = signing.load_signing_key(signing.dev_key(create=True))
        else:
            key_env = job.options.key_env
            skey = signing.load_signing_key(None if key_env else job.options.key, key_env=key_env)
    result = signing.sign_capsule(ctx.capsule.root, key=skey)
    ctx.result.signed_by = list(result.keyids)
    ctx.wrote.add("sign")
    return f"signed by {skey.keyid[:16]}" + (" (development key)" if job.dev_key else "")


def _step_commit(ctx: _Context) -> str:
    from ..store.versions import commit_capsule  # noqa: PLC0415 -- start-up: the store (pygit2) loads only when a ship commits

    job, opts = ctx.job, ctx.job.options
    if ctx.dry_run:
        if job.commit_unchanged:
            return f"{job.ref} is in {job.store_label} already ({job.branch} {(job.recorded or '')[:12]}, unchanged)"
        resume = f" (this build is recorded as {(job.recorded or '')[:12]}: resuming)" if job.recorded else ""
        return f"would commit {job.ref} to {job.store_label} (branch {job.branch}){resume}"
    if job.commit_unchanged and not ctx.wrote & {"seal", "sign"}:
        # the branch head is this seal and signature, and this run changed neither: touch nothing in the store
        ctx.result.commit, ctx.result.store = job.recorded, job.store_label
        return f"{job.branch} {(job.recorded or '')[:12]} (unchanged)"
    result = commit_capsule(
        ctx.capsule.root, message=opts.message, store=job.store, branch=job.branch, force=opts.force
    )
    ctx.result.commit, ctx.result.store = result.commit, result.store
    what = f"{result.branch} {result.commit[:12]}"
    if result.created:
        ctx.wrote.add("commit")
        return what
    return f"{what} (unchanged)"


def _step_export(ctx: _Context) -> str:
    from ..plugins.records import Artifact  # noqa: PLC0415 -- start-up: the records load only when a ship exports (the hooks import ship too)
    from .exporting import export_capsule  # noqa: PLC0415 -- start-up: exporting loads only when a ship exports (the hooks import ship too)

    job = ctx.job
    deliver = "deliver" in job.steps
    if ctx.dry_run:
        if not deliver:
            ctx.result.artifacts += [_planned_dict(a) for a in job.artifacts]
            return f"would write {', '.join(a['name'] for a in job.artifacts)} to {job.options.output}"
        return "would export " + ", ".join(dict.fromkeys(a["name"] for a in job.artifacts))
    outdir = ctx.staging if deliver else Path(job.options.output).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    for fmt in job.exports:
        result = export_capsule(ctx.capsule.root, fmt, _out_path(ctx, fmt, outdir))
        assert result.path is not None
        artifact = Artifact(result.path, result.path.name, result.sha256, result.size, result.media_type)
        ctx.artifacts[fmt] = artifact
        if not deliver:
            ctx.result.artifacts.append(_artifact_dict(artifact, fmt))
    return ", ".join(a.name for a in ctx.artifacts.values())


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


def _planned_dict(art: dict[str, Any]) -> dict[str, Any]:
    """A planned artifact in a dry run's result: where it would go; its digest is known only once exported."""
    return {"format": art["format"], "name": art["name"], "path": art["location"], "sha256": None, "size": None}


def _step_deliver(ctx: _Context) -> str:
    from .delivery import deliver_capsule, resolve_target  # noqa: PLC0415 -- start-up: delivery loads only when a ship delivers (the hooks import ship too)

    job = ctx.job
    if ctx.dry_run:
        ctx.result.artifacts += [_planned_dict(a) for a in job.artifacts]
        by_target: dict[str, list[str]] = {}
        for a in job.artifacts:
            by_target.setdefault(a["target"], []).append(a["location"])
        return "; ".join(f"{t}: would deliver {', '.join(where)}" for t, where in by_target.items())
    where = []
    on_status = partial(ctx.watcher.delivery, job.index) if ctx.watcher is not None else None
    for target in job.targets:
        name, config = resolve_target(ctx.capsule, target, job.operator)
        fmts = list(config.formats or job.formats)
        arts = [ctx.artifacts[f] for f in fmts]
        receipts = deliver_capsule(
            ctx.capsule.root, name, arts, operator=job.operator, overwrite=job.options.force, on_status=on_status
        )
        by_sha = {r.sha256: r for r in receipts}
        for fmt, art in zip(fmts, arts, strict=True):
            receipt = by_sha.get(art.sha256) or receipts[fmts.index(fmt)]
            rd = receipt.to_dict()
            ctx.result.receipts.append(rd)
            ctx.result.artifacts.append(_artifact_dict(art, fmt, rd["location"]))
        if not all(r.extra.get("existing") for r in receipts):
            ctx.wrote.add("deliver")
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


class _StepFailed(QlcapsuleError):
    exit_code = 1


def ship_one(job: CapsulePlan, events: EventSink | None = None, watcher: ShipWatcher | None = None) -> CapsuleResult:
    """Carry out (or, in a dry run, report) one capsule's plan; never raises for an expected failure.

    ``watcher`` (a real run only) is told when the deliveries start and each of their steps."""
    emit = events or (lambda *_: None)
    result = CapsuleResult(path=job.root, name=job.name, version=job.version, dry_run=job.options.dry_run)
    result.plan = job.to_dict()
    result.steps = [StepResult(s, "pending" if s in job.steps else "skipped") for s in STEPS]
    staging = Path(tempfile.mkdtemp(prefix="qlcapsule-ship-"))
    ctx: _Context | None = None
    for warning in job.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    try:
        watching = watcher if not job.options.dry_run else None
        ctx = _Context(job, Capsule.load(job.root), result, staging, watching)
        for step in result.steps:
            runner = _RUNNERS[step.name]
            if step.status == "skipped":
                if step.name != "seal":
                    emit(job.index, step.name, step.status, step.detail)
                    continue
                runner = _verify_sealed  # not resealing still means: ship only what was sealed
            emit(job.index, step.name, "running", "")
            if step.name == "deliver" and watching is not None:
                watching.ready(job.index, result.to_dict())  # every step before it succeeded
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
    if result.ok and job.already_shipped and (ctx is None or not ctx.wrote):
        result.unchanged = True
    event(log, "ship.done", capsule=result.ref, ok=result.ok, digest=result.digest, unchanged=result.unchanged)
    return result


# -- running several ----------------------------------------------------------

_worker_queue: Any = None


def _init_worker(queue: Any, env: dict[str, str]) -> None:
    global _worker_queue
    _worker_queue = queue
    os.environ.update(env)


class _QueuedWatcher:
    """A worker's :class:`ShipWatcher`: the calls go to the parent on the events' queue, in order."""

    def ready(self, index: int, capsule: dict[str, Any]) -> None:
        _worker_queue.put(("ready", index, capsule))

    def delivery(self, index: int, status: dict[str, Any]) -> None:
        _worker_queue.put(("delivery", index, status))


def _worker(job: CapsulePlan, watched: bool) -> CapsuleResult:
    def sink(index: int, step: str, status: str, detail: str) -> None:
        if _worker_queue is not None:
            _worker_queue.put(("step", index, step, status, detail))

    try:
        return ship_one(job, sink, _QueuedWatcher() if watched and _worker_queue is not None else None)
    finally:
        # The queue's feeder thread may still hold this job's events when the
        # result reaches the parent; this marker, queued after them, tells the
        # parent they have all arrived.
        if _worker_queue is not None:
            _worker_queue.put(("end", job.index))


def _prepare_shared(jobs: list[CapsulePlan]) -> None:
    """Create what workers would otherwise race for: the dev key and the default stores (a dry run: nothing)."""
    jobs = [j for j in jobs if not j.options.dry_run]
    if any(j.dev_key and j.sign == "sign" for j in jobs):
        from ..signing import signatures as signing  # noqa: PLC0415 -- start-up: signing loads only when a ship signs (the hooks import ship too)

        signing.dev_key(create=True)
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
    watcher: ShipWatcher | None = None,
) -> ShipResult:
    """Ship every capsule in ``paths``; see the module docstring.

    ``jobs`` caps the worker processes (default: one per core, never more than
    the capsules); ``jobs=1`` runs in this process. ``events`` is called for
    every step start and end, and ``watcher`` (:class:`ShipWatcher`) when deliveries
    start and at each of their steps, from this process.
    """
    options = options or ShipOptions()
    planned = plan(paths, options)
    if on_plan is not None:
        on_plan([CapsuleResult(path=j.root, name=j.name, version=j.version) for j in planned])
    _prepare_shared(planned)
    workers = min(len(planned), jobs or os.cpu_count() or 1)
    if workers <= 1:
        return ShipResult([ship_one(j, events, watcher) for j in planned])
    return ShipResult(_run_pool(planned, workers, events, watcher))


#: the public name (``from qlcapsule import ship_capsules``): in the package, ``ship`` is this module
ship_capsules = ship


def _run_pool(
    planned: list[CapsulePlan], workers: int, events: EventSink | None, watcher: ShipWatcher | None
) -> list[CapsuleResult]:
    import multiprocessing  # noqa: PLC0415 -- start-up: multiprocessing loads only when this is called
    import queue as queue_mod  # noqa: PLC0415 -- start-up: queue loads only when this is called
    from concurrent.futures import Future, ProcessPoolExecutor  # noqa: PLC0415 -- start-up: concurrent.futures loads only when this is called

    ctx = multiprocessing.get_context("spawn")  # safe with threads; the same on every OS
    queue = ctx.Queue()
    env = {k: v for k, v in os.environ.items() if k.startswith("QLCAPSULE_")}
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue, env)) as pool:
        futures: list[Future[CapsuleResult]] = [pool.submit(_worker, j, watcher is not None) for j in planned]
        flushed: set[int] = set()

        def drain(block: bool) -> None:
            while True:
                try:
                    item = queue.get(timeout=0.1) if block else queue.get_nowait()
                except queue_mod.Empty:
                    return
                kind, index, *rest = item
                if kind == "end":
                    flushed.add(index)
                elif kind == "step" and events is not None:
                    events(index, *rest)
                elif kind == "ready" and watcher is not None:
                    watcher.ready(index, *rest)
                elif kind == "delivery" and watcher is not None:
                    watcher.delivery(index, *rest)
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
