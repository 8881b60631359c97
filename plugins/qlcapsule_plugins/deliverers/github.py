"""Deliver to GitHub: the capsule as a commit on a branch, the exports as release assets.

Uses the REST git data API through PyGithub (imported lazily; ``pip install
"qlcapsule[github]"``), so no clone is needed:

1. upload the capsule's files as blobs (files the branch already holds are
   skipped), create the capsule's tree and check that GitHub's tree id equals the
   id computed locally (so the server holds exactly these bytes);
2. commit on top of the branch head (no commit when the tree is unchanged) and
   fast-forward ``refs/heads/<branch>`` (created when missing); read the ref back;
3. create the release ``<tag>`` at that commit, or update it, and upload every
   artifact as an asset; each asset is downloaded again and its SHA-256 compared
   before a receipt is returned.

Credentials: a token in ``GITHUB_TOKEN`` (or the variable named by ``token_env``),
needing ``contents: write`` on the repository. ``base_url`` points at GitHub
Enterprise Server (``https://HOST/api/v3``) or a test server. The token never leaves
``base_url``'s origin: redirects follow :func:`qlcapsule.resilience.check_redirect`
(asset downloads that GitHub sends to its storage host go there without it).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, overload

from pydantic import Field, field_validator

from qlcapsule import (
    Artifact,
    Capsule,
    ConflictError,
    CredentialsError,
    Deliverer,
    Expandable,
    ExpandableText,
    InputError,
    IntegrityError,
    Options,
    Receipt,
    Register,
    RemoteError,
    TransientError,
    get_logger,
    hookimpl,
    read_secret,
    retry,
    scrub_error,
)

from ._forge import capsule_files, check_ref_name, check_repo_path, guard_pygithub, prerelease, tree_id

log = get_logger("qlcapsule.deliverers.github")
T = TypeVar("T")


class GitHubOptions(Options):
    repository: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/name")
    branch: Expandable = Field(
        default="capsules", description="branch receiving the capsule commit; {name}/{version} expand"
    )
    path: Expandable = Field(default="", description="directory of the capsule in the branch; '' = the branch root")
    tag: Expandable = Field(default="{name}-{version}", description="release tag")
    message: ExpandableText = Field(default="{name} {version}", description="commit message")
    release_name: ExpandableText = Field(default="{name} {version}")
    draft: bool = False
    prerelease: bool | None = Field(default=None, description="default: true for SemVer pre-releases")
    overwrite: bool = Field(default=False, description="replace assets with other content; move an existing tag")
    base_url: str = Field(default="https://api.github.com", pattern=r"^https?://[^\s/]+(/\S*)?$")
    token_env: str = Field(default="GITHUB_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout: float = Field(default=60.0, gt=0, le=600, description="seconds per request")
    request_interval: float = Field(
        default=0.25, ge=0, le=60, description="seconds between requests (PyGithub's default)"
    )
    write_interval: float = Field(default=1.0, ge=0, le=60, description="seconds between writes (GitHub's guidance)")
    retries: int = Field(default=4, ge=1, le=10, description="attempts per request on transient errors")

    @field_validator("branch", "tag")
    @classmethod
    def _ref(cls, v: str) -> str:
        return check_ref_name(v)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_repo_path(v)


class _Unprocessable(RemoteError):
    """GitHub answered 422 (validation failed, already exists, not a fast forward)."""


class GitHubDeliverer(Deliverer):
    name = "github"
    description = "commit the capsule to a GitHub branch and attach the exports to a release"
    requires = ("github",)
    extra = "qlcapsule[github]"
    Options = GitHubOptions

    options: GitHubOptions

    # -- plumbing ---------------------------------------------------------------
    def _token(self) -> str:
        token = read_secret(self.options.token_env, what="GitHub token for the github target")
        assert token is not None
        return token

    def _client(self, lazy: bool = False) -> Any:
        from github import Auth, Github  # noqa: PLC0415 -- extra: github (pip install qlcapsule[github])

        gh = Github(
            base_url=self.options.base_url.rstrip("/"),
            auth=Auth.Token(self._token()),
            timeout=int(self.options.timeout),
            lazy=lazy,
            seconds_between_requests=self.options.request_interval or None,
            seconds_between_writes=self.options.write_interval or None,
            retry=None,  # retries are ours: bounded, logged, and fed to the circuit breaker
        )
        return guard_pygithub(gh)  # the token never leaves base_url's origin, whatever the server answers

    @overload
    def _api(self, what: str, fn: Callable[[], T], *, missing_ok: Literal[False] = False) -> T: ...
    @overload
    def _api(self, what: str, fn: Callable[[], T], *, missing_ok: Literal[True]) -> T | None: ...
    def _api(self, what: str, fn: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        """Call the API with bounded retries; translate errors into one line each."""
        import requests  # noqa: PLC0415 -- extra: requests (not a core dependency: it comes with the s3, gcs, github and gitlab extras)
        from github import GithubException  # noqa: PLC0415 -- extra: github (pip install qlcapsule[github])

        def once() -> T | None:
            try:
                return fn()
            except GithubException as exc:
                status = exc.status
                msg = exc.data.get("message", "") if isinstance(exc.data, dict) else str(exc.data or "")
                if status == 404 and missing_ok:
                    return None
                if status == 401:
                    raise CredentialsError(
                        f"github: the token in {self.options.token_env} was rejected (401 {msg})"
                    ) from None
                if status == 403 and "rate limit" not in msg.lower():
                    raise CredentialsError(
                        f"github: {what}: permission denied (403 {msg}); the token needs contents: write"
                    ) from None
                if status == 404:
                    raise InputError(
                        f"github: {what}: not found (404); check 'repository: {self.options.repository}' "
                        f"and that the token in {self.options.token_env} can see it"
                    ) from None
                if status == 422:
                    raise _Unprocessable(f"github: {what}: {msg} {_errors(exc.data)}".strip()) from None
                if status in (403, 429) or status >= 500:
                    raise TransientError(f"github: {what}: {status} {msg}".strip()) from None
                raise RemoteError(f"github: {what}: {status} {msg}".strip()) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"github: {what}: {scrub_error(exc)}") from None

        return retry(once, attempts=self.options.retries, what=f"github {what}")

    def _names(self, capsule: Capsule) -> dict[str, str]:
        o = self.options
        return {
            k: capsule.expand(v)
            for k, v in {
                "branch": o.branch,
                "tag": o.tag,
                "message": o.message,
                "release": o.release_name,
                "path": o.path,
            }.items()
        }

    # -- the Deliverer interface -----------------------------------------------------
    def describe(self, capsule: Capsule, artifact: Artifact) -> str:
        return f"github:{self.options.repository} release {self._tag or self.options.tag} asset {artifact.name}"

    _tag: str | None = None

    def check(self, capsule: Capsule) -> None:
        names = self._names(capsule)
        check_ref_name(names["branch"])
        check_ref_name(names["tag"])
        self._tag = names["tag"]
        gh = self._client()
        repo = self._api(f"repository {self.options.repository}", lambda: gh.get_repo(self.options.repository))
        perms = getattr(repo, "permissions", None)
        if perms is not None and getattr(perms, "push", True) is False:
            raise CredentialsError(
                f"github: the token in {self.options.token_env} cannot push to {self.options.repository}"
            )

    def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
        names = self._names(capsule)
        repo = self._client(lazy=True).get_repo(self.options.repository)
        commit, changed = self._push(capsule, repo, names)
        release = self._release(capsule, repo, names, commit)
        extra = {
            "repository": self.options.repository,
            "branch": names["branch"],
            "commit": commit,
            "committed": changed,
            "tag": names["tag"],
            "release": release.html_url,
        }
        return [self._asset(release, a, target, extra) for a in artifacts]

    # -- the commit -----------------------------------------------------------------
    def _push(self, capsule: Capsule, repo: Any, names: dict[str, str]) -> tuple[str, bool]:
        """Commit the capsule on the branch; fast-forward only. Returns (commit id, whether a commit was made)."""
        for _ in range(3):  # someone else may move the branch between our read and our update
            try:
                return self._push_once(capsule, repo, names)
            except _Unprocessable as exc:
                if "fast forward" not in str(exc).lower() and "already exists" not in str(exc).lower():
                    raise
                log.info("github branch %s moved while pushing; retrying on the new head", names["branch"])
        raise ConflictError(f"github: branch {names['branch']} keeps moving; not forcing the update")

    def _push_once(self, capsule: Capsule, repo: Any, names: dict[str, str]) -> tuple[str, bool]:
        from github import InputGitTreeElement  # noqa: PLC0415 -- extra: github (pip install qlcapsule[github])

        branch, path = names["branch"], names["path"]
        ref = self._api(f"branch {branch}", lambda: repo.get_git_ref(f"heads/{branch}").object.sha, missing_ok=True)
        head = self._api(f"commit {ref}", lambda: repo.get_git_commit(ref)) if ref else None
        present: set[str] = set()
        if head is not None:
            tree = self._api("tree of the branch head", lambda: repo.get_git_tree(head.tree.sha, recursive=True))
            present = {e.sha for e in tree.tree if e.type == "blob"}

        files = capsule_files(capsule)
        elements = []
        for f in files:
            if f.blob in present:
                elements.append(InputGitTreeElement(f.path, f.mode, "blob", sha=f.blob))
                continue
            data = f.source.read_bytes()
            text = _inline_text(data)
            if text is not None:  # sent inside the tree request: one write instead of one per file
                elements.append(InputGitTreeElement(f.path, f.mode, "blob", content=text))
                continue
            content = base64.b64encode(data).decode()
            blob = self._api(f"blob {f.path}", functools.partial(repo.create_git_blob, content, "base64"))
            if blob.sha != f.blob:
                raise IntegrityError(f"github: {f.path}: server blob id {blob.sha} != local {f.blob}")
            present.add(f.blob)
            elements.append(InputGitTreeElement(f.path, f.mode, "blob", sha=f.blob))
        # the tree id is computed locally from the bytes: equal ids mean GitHub stored exactly these files
        expected = tree_id({f.path: (f.mode, f.blob) for f in files})
        capsule_tree = self._api("capsule tree", lambda: repo.create_git_tree(elements))
        if capsule_tree.sha != expected:
            raise IntegrityError(f"github: capsule tree id {capsule_tree.sha} != local {expected}")
        root = capsule_tree
        if path:
            base = self._api("base tree", lambda: repo.get_git_tree(head.tree.sha)) if head else None
            sub = [InputGitTreeElement(path, "040000", "tree", sha=capsule_tree.sha)]
            root = self._api(
                "root tree", lambda: repo.create_git_tree(sub, base) if base else repo.create_git_tree(sub)
            )
        if head is not None and head.tree.sha == root.sha:
            return head.sha, False

        commit = self._api("commit", lambda: repo.create_git_commit(names["message"], root, [head] if head else []))
        if head is not None:
            self._api(
                f"update branch {branch}", lambda: _loaded_ref(repo, f"heads/{branch}").edit(commit.sha, force=False)
            )
        else:
            self._api(f"create branch {branch}", lambda: repo.create_git_ref(f"refs/heads/{branch}", commit.sha))
        self._verify_commit(repo, branch, path, commit.sha, expected)
        return commit.sha, True

    def _verify_commit(self, repo: Any, branch: str, path: str, sha: str, expected: str) -> None:
        got = self._api(f"branch {branch}", lambda: repo.get_git_ref(f"heads/{branch}").object.sha)
        if got != sha:
            raise ConflictError(f"github: branch {branch} is at {got}, not at the pushed commit {sha}")
        tree = self._api("pushed tree", lambda: repo.get_git_commit(sha).tree.sha)
        if path:
            listing = self._api("pushed tree", lambda: repo.get_git_tree(tree, recursive=True))
            tree = next((e.sha for e in listing.tree if e.path == path and e.type == "tree"), "")
        if tree != expected:
            raise IntegrityError(
                f"github: branch {branch} holds tree {tree or '(none)'} at {path or '/'}, expected {expected}"
            )

    # -- the release ----------------------------------------------------------------
    def _release(self, capsule: Capsule, repo: Any, names: dict[str, str], commit: str) -> Any:
        tag = names["tag"]
        pre = self.options.prerelease if self.options.prerelease is not None else prerelease(capsule.version)
        body = (capsule.definition.description + "\n\n" if capsule.definition.description else "") + (
            f"Capsule `{capsule.ref}`, digest `sha256:{capsule.digest}`, commit {commit}."
        )
        tagged = self._api(f"tag {tag}", lambda: repo.get_git_ref(f"tags/{tag}").object, missing_ok=True)
        if tagged is not None:
            at = tagged.sha
            if tagged.type == "tag":
                at = self._api(f"tag {tag}", lambda: repo.get_git_tag(tagged.sha).object.sha)
            if at != commit:
                if not self.options.overwrite:
                    raise ConflictError(
                        f"github: tag {tag} already points at {at[:12]}, not at this capsule's commit {commit[:12]}; "
                        "bump the version or set 'overwrite: true'"
                    )
                self._api(f"move tag {tag}", lambda: _loaded_ref(repo, f"tags/{tag}").edit(commit, force=True))
        release = self._api(f"release {tag}", lambda: repo.get_release(tag), missing_ok=True)
        if release is None:
            try:
                release = self._api(
                    f"create release {tag}",
                    lambda: repo.create_git_release(
                        tag,
                        name=names["release"],
                        message=body,
                        draft=self.options.draft,
                        prerelease=pre,
                        target_commitish=commit,
                    ),
                )
            except _Unprocessable:  # created by an earlier attempt whose answer was lost
                release = self._api(f"release {tag}", lambda: repo.get_release(tag))
        elif (release.name, release.body, release.prerelease) != (names["release"], body, pre):
            self._api(
                f"update release {tag}",
                lambda: release.update_release(
                    name=names["release"], message=body, draft=release.draft, prerelease=pre
                ),
            )
        return release

    def _asset(self, release: Any, art: Artifact, target: str, extra: dict[str, Any]) -> Receipt:
        existing = self._find_asset(release, art.name)
        reused = False
        if existing is not None:
            if self._download_sha(existing) == (art.sha256, art.size):
                reused = True
            elif not self.options.overwrite:
                raise ConflictError(
                    f"github: release {extra['tag']} already has an asset {art.name} with other content; "
                    "set 'overwrite: true' to replace it"
                )
            else:
                self._api(f"delete asset {art.name}", lambda: existing.delete_asset())
                existing = None
        if existing is None:
            try:
                existing = self._api(
                    f"upload {art.name}",
                    lambda: release.upload_asset(str(art.path), content_type=art.media_type, name=art.name),
                )
            except _Unprocessable:  # uploaded by an attempt whose answer was lost: check it below
                existing = self._find_asset(release, art.name)
                if existing is None:
                    raise
            got = self._download_sha(existing)
            if got != (art.sha256, art.size):
                raise IntegrityError(
                    f"github: asset {art.name} reads back as sha256 {got[0][:12]} ({got[1]} bytes), "
                    f"expected {art.sha256[:12]} ({art.size} bytes)"
                )
        return Receipt(
            provider=self.name,
            target=target,
            location=f"github:{self.options.repository}/releases/{extra['tag']}/{art.name}",
            sha256=art.sha256,
            size=art.size,
            url=existing.browser_download_url,
            extra={**extra, "existing": reused},
        )

    def _find_asset(self, release: Any, name: str) -> Any:
        assets = self._api("release assets", lambda: list(release.get_assets()))
        return next((a for a in assets or [] if a.name == name), None)

    def _download_sha(self, asset: Any) -> tuple[str, int]:
        """Stream the asset back from GitHub and hash it."""

        def once() -> tuple[str, int]:
            status, _headers, chunks = asset.download_asset(chunk_size=1 << 20)
            if status >= 400:
                raise RemoteError(f"github: download of asset {asset.name} answered {status}")
            h, n = hashlib.sha256(), 0
            for chunk in chunks:
                h.update(chunk)
                n += len(chunk)
            return h.hexdigest(), n

        result = self._api(f"read back {asset.name}", once)
        assert result is not None
        return result


_INLINE_MAX = 1 << 20


def _inline_text(data: bytes) -> str | None:
    """The file as text when GitHub can take it inline in a tree request (UTF-8, no NUL, at most 1 MiB)."""
    if len(data) > _INLINE_MAX or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _loaded_ref(repo: Any, ref: str) -> Any:
    """A GitRef fetched from the server: its ``url`` is then the documented ``/git/refs/...`` one for PATCH."""
    loaded = repo.get_git_ref(ref)
    _ = loaded.object  # completes the lazy object
    return loaded


def _errors(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        return "; ".join(str(e.get("code", e)) if isinstance(e, dict) else str(e) for e in data["errors"])
    return ""


@hookimpl
def qlcapsule_register_deliverers(register: Register) -> None:
    register(GitHubDeliverer)
