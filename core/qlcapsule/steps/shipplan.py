"""The plan of ``ship``: what a run will do, worked out before anything is written.

:func:`make_plan` reads every input and returns one :class:`CapsulePlan` per
capsule; a refusal raises here, naming the file, flag or field, so nothing is
half-shipped. ``--dry-run`` prints the plan and the real run executes it: both
start from the same object, so what a dry run says is what the run does.

Checked for each capsule, in order (each only when its step runs):

1. capsule.yaml (the model), the steps (``ship:`` and the ``--no-STEP`` flags),
   no two capsules of one ``name@version``;
2. the formats: an exporter for each and its options (capsule.yaml ``exports:``);
3. the targets: resolved through the operator's targets file, the provider looked
   up (a missing SDK extra is bad input here), its options, credentials and webhook
   secrets checked (:func:`qlcapsule.steps.delivery.check_target`); ``--force``
   needs a provider that can overwrite;
4. the signing key: ``--key``/``--key-env`` must load as a private key. Without
   one the development key signs an unsigned capsule, or one it signed before;
   someone else's current signature is kept, a stale one is refused;
5. the seal: the files are hashed now, giving the digest the run seals and what
   changed since capsule.lock;
6. the store: this version recorded with another digest is refused (bump
   ``version:``, or ``--force``); with the same digest the run resumes;
7. where artifacts go: a path inside the capsule that is not excluded is refused
   (the next seal would take it in); an artifact already in a local target with
   other content is refused like a changed version.

Only the last check may export (to a temporary directory, removed at once): when
nothing changes and a local target already holds the artifact, the export is
compared with it. Nothing else is written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConflictError, InputError, QlcapsuleError
from ..format.capsule import Capsule
from ..format.lock import build_lock, compare, parse_lock, render_lock
from ..format.names import MAX_LOCK_BYTES
from ..format.tree import read_regular, sha256_file, walk
from ..progress import bytes_progress

if TYPE_CHECKING:
    from ..signing.signatures import SigningKey
    from .targets import OperatorTargets

__all__ = ["STEPS", "CapsulePlan", "ShipOptions", "default_store", "make_plan"]

STEPS = ("seal", "validate", "sign", "commit", "export", "deliver")
DEFAULT_STORE = Path(".qlcapsule") / "store.git"


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
    #: record a second build of a version already in the store, and overwrite at targets that can
    force: bool = False


@dataclass
class CapsulePlan:
    """What shipping one capsule will do; the run carries it out step by step."""

    index: int
    root: str
    name: str
    version: str
    steps: tuple[str, ...]
    formats: tuple[str, ...]
    targets: tuple[str | None, ...]
    store: str | None
    branch: str
    options: ShipOptions
    #: the operator's targets, read once by make_plan()
    operator: OperatorTargets | None = None
    #: the digest the run seals (with --no-seal: the lock's), and how many files
    digest: str | None = None
    files: int = 0
    #: whether the seal step rewrites capsule.lock, and what changed since it
    seal_writes: bool = False
    changes: list[str] = field(default_factory=list)
    #: the sign step: off, sign (writes capsule.sig), already (this key signed this seal), keep (another's, current)
    sign: str = "off"
    key_label: str = ""
    keyid: str | None = None
    dev_key: bool = False
    #: where the commit step writes, and the commit already recording this version with this digest
    store_label: str = ""
    recorded: str | None = None
    #: the branch head already is this version with this seal and signature: commit is a no-op
    commit_unchanged: bool = False
    #: formats to export (ship's and the targets'), and each artifact's name and destination
    exports: tuple[str, ...] = ()
    #: artifacts a local target does not hold yet (remote targets are asked only when delivering)
    undelivered: int = 0
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: the signing key loaded for the plan; reloaded from key/key_env in a worker process
    signing_key: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["signing_key"] = None  # private key objects do not cross process boundaries
        return state

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def already_shipped(self) -> bool:
        """This version, seal and signature are in the store already: the run changes nothing."""
        return (
            not self.seal_writes
            and self.sign != "sign"
            and "commit" in self.steps
            and self.commit_unchanged
            and not self.undelivered
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "seal": {"digest": self.digest, "files": self.files, "writes": self.seal_writes, "changes": self.changes},
            "sign": {"action": self.sign, "key": self.key_label or None, "keyid": self.keyid},
            "commit": (
                {
                    "store": self.store_label,
                    "branch": self.branch,
                    "version": self.version,
                    "recorded": self.recorded,
                    "unchanged": self.commit_unchanged,
                }
                if "commit" in self.steps
                else None
            ),
            "artifacts": self.artifacts,
            "already_shipped": self.already_shipped,
            "warnings": self.warnings,
        }


def default_store(root: Path, store: str | None = None) -> str | None:
    """The store ``commit`` writes to: explicit, the enclosing git repository (None), or the local default."""
    store = store or os.environ.get("QLCAPSULE_STORE") or None
    if store:
        return store
    if _enclosing_repo(root) is not None:
        return None
    return str(root.parent / DEFAULT_STORE)


def _enclosing_repo(root: Path) -> str | None:
    import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only when this is called

    try:
        found = pygit2.discover_repository(str(root))
    except pygit2.GitError:
        return None
    return found or None


class _Keys:
    """The configured signing key, loaded once, on first use (a capsule may not sign at all)."""

    def __init__(self, options: ShipOptions) -> None:
        self.options = options
        self._key: SigningKey | None = None

    @property
    def configured(self) -> bool:
        return bool(self.options.key or self.options.key_env)

    def get(self) -> SigningKey:
        if self._key is None:
            from ..signing import signatures as signing  # noqa: PLC0415 -- start-up: signing loads only when this is called

            key_env = self.options.key_env  # --key-env wins over --key (and $QLCAPSULE_SIGNING_KEY)
            self._key = signing.load_signing_key(None if key_env else self.options.key, key_env=key_env)
        return self._key


def make_plan(paths: Iterable[str | Path], options: ShipOptions) -> list[CapsulePlan]:
    """Check every input and work out what shipping each capsule will do; raise on bad input or a refusal."""
    from .targets import operator_targets  # noqa: PLC0415 -- start-up: the targets file (pydantic, yaml) loads only when this is called

    unknown = set(options.skip) - set(STEPS)
    if unknown:
        raise InputError(f"unknown step(s) to skip: {', '.join(sorted(unknown))} (steps: {', '.join(STEPS)})")
    roots = [Path(p) for p in paths] or [Path(".")]
    capsules: list[Capsule] = []
    refs: dict[str, Path] = {}
    for root in roots:
        capsule = Capsule.load(root)
        if any(c.root == capsule.root for c in capsules):
            continue
        other = refs.setdefault(capsule.ref, capsule.root)
        if other != capsule.root:  # one store branch, one artifact name: the second would clash mid-run
            raise InputError(f"{capsule.root}: {capsule.ref} is also {other}; ship one capsule per name and version")
        capsules.append(capsule)
    operator = (
        operator_targets(options.targets_file, options.trust_capsule_targets) if "deliver" not in options.skip else None
    )
    keys = _Keys(options)
    plans = [_plan_one(i, capsule, options, operator) for i, capsule in enumerate(capsules)]
    for plan, capsule in zip(plans, capsules, strict=True):
        if "sign" in plan.steps:
            _plan_sign(plan, capsule, keys)  # a bad key fails before any capsule is hashed
    for plan, capsule in zip(plans, capsules, strict=True):
        _plan_seal(plan, capsule)
        if "sign" in plan.steps:
            _plan_signature(plan, capsule, keys)
        if "commit" in plan.steps:
            _plan_commit(plan, capsule)
        if "export" in plan.steps:
            _plan_outputs(plan, capsule)
    return plans


def _plan_one(index: int, capsule: Capsule, options: ShipOptions, operator: OperatorTargets | None) -> CapsulePlan:
    cfg = capsule.definition.ship
    switched = {"validate": cfg.validate_, "sign": cfg.sign, "commit": cfg.commit, "deliver": cfg.deliver}
    steps = [s for s in STEPS if s not in options.skip and switched.get(s, True)]
    if "export" not in steps and "deliver" in steps:
        steps.remove("deliver")
    plan = CapsulePlan(
        index=index,
        root=str(capsule.root),
        name=capsule.name,
        version=capsule.version,
        steps=tuple(steps),
        formats=tuple(options.formats or cfg.formats or ["tar.gz"]),
        targets=tuple(options.targets or cfg.targets) or (None,),
        store=default_store(capsule.root, options.store) if "commit" in steps else None,
        branch=options.branch or cfg.branch,
        options=options,
        operator=operator,
    )
    from .exporting import resolve_exporter  # noqa: PLC0415 -- start-up: exporting loads only when this is called

    for fmt in plan.formats:
        resolve_exporter(capsule, fmt, None)  # raises naming the format, or the bad option
    plan.exports = plan.formats
    if "deliver" in steps:
        _plan_targets(plan, capsule)
    elif "export" in steps:
        for fmt in plan.formats:
            name = _artifact_name(capsule, fmt, deliver=False)
            where = str(Path(options.output) / name)
            plan.artifacts.append({"format": fmt, "name": name, "target": None, "provider": None, "location": where})
    return plan


def _artifact_name(capsule: Capsule, fmt: str, *, deliver: bool) -> str:
    from .exporting import canonical_format, resolve_exporter  # noqa: PLC0415 -- start-up: exporting loads only when this is called

    exporter = resolve_exporter(capsule, fmt, None)
    if deliver and canonical_format(exporter, fmt) in exporter.directory_formats:
        raise InputError(
            f"format {fmt!r} exports a directory, which cannot be delivered; "
            "pick an archive format or ship with --no-deliver"
        )
    return exporter.filename(capsule, fmt)


def _plan_targets(plan: CapsulePlan, capsule: Capsule) -> None:
    from .delivery import check_target, describe_delivery  # noqa: PLC0415 -- start-up: delivery (pydantic, yaml, http) loads only when this is called

    exports = list(plan.formats)
    for target in plan.targets:
        name, config, deliverer = check_target(capsule, target, plan.operator, overwrite=plan.options.force)
        fmts = list(config.formats or plan.formats)
        names = [_artifact_name(capsule, fmt, deliver=True) for fmt in fmts]
        exports += [f for f in fmts if f not in exports]
        for fmt, receipt in zip(fmts, describe_delivery(capsule, name, config, deliverer, fmts), strict=True):
            plan.artifacts.append(
                {
                    "format": fmt,
                    "name": names[fmts.index(fmt)],
                    "target": name,
                    "provider": config.provider,
                    "location": receipt.location,
                }
            )
    plan.exports = tuple(exports)


def _plan_seal(plan: CapsulePlan, capsule: Capsule) -> None:
    """The digest the run will ship, and what changed since capsule.lock (hashing every file once)."""
    old_raw: bytes | None = None
    unreadable: str | None = None
    try:
        old_raw = read_regular(capsule.lock_path, name="capsule.lock", limit=MAX_LOCK_BYTES)
    except QlcapsuleError as exc:  # sealing replaces a lock it cannot read
        unreadable = exc.message
    if "seal" not in plan.steps:  # --no-seal: the seal step verifies the lock; it is what ships
        try:
            lock = parse_lock(old_raw, str(capsule.lock_path)) if old_raw is not None else None
        except QlcapsuleError:
            lock = None
        plan.digest, plan.files = (lock.digest, len(lock.files)) if lock else (None, 0)
        return

    def total() -> int:  # sized only when a progress bar is shown
        return sum(f.size for f in walk(capsule.root, capsule.globs()))

    with bytes_progress(f"hashing {capsule.ref}", total) as advance:
        entries = capsule.scan(progress=advance)
    lock = build_lock(capsule.name, capsule.version, entries)
    plan.digest, plan.files = lock.digest, len(lock.files)
    plan.seal_writes = render_lock(lock) != old_raw
    if not plan.seal_writes:
        return
    if unreadable is not None:
        plan.changes = [f"capsule.lock replaced: {unreadable}"]
        return
    if old_raw is None:
        plan.changes = ["not sealed yet"]
        return
    try:
        old = parse_lock(old_raw, str(capsule.lock_path))
    except QlcapsuleError as exc:
        plan.changes = [f"capsule.lock replaced: {exc.message}"]
        return
    plan.changes = compare(old, entries).lines()
    if (old.name, old.version) != (capsule.name, capsule.version):
        plan.changes.insert(0, f"{old.name}@{old.version} -> {capsule.ref}")


def _plan_sign(plan: CapsulePlan, capsule: Capsule, keys: _Keys) -> None:
    """Which key signs: the configured one (loaded now: a bad key fails here), else the development key."""
    from ..signing import signatures as signing  # noqa: PLC0415 -- start-up: signing loads only when this is called

    if keys.configured:
        plan.signing_key = keys.get()
        plan.key_label = f"${plan.options.key_env}" if plan.options.key_env else str(plan.options.key)
    else:
        plan.dev_key = True
        path = signing.qlcapsule_home() / "dev.key"
        if path.is_file():
            plan.signing_key = signing.load_signing_key(signing.dev_key(create=False))  # a damaged key fails now
            plan.key_label = f"the development key {path}"
        else:
            plan.key_label = f"a new development key (created at {path})"
    plan.keyid = plan.signing_key.keyid if plan.signing_key is not None else None
    plan.sign = "sign"


def _plan_signature(plan: CapsulePlan, capsule: Capsule, keys: _Keys) -> None:
    """Whether capsule.sig is rewritten. The development key replaces only its own signature."""
    from ..signing.envelope import Envelope, Statement  # noqa: PLC0415 -- start-up: signing loads only when this is called

    where = str(capsule.sig_path)
    try:
        raw = capsule.sig_bytes()
        envelope = Envelope.from_json(raw, where) if raw is not None else None
        statement = Statement.parse(envelope.payload, where) if envelope is not None else None
    except (OSError, QlcapsuleError):  # a malformed capsule.sig is replaced (sign_capsule warns)
        return
    if envelope is None or statement is None:
        return
    current = (
        statement.subject_name == plan.ref
        and statement.name == plan.name
        and statement.version == plan.version
        and statement.digest == plan.digest
        and statement.expires is None
    )
    own = plan.signing_key is not None and _signed_by(envelope, plan.signing_key, where)
    if own and current:
        plan.sign = "already"
    elif keys.configured:
        return
    elif own:
        plan.warnings.append(
            f"{where}: re-signing with the DEVELOPMENT key, which signed the last seal; "
            "pass --key (or --key-env) with a release key for releases"
        )
    elif current:
        plan.sign = "keep"  # another key's signature over exactly this seal: no development key replaces it
    else:
        ids = ", ".join(sorted({s.keyid[:16] for s in envelope.signatures})) or "no key"
        raise InputError(
            f"{where}: signed by {ids}, not by the development key, over {statement.subject_name} "
            f"sha256:{statement.digest[:12]}, which is not what ships now ({plan.ref} sha256:{(plan.digest or '')[:12]}); "
            "pass --key or --key-env with the key that signs this capsule, or --no-sign"
        )


def _signed_by(envelope: Any, key: SigningKey, where: str) -> bool:
    """True when ``key`` itself verifies a signature of ``envelope`` (a key id it claims proves nothing)."""
    from ..signing.envelope import verify_envelope  # noqa: PLC0415 -- start-up: signing loads only when this is called

    try:
        verify_envelope(envelope, [key.verify_key()], 1, where)
    except QlcapsuleError:
        return False
    return True


def _plan_commit(plan: CapsulePlan, capsule: Capsule) -> None:
    """The store: where the version goes, and whether this version is there already (same digest: resume)."""
    from ..store.repo import check_branch_name, check_text, open_store, parse_trailers  # noqa: PLC0415 -- start-up: the store (pygit2) loads only when this is called

    check_branch_name(plan.branch)
    if plan.options.message is not None:
        check_text(plan.options.message, "-m/--message")
    store = Path(plan.store).expanduser() if plan.store else None
    if store is not None:
        from .exporting import inside_capsule  # noqa: PLC0415 -- start-up: exporting loads only when this is called

        inside = inside_capsule(capsule, store / "HEAD")
        if inside is not None:
            raise InputError(
                f"{plan.store}: the store is inside the capsule {capsule.root}, where the next seal would take it "
                f"in ({inside!r}); keep it outside, or add it to 'exclude:' in capsule.yaml"
            )
    if store is not None and (not store.exists() or (store.is_dir() and not any(store.iterdir()))):
        plan.store_label = str(plan.store)  # created by the first commit
        return
    st = open_store(capsule.root, plan.store, create=False)
    plan.store_label = plan.store or st.location
    found = _recorded(st, plan)
    if found is None:
        return
    commit, tagged = found
    digest = parse_trailers(commit.message).get("digest", "").removeprefix("sha256:")
    if plan.digest is None or digest == plan.digest:
        plan.recorded = str(commit.id)
        plan.commit_unchanged = (
            plan.digest is not None
            and st.head(plan.name, plan.branch) == commit.id
            and plan.sign != "sign"
            and _same_signature(commit, capsule)
        )
        return
    fix = f"bump 'version:' in {capsule.root / 'capsule.yaml'}"
    if tagged:
        fix += f" (tag {plan.version} marks the shipped build and never moves)"
    elif plan.options.force:
        plan.warnings.append(f"--force: recording a second build of {plan.ref} in {plan.store_label}")
        return
    else:
        fix += ", or pass --force to record a second build of it (targets must allow overwriting)"
    raise ConflictError(
        f"{plan.ref} is already in the store {plan.store_label} (commit {str(commit.id)[:12]}) with other content "
        f"(sha256:{digest[:12]}, now sha256:{plan.digest[:12]}); {fix}"
    )


def _recorded(st: Any, plan: CapsulePlan) -> tuple[Any, bool] | None:
    """The commit recording ``plan.version``: its tag, else the newest on the branch (or main); and whether tagged."""
    from ..store.repo import DEFAULT_BRANCH  # noqa: PLC0415 -- start-up: the store (pygit2) loads only when this is called

    tagged = st.tags(plan.name).get(plan.version)
    if tagged is not None:
        return st.repo[tagged], True
    for branch in dict.fromkeys((plan.branch, DEFAULT_BRANCH)):
        found = st.find_version(plan.name, plan.version, branch=branch)
        if found is not None:
            return st.repo[found], False
    return None


def _same_signature(commit: Any, capsule: Capsule) -> bool:
    """The stored version's capsule.sig is byte for byte the one on disk (or both have none)."""
    import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only when this is called

    raw = capsule.sig_bytes()
    try:
        stored = commit.tree["capsule.sig"].id
    except KeyError:
        return raw is None
    return raw is not None and pygit2.hash(raw) == stored


def _plan_outputs(plan: CapsulePlan, capsule: Capsule) -> None:
    """Refuse outputs that would land in the capsule, and local artifacts another build already left."""
    from .exporting import inside_capsule  # noqa: PLC0415 -- start-up: exporting loads only when this is called; the one rule for "this path would become a capsule file"

    exported: dict[str, str | None] = {}
    for art in plan.artifacts:
        if art["provider"] not in ("local", None):
            continue
        path = Path(art["location"])
        inside = inside_capsule(capsule, path)
        if inside is not None:
            what = f"target {art['target']!r}" if art["target"] else "-o/--output"
            raise InputError(
                f"{path}: {what} writes inside the capsule {capsule.root}, where the next seal would take it in as "
                f"{inside!r}; write outside it, or add the directory to 'exclude:' in capsule.yaml"
            )
        if art["target"] is None:
            continue  # exports to --output replace what is there, as 'qlcapsule export' does
        if not path.is_file():
            plan.undelivered += 1
            continue
        if plan.options.force:
            continue
        if plan.seal_writes or plan.sign == "sign":
            same = False  # a new lock or signature is in the archive: it cannot be the one there
        else:
            if art["format"] not in exported:
                exported[art["format"]] = _export_sha(capsule, art["format"], art["name"])
            sha = exported[art["format"]]
            same = sha is None or sha == sha256_file(path)
        if not same:
            raise ConflictError(
                f"{path}: already holds another build of {plan.ref}; bump 'version:' in "
                f"{capsule.root / 'capsule.yaml'}, or pass --force to replace it"
            )


def _export_sha(capsule: Capsule, fmt: str, name: str) -> str | None:
    """SHA-256 of what exporting the capsule as it is sealed now gives (None when it cannot be exported now:
    the run then fails at its seal or export step, in a dry run too)."""
    from .exporting import export_capsule  # noqa: PLC0415 -- start-up: exporting loads only when this is called

    with tempfile.TemporaryDirectory(prefix="qlcapsule-plan-") as tmp:
        try:
            return export_capsule(capsule.root, fmt, Path(tmp) / name).sha256
        except QlcapsuleError:
            return None
