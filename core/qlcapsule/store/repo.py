"""The version store's repository: where it is, its refs, locks, signatures and records (pygit2).

``versions.py`` builds the operations on versions (commit, log, tags, notes) on
this module and ``commit.py`` turns a capsule directory into a commit; both
import from here, never the other way round.

Every ref a writer moves goes through :meth:`Store.cas_ref` (compare-and-swap:
libgit2 checks the old target under its ref lock) inside the capsule's
``flock`` (:func:`capsule_lock`); a writer that loses a race reads again in
:meth:`Store.retry_update`, the one retry loop, so no version is lost.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import InputError, IntegrityError, QlcapsuleError, SignatureError, StoreError
from ..format.lock import atomic_write
from ..format.names import SEMVER, semver_key  # noqa: F401  (semver_key: re-exported, store and merge import it from here)
from ..format.tree import read_regular
from ..log import WARNING, event, get_logger, printable

if TYPE_CHECKING:
    import pygit2

log = get_logger("store")

ENV_STORE = "QLCAPSULE_STORE"
REF_ROOT = "refs/capsules"
NOTES_REF = "refs/notes/qlcapsule"
DEFAULT_BRANCH = "main"
LOCAL_STORE = Path(".qlcapsule") / "store.git"
MERGE_STATE = ".qlcapsule/merge.json"
#: capsule.yaml's top-level ``version:`` line, its value in group 1 (a merge and a stale-base check compare around it)
VERSION_LINE = re.compile(rb"^version:[ \t]*['\"]?([^'\"\s#]+)['\"]?[ \t]*(#.*)?$", re.M)
_TRAILER = re.compile(r"^Qlcapsule-(Capsule|Version|Digest): *(\S+) *$", re.M)
_BRANCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # \Z: "$" would accept a final newline
#: how often a writer that lost a compare-and-swap reads the ref again before giving up
_RETRIES = 200
#: longest branch, tag or revision accepted: a git ref name component is a file name (255 bytes on most file systems)
REF_PART_LIMIT = 255
#: the largest ``.qlcapsule/merge.json`` read (the merge tool writes well under 1 KiB plus the conflict list)
MERGE_STATE_LIMIT = 1 << 20
_OID = re.compile(r"^[0-9a-f]{40}\Z")  # \Z: "$" would accept a final newline
#: a check of one candidate commit: None to accept it, else why it is refused
Accept = Callable[[Any], "str | None"]
T = TypeVar("T")


# -- input checks ---------------------------------------------------------------


def _shown(value: str) -> str:
    """``value`` quoted for a message, cut to 60 characters, undecodable bytes as ``\\xff``."""
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "'" + (value if len(value) <= 60 else value[:59] + "…") + "'"


def check_text(value: str, what: str) -> str:
    """Refuse text git cannot store: bytes that were not UTF-8 on the command line arrive as lone surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what}: {_shown(value)} is not valid UTF-8") from None
    return value


def check_ref_part(value: str, what: str) -> str:
    """A capsule name, branch, version or revision that can be looked up as (part of) a ref name."""
    check_text(value, what)
    if len(value.encode("utf-8")) > REF_PART_LIMIT:
        raise InputError(
            f"{what}: {_shown(value)} is {len(value)} characters long; at most {REF_PART_LIMIT} are allowed"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InputError(f"{what}: {_shown(value)} contains control characters")
    return value


# -- results --------------------------------------------------------------------


@dataclass
class CommitResult:
    """What ``commit_capsule`` did."""

    capsule: str
    version: str
    digest: str
    commit: str
    branch: str
    ref: str
    store: str
    parents: list[str] = field(default_factory=list)
    created: bool = True
    files: int = 0
    new_blobs: int = 0
    hashed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_pygit2() -> Any:
    """The pygit2 module, imported on first use.

    Lazy for start-up: importing pygit2 (libgit2, ssl) costs about 0.12 s, which
    commands that never open a store (seal, validate, verify without one) do not pay.
    """
    import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only when a store is opened (see above)

    return pygit2


def enable_fsync() -> None:
    """Make libgit2 fsync what it writes (objects, refs, reflogs) before a ref moves."""
    pygit2 = load_pygit2()
    pygit2.option(pygit2.GIT_OPT_ENABLE_FSYNC_GITDIR, 1)


# -- the store ------------------------------------------------------------------


def _common_dir(git_dir: Path) -> Path:
    """``git rev-parse --git-common-dir``: a linked worktree's gitdir names it in ``commondir``."""
    try:
        pointer = (git_dir / "commondir").read_text("utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return git_dir
    common = (git_dir / pointer).resolve()
    return common if (common / "objects").is_dir() else git_dir


class Store:
    """A git repository holding capsule versions under ``refs/capsules/``."""

    def __init__(self, repo: pygit2.Repository, *, dedicated: bool) -> None:
        self.repo = repo
        #: True for a ``--store`` repository, False for the user's own repository
        self.dedicated = dedicated
        #: the repository's common directory: objects, shared refs (refs/capsules/...) and
        #: qlcapsule's locks live there, not in a linked worktree's own .git/worktrees/NAME
        self.git_dir = _common_dir(Path(repo.path))
        #: the store as the user named it (--store, $QLCAPSULE_STORE), for messages; None when found
        self.given: str | None = None

    @property
    def location(self) -> str:
        return str(self.git_dir if self.repo.is_bare else Path(self.repo.workdir or self.git_dir))

    @property
    def shown(self) -> str:
        """The store in messages: as the user named it, else where it was found."""
        return self.given or self.location

    # names
    @staticmethod
    def head_ref(name: str, branch: str) -> str:
        return f"{REF_ROOT}/{name}/heads/{branch}"

    @staticmethod
    def tag_ref(name: str, version: str) -> str:
        return f"{REF_ROOT}/{name}/tags/{version}"

    def refs_under(self, prefix: str) -> dict[str, Any]:
        out = {}
        for n in self.repo.listall_references():
            if n.startswith(prefix):
                out[n[len(prefix) :]] = n
        return out

    def capsules(self) -> list[str]:
        names = set()
        for n in self.repo.listall_references():
            parts = n.split("/")
            if len(parts) >= 5 and n.startswith(REF_ROOT + "/"):
                names.add(parts[2])
        return sorted(names)

    def head(self, name: str, branch: str = DEFAULT_BRANCH) -> Any | None:
        """The commit id branch ``branch`` of ``name`` points at; None when there is no such branch."""
        check_ref_part(name, "capsule name")
        check_ref_part(branch, "branch")
        ref = self.repo.references.get(self.head_ref(name, branch))
        if ref is None:
            return None
        return self._present(ref.target, f"{name}: branch {branch!r}")

    def _ref(self, refname: str) -> Any | None:
        """The reference ``refname``, or None when it does not exist or git refuses the name."""
        try:
            return self.repo.references.get(refname)
        # older pygit2 (1.18, the newest for 3.10) raises for a name git refuses (ending in .lock)
        except load_pygit2().InvalidSpecError:
            return None

    def _present(self, target: Any, what: str) -> Any:
        if target not in self.repo:  # a damaged store: a ref written by hand, objects pruned or never fetched
            raise StoreError(
                f"{what} points at {str(target)[:12]}, which is missing from {self.shown} (a damaged store: repair it with git)"
            )
        return target

    def branches(self, name: str) -> dict[str, str]:
        prefix = f"{REF_ROOT}/{name}/heads/"
        return {b: str(self.repo.references[r].target) for b, r in sorted(self.refs_under(prefix).items())}

    def tags(self, name: str) -> dict[str, str]:
        """version -> commit id (peeled)."""
        pygit2 = load_pygit2()
        prefix = f"{REF_ROOT}/{name}/tags/"
        out = {}
        for version, refname in self.refs_under(prefix).items():
            obj = self.repo.references[refname].peel(pygit2.Commit)
            out[version] = str(obj.id)
        return out

    # locking
    def lock(self, what: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive per-capsule lock; the kernel drops it if the process dies."""
        return capsule_lock(self.git_dir, what)

    def cas_ref(self, refname: str, new: Any, old: Any | None, message: str) -> bool:
        """Point ``refname`` at ``new`` if it still points at ``old`` (None: must not exist).

        Returns False when another writer got there first (the caller retries).
        """
        pygit2 = load_pygit2()
        refs = self.repo.references
        try:
            if old is None:
                if refs.get(refname) is not None:
                    return False
                self.repo.create_reference_direct(refname, new, False, message=message)
                return True
            ref = refs.get(refname)
            if ref is None or ref.target != old:
                return False
            ref.set_target(new, message)  # libgit2 re-checks the old target under the ref lock
            return True
        except pygit2.AlreadyExistsError:
            return False
        except pygit2.InvalidSpecError as exc:  # not a lock held by another writer: retrying cannot help
            raise StoreError(f"{self.shown}: {refname!r} is not a valid git ref name ({exc})") from None
        except (pygit2.GitError, OSError) as exc:  # libgit2 reports a held ref lock as OSError
            text = str(exc).lower()
            if "lock" in text:
                clear_stale_ref_lock(self.git_dir, refname)
                return False
            if "modified" in text or "current" in text or "exists" in text:
                return False
            raise StoreError(f"{self.shown}: cannot update {refname}: {exc}") from None

    def retry_update(self, refname: str, attempt: Callable[[], T | None]) -> T:
        """``attempt()`` until it returns a result; None means another writer moved ``refname`` first.

        The one retry loop of the store: each attempt reads the ref again and
        tries its compare-and-swap; the pause grows to 50 ms between attempts.
        """
        for n in range(_RETRIES):
            done = attempt()
            if done is not None:
                return done
            time.sleep(min(0.001 * (n + 1), 0.05))
        raise StoreError(f"{self.shown}: could not update {refname} (too many concurrent writers); try again")

    # revisions
    def resolve(self, name: str, rev: str, *, branch: str | None = None, accept: Accept | None = None) -> Any:
        """A commit of capsule ``name`` from a version, tag, branch, ``branch~N`` or commit id.

        A version is the capsule's tag of that name, else the newest commit on ``branch``
        (default: main) recording it; with ``branch`` given the tag is not consulted.
        A revision shaped like a version never names a branch, and a branch whose name is
        also a commit id's prefix is refused as ambiguous: fetched branches cannot shadow
        a version or a commit. ``accept`` (trusted keys) checks the commit chosen; a version
        looked up on a branch skips refused candidates for older commits recording it.
        """
        pygit2 = load_pygit2()
        repo = self.repo
        check_ref_part(name, "capsule name")
        check_ref_part(rev, "revision")
        if branch is not None:
            check_ref_part(branch, "--branch")
        base, suffix = re.match(r"^(.*?)((?:[~^]\d*)*)$", rev).groups()  # type: ignore[union-attr]
        full = None
        looked_up = False
        if branch is None and self._ref(self.tag_ref(name, base)) is not None:
            full = self.tag_ref(name, base)
        elif SEMVER.match(base):
            on = branch or DEFAULT_BRANCH
            found = self.find_version(name, base, branch=on, accept=accept)
            if found is None:
                raise StoreError(
                    f"{name}: no version {printable(base)} on branch {printable(on)!r} and no tag {printable(base)} "
                    "(a version on another branch is found only with --branch BRANCH)"
                )
            full, looked_up = str(found), True
        elif self._ref(self.head_ref(name, base)) is not None:
            full = self.head_ref(name, base)
            if re.fullmatch(r"[0-9a-fA-F]{4,40}", base) and self._commit_prefix(base) is not None:
                raise StoreError(
                    f"{name}: {base!r} is both a branch and a commit id prefix; give the full commit id, "
                    "or rename the branch"
                )
        elif re.fullmatch(r"[0-9a-fA-F]{4,40}", base):
            full = base
        if full is None:
            raise StoreError(f"{name}: unknown revision {rev!r} (give a version, tag, branch or commit id)")
        try:
            obj = repo.revparse_single(full + suffix).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError):
            raise StoreError(f"{name}: unknown revision {rev!r}") from None
        info = parse_trailers(obj.message)
        if info.get("capsule") not in (None, name):
            raise StoreError(
                f"{rev}: commit {str(obj.id)[:12]} is a version of {printable(info['capsule'])!r}, not {name!r}"
            )
        if accept is not None and not (looked_up and not suffix):
            reason = accept(obj)
            if reason is not None:
                raise SignatureError(f"{name}@{rev} ({str(obj.id)[:12]}): {reason}")
        return obj

    def _commit_prefix(self, prefix: str) -> Any | None:
        pygit2 = load_pygit2()
        try:
            return self.repo.revparse_single(prefix).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError):
            return None

    def find_version(
        self, name: str, version: str, *, branch: str = DEFAULT_BRANCH, accept: Accept | None = None
    ) -> Any | None:
        """Newest commit on ``branch`` (main: never a fetched side branch) recording ``version`` that
        ``accept`` takes; each refused candidate is logged. Raises SignatureError when every one is refused."""
        if self.head(name, branch) is None:
            return None
        refused: list[str] = []
        for commit in self.walk(name, branch):
            if parse_trailers(commit.message).get("version") != version:
                continue
            reason = accept(commit) if accept is not None else None
            if reason is None:
                return commit.id
            line = (
                f"{name}@{printable(version)}: skipping commit {str(commit.id)[:12]} on {printable(branch)}: {reason}"
            )
            event(log, "store.version_refused", WARNING, detail=line)
            refused.append(line)
        if refused:
            more = f" (+{len(refused) - 1} more)" if len(refused) > 1 else ""
            raise SignatureError(f"{refused[0]}{more}; no commit recording it verifies")
        return None

    def walk(self, name: str, branch: str | None = None) -> Iterator[Any]:
        """Commits reachable from one branch (or all branches), newest first."""
        pygit2 = load_pygit2()
        found: list[Any] = (
            [self.head(name, branch)]
            if branch
            else [
                self._present(self.repo.references[r].target, f"{name}: branch {b!r}")
                for b, r in self.refs_under(f"{REF_ROOT}/{name}/heads/").items()
            ]
        )
        heads: list[Any] = [h for h in found if h is not None]
        if not heads:
            return
        walker = self.repo.walk(heads[0], pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
        for h in heads[1:]:
            walker.push(h)
        yield from walker


@contextlib.contextmanager
def capsule_lock(git_dir: Path, what: str) -> Iterator[None]:
    """An exclusive lock on capsule ``what`` in the store at ``git_dir`` (``flock``; dropped if the process dies)."""
    lock_dir = git_dir / "qlcapsule" / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl  # noqa: PLC0415 -- platform: fcntl is POSIX only; Windows relies on compare-and-swap
    except ImportError:  # Windows: compare-and-swap alone keeps versions safe
        yield
        return
    fd = os.open(lock_dir / f"{what}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def clear_stale_ref_lock(git_dir: Path, refname: str) -> None:
    """Remove ``<ref>.lock`` left by a writer that died between creating and renaming it.

    Called with the capsule's lock held, so a ref lock older than a second is stale.
    """
    lock_file = git_dir / f"{refname}.lock"
    try:
        if time.time() - lock_file.stat().st_mtime > 1.0:
            lock_file.unlink()
            event(log, "store.stale_lock_removed", ref=refname)
    except FileNotFoundError:
        pass


def parse_trailers(message: str) -> dict[str, str]:
    return {k.lower(): v for k, v in _TRAILER.findall(message)}


def message_body(message: str) -> str:
    """The user's part of a version message: subject line and trailers removed."""
    paras = message.strip().split("\n\n")
    paras = [p for p in paras[1:] if not _TRAILER.search(p)]
    return "\n\n".join(paras).strip()


def version_message(name: str, version: str, digest: str, message: str | None) -> str:
    body = check_text(message or "", "-m/--message").strip()
    parts = [f"{name} {version}"]
    if body:
        parts.append(body)
    parts.append(f"Qlcapsule-Capsule: {name}\nQlcapsule-Version: {version}\nQlcapsule-Digest: sha256:{digest}")
    return "\n\n".join(parts) + "\n"


# -- opening --------------------------------------------------------------------


def open_store(
    start: str | os.PathLike[str] | None = None, store: str | os.PathLike[str] | None = None, *, create: bool = False
) -> Store:
    """Find the store for a capsule directory (or the current directory).

    ``store`` (else ``$QLCAPSULE_STORE``) names a bare repository, created when
    ``create`` is true; otherwise the git repository containing ``start``.
    """
    st = _open_store(start, store, create=create)
    value = store if store is not None else os.environ.get(ENV_STORE) or None
    if value:
        st.given = str(value)
    return st


def _open_store(start: str | os.PathLike[str] | None, store: str | os.PathLike[str] | None, *, create: bool) -> Store:
    pygit2 = load_pygit2()
    value = store if store is not None else os.environ.get(ENV_STORE) or None
    explicit = Path(value).expanduser() if value else None
    if explicit is not None:
        if explicit.exists():
            if explicit.is_dir() and not any(explicit.iterdir()):
                if not create:
                    raise StoreError(f"{explicit}: the store is empty (nothing committed yet)")
                return _init_bare(explicit)
            return Store(
                open_repository(explicit, f"--store / {ENV_STORE} must name a bare repository"), dedicated=True
            )
        if not create:
            raise StoreError(f"{explicit}: no store here yet (commit a capsule first)")
        return _init_bare(explicit)
    where = Path(start) if start is not None else Path.cwd()
    found = pygit2.discover_repository(str(where.resolve()))
    if found is None:
        for d in (where.resolve(), *where.resolve().parents):
            local = d / LOCAL_STORE
            if (local / "HEAD").is_file():  # the store `ship` creates beside capsules outside git
                return Store(pygit2.Repository(str(local)), dedicated=True)
        raise StoreError(
            f"{where}: not inside a git repository; pass --store PATH or set {ENV_STORE} to keep versions in a bare repository"
        )
    return Store(pygit2.Repository(found), dedicated=False)


def open_repository(path: Path, hint: str) -> Any:
    """The git repository at exactly ``path`` (a bare repository or a work tree), never one libgit2 finds
    above it; StoreError ending in ``(hint)`` otherwise."""
    pygit2 = load_pygit2()
    try:
        repo = pygit2.Repository(str(path))
    except (pygit2.GitError, KeyError, ValueError):
        raise StoreError(f"{path}: not a git repository ({hint})") from None
    opened = {Path(repo.path).resolve(), *([Path(repo.workdir).resolve()] if repo.workdir else [])}
    if path.resolve() not in opened:  # libgit2 looked upwards from a subdirectory
        raise StoreError(
            f"{path}: not a git repository but a directory inside {Path(repo.workdir or repo.path)} ({hint})"
        )
    return repo


def _init_bare(path: Path) -> Store:
    pygit2 = load_pygit2()
    try:
        repo = pygit2.init_repository(str(path), bare=True)
    except pygit2.GitError as exc:
        raise StoreError(f"{path}: cannot create the store: {exc}") from None
    # git itself honours these when it writes to the store (gc, fetch, push)
    repo.config["core.fsync"] = "committed"
    repo.config["core.logAllRefUpdates"] = "always"
    event(log, "store.created", path=str(path))
    return Store(repo, dedicated=True)


# -- signatures -----------------------------------------------------------------


def signature(repo: Any, kind: str = "AUTHOR") -> Any:
    """``GIT_<KIND>_NAME/EMAIL``, else git config user.name and user.email (both), else ``user@host``."""
    pygit2 = load_pygit2()
    name = os.environ.get(f"GIT_{kind}_NAME")
    email = os.environ.get(f"GIT_{kind}_EMAIL")
    if not (name and email):
        try:
            default = repo.default_signature
        except (KeyError, pygit2.GitError):
            default = None
        if default is not None:
            name, email = name or default.name, email or default.email
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "qlcapsule"
    if not email:
        email = f"{name}@{socket.gethostname() or 'localhost'}"
    return pygit2.Signature(name, email)


def check_branch_name(branch: str) -> str:
    if not _BRANCH_NAME.match(branch) or ".." in branch or branch.endswith((".lock", ".")):
        raise StoreError(
            f"--branch: {branch!r} is not a valid branch name (1-100 letters, digits, '.', '_', '-', "
            "starting with a letter or digit, without '..', not ending in '.' or '.lock')"
        )
    return branch


_MERGE_KEYS = ("capsule", "branch", "ours", "theirs")


def merge_record_path(st: Store, state: dict[str, Any]) -> Path:
    """Where the store keeps the state of a merge it started: the work directory's merge.json only names it."""
    key = hashlib.sha256("\0".join(str(state[k]) for k in _MERGE_KEYS).encode("utf-8")).hexdigest()
    return st.git_dir / "qlcapsule" / "merges" / f"{key}.json"


def record_merge_state(st: Store, state: dict[str, Any]) -> None:
    """Record a merge this tool started (``merge_branch``) in the store, before its work dir is written."""
    path = merge_record_path(st, state)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())


def read_merge_state(st: Store, root: Path) -> dict[str, Any] | None:
    """The merge in progress in ``root``, as the store recorded it; None when there is none.

    ``.qlcapsule/merge.json`` is outside the lock: it could come from an archive or a pull
    request. It is believed only when the store holds the record ``merge_branch`` wrote for the
    same capsule, branch and two heads, and the record's commits are versions of that capsule
    in the store; what the commit then uses (parents, conflict list) is the store's record.
    """
    path = root / MERGE_STATE
    raw = read_regular(path, name="merge state", limit=MERGE_STATE_LIMIT, too_big=StoreError)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise StoreError(f"{path}: unreadable merge state ({exc}); delete it to abandon the merge") from None
    if (
        not isinstance(data, dict)
        or not all(isinstance(data.get(k), str) for k in _MERGE_KEYS)
        or not all(_OID.match(data[k]) for k in ("ours", "theirs"))
    ):
        raise StoreError(f"{path}: malformed merge state; delete it to abandon the merge")
    record = merge_record_path(st, data)
    stored = read_regular(record, name="merge record", limit=MERGE_STATE_LIMIT, too_big=StoreError)
    if stored is None:
        raise StoreError(
            f"{path}: no merge of {data['theirs'][:12]} into {printable(data['capsule'])}/{printable(data['branch'])} "
            f"was started in {st.shown}; this file was not written by 'qlcapsule merge' here "
            "(delete it to commit the capsule as a plain version)"
        )
    try:
        state = json.loads(stored)
    except (ValueError, RecursionError) as exc:
        raise StoreError(f"{record}: unreadable merge record ({exc}); run the merge again") from None
    if not isinstance(state, dict) or any(state.get(k) != data[k] for k in _MERGE_KEYS):
        raise StoreError(f"{record}: merge record does not match {path}; run the merge again")
    for k in ("ours", "theirs"):
        oid = load_pygit2().Oid(hex=state[k])
        obj: Any = st.repo[oid] if oid in st.repo else None
        message = getattr(obj, "message", None) if getattr(obj, "type_str", None) == "commit" else None
        if not isinstance(message, str) or parse_trailers(message).get("capsule") != state["capsule"]:
            raise StoreError(f"{record}: {k} {state[k][:12]} is not a version of {state['capsule']} in {st.shown}")
    return state


def clear_merge_state(st: Store, root: Path, state: dict[str, Any]) -> None:
    """The merge was committed: forget it in the work dir and in the store."""
    (root / MERGE_STATE).unlink(missing_ok=True)
    merge_record_path(st, state).unlink(missing_ok=True)


def base_record_path(st: Store, root: Path) -> Path:
    """Where the store keeps the commit the capsule directory ``root`` was last checked out at or committed as."""
    key = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()
    return st.git_dir / "qlcapsule" / "bases" / f"{key}.json"


def record_base(st: Store, root: Path, name: str, branch: str | None, commit: Any) -> None:
    """Remember that ``root`` now holds version ``commit`` of ``name`` (a checkout or a commit from it).

    Like git's ``HEAD`` of a work tree, but kept in the store (as the stat cache is), so the
    capsule directory is never written and a copy from an archive or a pull request carries
    none. A record that cannot be written only means the next commit cannot check for a stale base.
    """
    data = {"directory": str(root), "capsule": name, "branch": branch, "commit": str(commit)}
    path = base_record_path(st, root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    except OSError as exc:
        event(log, "store.base_unwritable", WARNING, file=str(path), error=exc.strerror or str(exc))


def read_base(st: Store, root: Path, name: str) -> str | None:
    """The commit ``record_base`` last recorded for ``root`` as a version of ``name`` in this store, or None.

    None too when the record is unreadable, names another directory or capsule, or a commit the
    store no longer holds: the commit then builds on the branch head as it did before records existed.
    """
    path = base_record_path(st, root)
    try:
        raw = read_regular(path, name="base record", limit=MERGE_STATE_LIMIT, too_big=StoreError)
        data = json.loads(raw) if raw is not None else None
    except (QlcapsuleError, ValueError, RecursionError) as exc:
        event(log, "store.base_unreadable", WARNING, file=str(path), error=str(exc))
        return None
    if (
        not isinstance(data, dict)
        or data.get("directory") != str(root)
        or data.get("capsule") != name
        or not isinstance(data.get("commit"), str)
        or not _OID.match(data["commit"])
    ):
        return None
    return data["commit"] if load_pygit2().Oid(hex=data["commit"]) in st.repo else None


def ensure_capsule_exists(st: Store, name: str) -> None:
    check_ref_part(name, "capsule name")
    if not st.refs_under(f"{REF_ROOT}/{name}/"):
        known = ", ".join(st.capsules()) or "none"
        raise StoreError(f"{name}: no versions in {st.shown} (capsules there: {known})")


def integrity_error(root: Path, lines: list[str]) -> IntegrityError:
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    return IntegrityError(f"{root}: {lines[0]}{more}")
