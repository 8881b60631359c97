"""Delivery: send a capsule's exports to a named target and say exactly where they went.

``deliver_capsule(root, target, artifacts=None, dry_run=False)`` is what the CLI,
``ship``, the Action and the hooks call. Steps, in order, each failing with one line:

1. find the target: the operator's targets file first, then capsule.yaml
   ``targets:`` (no target named and none configured: the built-in ``local``
   target writing to ``./dist``). A target defined only in capsule.yaml may be
   ``local`` inside the working directory, nothing else: the content under test
   never decides where credentials go (:mod:`qlcapsule.steps.targets`);
2. validate the provider's options with its pydantic ``Options`` (before any
   network traffic), then check credentials (``Deliverer.check``);
3. with no artifacts given, export the capsule in the target's formats to a
   temporary directory (under ``dry_run``: only plan, write nothing);
4. ``Deliverer.deliver`` through the provider's circuit breaker; the deliverer
   uploads with retries, reads the object back (or compares the server checksum)
   and returns one :class:`Receipt` per artifact;
5. the core checks every receipt's SHA-256 and size against the artifact, records
   the receipts as a git note on the committed version (when there is a store),
   and calls the target's webhooks on success and on failure.

A caller that wants to watch (``ship --publish`` sends it to a catalog as it happens)
passes ``on_status``: it is called with each step of :data:`DELIVERY_STATUSES` as a dict
(the body of a catalog's ``POST /api/v1/deliveries``): ``planned`` once the target is
checked, ``uploading`` when the deliverer is handed the artifacts (``bytes``: their
total), ``verifying`` when it returns and the core checks its receipts, then
``delivered`` (``url``: the first receipt's, without a presigned query) or ``failed``
(``detail``: the error's line, scrubbed). It must not raise.

Credentials never appear in receipts, logs or errors: deliverers read them with
:func:`qlcapsule.read_secret` (or register them with :func:`qlcapsule.redact`), and
every SDK message goes through :func:`qlcapsule.scrub_error`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, IntegrityError, OptionsError, PluginError, QlcapsuleError, RemoteError
from ..format.capsule import Capsule
from ..format.model import TargetConfig
from ..format.tree import sha256_file
from ..log import event, get_logger, redact, scrub
from ..plugins.components import Deliverer
from ..plugins.records import Artifact, Receipt
from ..resilience import breaker_for, read_secret, scrub_error
from .targets import OperatorTargets, check_capsule_defined, check_local_path, operator_targets

__all__ = [
    "DEFAULT_TARGET",
    "DELIVERY_STATUSES",
    "StatusSink",
    "check_target",
    "deliver_capsule",
    "describe_delivery",
    "load_deliverer",
    "make_artifact",
    "resolve_target",
]

log = get_logger("qlcapsule.delivery")

#: used when no target is named and capsule.yaml defines none called ``local``
DEFAULT_TARGET = "local"
DEFAULT_LOCAL_PATH = "dist"
#: the steps ``on_status`` sees, in order (the last is one of the final two)
DELIVERY_STATUSES = ("planned", "uploading", "verifying", "delivered", "failed")
#: ``on_status(status)``: one step of a delivery as it happens (see the module docstring); must not raise
StatusSink = Callable[[dict[str, Any]], None]
#: a failed step's ``detail`` is the error's first line, at most this long
_DETAIL_CHARS = 500
_MEDIA_TYPES = {
    ".zip": "application/zip",
    ".tar": "application/x-tar",
    ".tgz": "application/gzip",
    ".gz": "application/gzip",
    ".xz": "application/x-xz",
    ".zst": "application/zstd",
    ".json": "application/json",
}


def make_artifact(path: str | Path, name: str | None = None, media_type: str | None = None) -> Artifact:
    """An :class:`Artifact` for a local file, hashing it once."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file (artifacts must be regular files)")
    mt = media_type or _MEDIA_TYPES.get(p.suffix.lower(), "application/octet-stream")
    return Artifact(path=p, name=name or p.name, sha256=sha256_file(p), size=p.stat().st_size, media_type=mt)


def resolve_target(
    capsule: Capsule, target: str | None, operator: OperatorTargets | None = None
) -> tuple[str, TargetConfig]:
    """The target's name and configuration; a clear error listing the defined ones when unknown.

    ``operator`` (default: :func:`qlcapsule.steps.targets.operator_targets` from the
    environment) is looked up first; capsule.yaml's definition of the same name is
    ignored. The returned configuration carries its origin, which
    :func:`load_deliverer` checks. With no target named, the capsule selects: its
    ``local`` target, or its only target, or the built-in ``local`` (./dist).
    """
    ops = operator if operator is not None else operator_targets()
    own = capsule.definition.targets
    definition = str(capsule.shown / "capsule.yaml")  # as the user named it, for messages
    if target is None:
        if DEFAULT_TARGET in own or not own:
            target = DEFAULT_TARGET
        elif len(own) == 1:
            target = next(iter(own))
        else:
            raise InputError(
                f"{definition}: several targets are defined ({', '.join(sorted(own))}); name one with --target"
            )
    if target in ops.targets:
        if target in own:
            _warn_once(
                f"target {target!r}: {ops.file}'s definition is used; the one in {definition} is ignored "
                "(a capsule selects targets, the operator defines them)"
            )
        return target, ops.targets[target]
    if target in own:
        return target, own[target].with_origin("trusted" if ops.trust_capsule else "capsule", definition)
    if target == DEFAULT_TARGET:
        builtin = TargetConfig(provider="local", options={"path": DEFAULT_LOCAL_PATH})
        return target, builtin.with_origin("builtin", "built-in local target")
    known = ", ".join(sorted(own)) or "none"
    theirs = f"; {ops.file} defines: {', '.join(sorted(ops.targets)) or 'none'}" if ops.file else ""
    raise InputError(f"{definition}: targets: no target {target!r} (defined: {known}{theirs})")


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def load_deliverer(name: str, config: TargetConfig, capsule: Capsule | None = None) -> Deliverer:
    """Look up the provider and validate its options; no network traffic.

    This is where a definition's origin is enforced, before any credential is read:
    a target defined only in capsule.yaml (origin ``capsule``) may only be ``local``
    without webhooks, and a ``local`` target the operator did not define writes only
    inside the working directory (see :mod:`qlcapsule.steps.targets`). Errors name the file
    that defined the target."""
    from ..plugins import manager as plugins  # noqa: PLC0415 -- plugin: the plugin manager loads only when a deliverer is needed

    try:
        cls = plugins.registry().get("deliverer", config.provider)
    except (PluginError, InputError) as exc:  # unknown, or its extra is not installed: named where it was chosen
        raise type(exc)(f"{config.where('provider')}: targets.{name}.provider: {exc.message}") from None
    if config.origin == "capsule":
        check_capsule_defined(name, config, capsule)
    _redact_url_passwords(config.options)
    inst = cls.from_options(config.options, where=f"{config.where('options')}: targets.{name}.options")
    assert isinstance(inst, Deliverer)
    if config.origin in ("capsule", "builtin") and config.provider == "local":
        path = str(getattr(inst.options, "path", DEFAULT_LOCAL_PATH))
        check_local_path(name, config, capsule.expand(path) if capsule is not None else path, capsule)
    _check_webhooks(config, f"{config.where('notify')}: targets.{name}")
    return inst


def _check_webhooks(config: TargetConfig, where: str) -> None:
    """A bad webhook URL is a bad option: refused now, before any export or upload, not when it fires."""
    from .notify import webhook_url_problem  # noqa: PLC0415 -- start-up: notify (http.client, ssl) loads only for a target with webhooks

    for i, hook in enumerate(config.notify):
        problem = webhook_url_problem(hook.url)
        if problem is not None:
            raise OptionsError(f"{where}.notify[{i}].url: {problem}")


def _redact_url_passwords(value: Any) -> None:
    """Options hold no secrets by design, but a URL with ``user:password@`` must not leak either."""
    if isinstance(value, dict):
        for v in value.values():
            _redact_url_passwords(v)
    elif isinstance(value, list):
        for v in value:
            _redact_url_passwords(v)
    elif isinstance(value, str) and "@" in value and "://" in value:
        try:
            password = urllib.parse.urlsplit(value).password
        except ValueError:
            return
        redact(password)
        redact(urllib.parse.unquote(password or ""))


def _formats(capsule: Capsule, config: TargetConfig, formats: Sequence[str] | None) -> list[str]:
    if formats:
        return list(formats)
    if config.formats:
        return list(config.formats)
    return list(capsule.definition.ship.formats) or ["tar.gz"]


def _export(capsule: Capsule, fmts: Sequence[str], outdir: Path, *, directories: bool) -> list[Artifact]:
    from . import exporting  # noqa: PLC0415 -- start-up: exporting loads only without --artifact

    artifacts = []
    for fmt in fmts:
        result = exporting.export_capsule(capsule.shown, fmt, outdir)  # messages name it as the user did
        assert result.path is not None
        if result.directory and not directories:
            raise InputError(f"format {fmt!r} exports a directory; this target needs a file format (e.g. tar.gz, zip)")
        artifacts.append(
            Artifact(
                path=result.path,
                name=result.path.name,
                sha256=result.sha256,
                size=result.size,
                media_type=result.media_type,
            )
        )
    return artifacts


def _planned(capsule: Capsule, fmts: Sequence[str]) -> list[Artifact]:
    """What the exports would be called (exporter and options checked); nothing is written."""
    from . import exporting  # noqa: PLC0415 -- start-up: exporting loads only without --artifact

    planned = []
    for fmt in fmts:
        exporter = exporting.resolve_exporter(capsule, fmt, None)
        name = exporter.filename(capsule, fmt)
        planned.append(Artifact(path=Path(name), name=name, sha256="", size=0, media_type=exporter.media_type_for(fmt)))
    return planned


def describe_delivery(
    capsule: Capsule,
    name: str,
    config: TargetConfig,
    deliverer: Deliverer,
    fmts: Sequence[str] = (),
    artifacts: Sequence[Artifact] = (),
) -> list[Receipt]:
    """Where each artifact would go (``artifacts``, else exports in ``fmts`` not yet written), as receipts
    marked ``extra["dry_run"]``; nothing is exported or sent."""
    planned = list(artifacts) or _planned(capsule, fmts)
    describe = getattr(deliverer, "describe", None)
    return [
        Receipt(
            provider=config.provider,
            target=name,
            location=describe(capsule, a) if callable(describe) else a.name,
            sha256=a.sha256,
            size=a.size,
            url=None,
            extra={"dry_run": True},
        )
        for a in planned
    ]


def check_target(
    capsule: Capsule, target: str | None, operator: OperatorTargets | None = None, *, overwrite: bool = False
) -> tuple[str, TargetConfig, Deliverer]:
    """Everything about a target that can be checked without sending anything: its definition and who
    wrote it, the provider, its options, webhook secrets and credentials (``Deliverer.check``).

    ``overwrite`` (``ship --force``) sets the provider's ``overwrite`` option; a provider without one
    is refused: it cannot replace what it holds."""
    name, config = resolve_target(capsule, target, operator)
    deliverer = load_deliverer(name, config, capsule)
    if overwrite:
        if "overwrite" not in type(deliverer.options).model_fields:
            raise InputError(
                f"--force: target {name!r} (provider {config.provider!r}) cannot overwrite what it holds; "
                f"bump 'version:' in {capsule.root / 'capsule.yaml'} instead"
            )
        config = config.model_copy(update={"options": {**config.options, "overwrite": True}})
        deliverer = load_deliverer(name, config, capsule)
    for hook in config.notify:
        if hook.secret_env:
            read_secret(hook.secret_env, what=f"targets.{name}.notify secret")
    deliverer.check(capsule)
    event(log, "deliver.checked", target=name, provider=config.provider)
    return name, config, deliverer


def _check_receipts(receipts: list[Receipt], artifacts: Sequence[Artifact], target: str) -> None:
    """Every receipt must name an artifact's exact SHA-256 and size: a deliverer cannot claim more than it did."""
    sizes = {a.sha256: a.size for a in artifacts}
    if len(receipts) < len(artifacts):
        raise RemoteError(
            f"target {target!r}: {len(artifacts)} artifacts sent but only {len(receipts)} receipts returned"
        )
    for r in receipts:
        if r.sha256 not in sizes or sizes[r.sha256] != r.size:
            raise IntegrityError(
                f"target {target!r}: {r.location}: delivered sha256 {r.sha256[:12]} / {r.size} bytes matches no artifact"
            )
        r.target = target
        _scrub_receipt(r)


def _scrub_receipt(r: Receipt) -> None:
    """A receipt never holds a credential, even if a deliverer put one there."""
    r.location = scrub(r.location)
    r.url = scrub(r.url) if r.url else r.url
    r.extra = json.loads(scrub(json.dumps(r.extra, default=str)))


def _lasting(receipt: dict[str, Any]) -> dict[str, Any]:
    """A receipt as it is kept for good (the git note): a presigned URL is a bearer credential
    for as long as it is valid, so only its address without the query is kept."""
    url = receipt.get("url")
    if url and "?" in url:
        receipt = {**receipt, "url": url.split("?", 1)[0], "url_signed": True}
    return receipt


def _record(capsule: Capsule, receipts: list[Receipt]) -> bool:
    """Add the receipts as a git note to the committed version; skip with a log line without a store."""
    try:
        from ..store import versions as store  # type: ignore[attr-defined]  # noqa: PLC0415 -- start-up: the store (pygit2) loads only when the receipt is recorded in a store

        add_note = store.add_note  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        event(log, "receipt.note.skipped", reason="no version store module")
        return False
    data = {"receipts": [_lasting(r.to_dict()) for r in receipts]}
    try:
        add_note(capsule.root, capsule.ref, data, store=None)
    except QlcapsuleError as exc:
        event(log, "receipt.note.skipped", reason=scrub(exc.message))
        return False
    event(log, "receipt.note.added", ref=capsule.ref)
    return True


def _status_reporter(on_status: StatusSink | None, capsule: Capsule, target: str, provider: str) -> Callable[..., None]:
    """``report(status, url=, detail=, bytes=)`` for one delivery; does nothing without ``on_status``."""

    def report(status: str, *, url: str | None = None, detail: str | None = None, nbytes: int | None = None) -> None:
        if on_status is not None:
            on_status(
                {
                    "capsule": capsule.name,
                    "version": capsule.version,
                    "target": target,
                    "provider": provider,
                    "status": status,
                    "url": url,
                    "detail": detail,
                    "bytes": nbytes,
                }
            )

    return report


def _one_line(message: str) -> str:
    lines = scrub(message).strip().splitlines()
    return (lines[0] if lines else "failed")[:_DETAIL_CHARS]


def _notify(config: TargetConfig, outcome: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    if not config.notify:
        return []
    from .notify import notify  # noqa: PLC0415 -- start-up: notify (http.client, ssl) loads only for a target with webhooks

    return [r.to_dict() for r in notify(config.notify, outcome, payload)]


def deliver_capsule(
    root: str | Path,
    target: str | None = None,
    artifacts: Sequence[str | Path | Artifact] | None = None,
    *,
    dry_run: bool = False,
    formats: Sequence[str] | None = None,
    record: bool = True,
    operator: OperatorTargets | None = None,
    overwrite: bool = False,
    on_status: StatusSink | None = None,
) -> list[Receipt]:
    """Deliver ``artifacts`` (or fresh exports of the capsule at ``root``) to ``target``.

    Returns one receipt per artifact. Under ``dry_run`` options, credentials,
    formats and (without ``artifacts``) the capsule's integrity are checked and
    the returned receipts (``extra["dry_run"] = True``) say what would be sent
    where; nothing is exported or uploaded. ``operator``: the operator's targets
    (default: found from the environment, see :mod:`qlcapsule.steps.targets`); ``overwrite``: see
    :func:`check_target`. ``on_status``: told each step as it happens (the module docstring; not
    under ``dry_run``).
    """
    capsule = Capsule.load(root)
    name, config, deliverer = check_target(capsule, target, operator, overwrite=overwrite)

    given = [a if isinstance(a, Artifact) else make_artifact(a) for a in artifacts or []]
    fmts = _formats(capsule, config, formats)
    if dry_run:
        if not given:
            # the real delivery exports, and an export refuses a capsule changed since it was
            # sealed: a dry run must fail the same way, not answer "would deliver"
            capsule.verify_integrity()
        return describe_delivery(capsule, name, config, deliverer, fmts, given)

    tmp: Path | None = None
    base = {"capsule": capsule.ref, "target": name, "provider": config.provider}
    report = _status_reporter(on_status, capsule, name, config.provider)
    report("planned", nbytes=sum(a.size for a in given) if given else None)
    try:
        if given:
            arts = given
        else:
            capsule.require_lock()
            tmp = Path(tempfile.mkdtemp(prefix="qlcapsule-deliver-"))
            arts = _export(capsule, fmts, tmp, directories=getattr(deliverer, "accepts_directories", False))
        total = sum(a.size for a in arts)
        report("uploading", nbytes=total)
        breaker = breaker_for(config.provider)
        try:
            receipts = breaker.call(lambda: deliverer.deliver(capsule, arts, target=name))
        except QlcapsuleError:
            raise
        except Exception as exc:  # noqa: BLE001 - an SDK error a deliverer did not translate
            raise RemoteError(f"target {name!r} ({config.provider}): {scrub_error(exc)}") from None
        report("verifying", nbytes=total)
        _check_receipts(receipts, arts, name)
    except QlcapsuleError as exc:
        _notify(config, "failure", {**base, "error": scrub(exc.message)})
        report("failed", detail=_one_line(exc.message))
        raise
    except Exception as exc:  # a bug: ship reports it; a watcher must not see this delivery hang at its last step
        report("failed", detail=_one_line(f"internal error: {type(exc).__name__}"))
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    for r in receipts:
        event(log, "deliver.done", target=name, provider=r.provider, location=r.location, sha256=r.sha256)
    held = all(r.extra.get("existing") for r in receipts)
    url = next((_lasting(r.to_dict())["url"] for r in receipts if r.url), None)
    report("delivered", url=url, nbytes=total, detail="the target held these bytes already" if held else None)
    if record and not held:  # a delivery that changed nothing notes nothing
        _record(capsule, receipts)
    _notify(config, "success", {**base, "receipts": [r.to_dict() for r in receipts]})
    return receipts
