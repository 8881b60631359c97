"""Deliver to GitLab: the capsule as a commit on a branch, the exports as generic packages and release links.

Uses python-gitlab (imported lazily; ``pip install "qlcapsule[gitlab]"``):

1. list the branch's files under ``path`` and send one commit (repository commits
   API, ``actions``) creating, updating and deleting files so that ``path`` holds
   exactly the capsule (no commit when nothing changed; a missing branch starts
   from the project's default branch);
2. read the tree back and compare every blob id and file mode with the ids
   computed locally;
3. upload each artifact to the project's generic package registry
   (``<package_name>/<package_version>/<file>``), download it again and compare
   its SHA-256;
4. create or update the release ``<tag>`` at that commit, with one ``package``
   link per artifact.

Credentials: a token in ``GITLAB_TOKEN`` (or the variable named by ``token_env``)
with the ``api`` scope; ``url`` points at a self-managed instance. The token never
leaves ``url``'s origin: redirects follow :func:`qlcapsule.resilience.check_redirect`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import urllib.parse
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

from ._forge import capsule_files, check_ref_name, check_repo_path, guarded_session

log = get_logger("qlcapsule.deliverers.gitlab")
T = TypeVar("T")


class GitLabOptions(Options):
    project: str = Field(pattern=r"^(\d+|[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+)$", description="group/name or numeric id")
    url: str = Field(default="https://gitlab.com", pattern=r"^https?://[^\s/]+(/\S*)?$")
    branch: Expandable = Field(
        default="capsules", description="branch receiving the capsule commit; {name}/{version} expand"
    )
    path: Expandable = Field(default="", description="directory of the capsule in the branch; '' = the branch root")
    message: ExpandableText = Field(default="{name} {version}", description="commit message")
    tag: Expandable = Field(default="{name}-{version}")
    release: bool = Field(default=True, description="create or update a release with links to the packages")
    release_name: ExpandableText = Field(default="{name} {version}")
    package_name: Expandable = Field(default="{name}", pattern=r"^[A-Za-z0-9._{}-]+$")
    package_version: Expandable = Field(default="{version}", pattern=r"^[A-Za-z0-9._+{}-]+$")
    overwrite: bool = Field(default=False, description="upload a package file whose name exists with other content")
    token_env: str = Field(default="GITLAB_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout: float = Field(default=60.0, gt=0, le=600, description="seconds per request")
    retries: int = Field(default=4, ge=1, le=10, description="attempts per request on transient errors")

    @field_validator("branch", "tag")
    @classmethod
    def _ref(cls, v: str) -> str:
        return check_ref_name(v)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_repo_path(v)


class _BadRequest(RemoteError):
    """GitLab answered 400/409 (already exists, file exists, branch moved)."""


class GitLabDeliverer(Deliverer):
    name = "gitlab"
    description = "commit the capsule to a GitLab branch; exports as generic packages linked from a release"
    requires = ("gitlab",)
    extra = "qlcapsule[gitlab]"
    Options = GitLabOptions

    options: GitLabOptions

    def _client(self) -> Any:
        import gitlab  # noqa: PLC0415 -- extra: gitlab (pip install qlcapsule[gitlab])

        token = read_secret(self.options.token_env, what="GitLab token for the gitlab target")
        return gitlab.Gitlab(
            self.options.url.rstrip("/"),
            private_token=token,
            timeout=self.options.timeout,
            retry_transient_errors=False,
            # PRIVATE-TOKEN is a plain header: requests would carry it across hosts on a redirect
            session=guarded_session("gitlab"),
        )

    @overload
    def _api(self, what: str, fn: Callable[[], T], *, missing_ok: Literal[False] = False) -> T: ...
    @overload
    def _api(self, what: str, fn: Callable[[], T], *, missing_ok: Literal[True]) -> T | None: ...
    def _api(self, what: str, fn: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        import requests  # noqa: PLC0415 -- extra: requests (not a core dependency: it comes with the s3, gcs, github and gitlab extras)
        from gitlab.exceptions import GitlabError  # noqa: PLC0415 -- extra: gitlab (pip install qlcapsule[gitlab])

        def once() -> T | None:
            try:
                return fn()
            except GitlabError as exc:
                code = exc.response_code or 0
                msg = scrub_error(Exception(exc.error_message or ""))
                if code == 404 and missing_ok:
                    return None
                if code == 401:
                    raise CredentialsError(
                        f"gitlab: the token in {self.options.token_env} was rejected (401)"
                    ) from None
                if code == 403:
                    raise CredentialsError(
                        f"gitlab: {what}: permission denied (403 {msg}); the token needs the api scope"
                    ) from None
                if code == 404:
                    raise InputError(
                        f"gitlab: {what}: not found (404 {msg}); check 'project: {self.options.project}' "
                        f"and that the token in {self.options.token_env} can see it"
                    ) from None
                if code in (400, 409):
                    raise _BadRequest(f"gitlab: {what}: {code} {msg}") from None
                if code == 429 or code >= 500:
                    raise TransientError(f"gitlab: {what}: {code} {msg}") from None
                raise RemoteError(f"gitlab: {what}: {code or ''} {msg}".strip()) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"gitlab: {what}: {scrub_error(exc)}") from None

        return retry(once, attempts=self.options.retries, what=f"gitlab {what}")

    def _names(self, capsule: Capsule) -> dict[str, str]:
        o = self.options
        fields = {
            "branch": o.branch,
            "path": o.path,
            "message": o.message,
            "tag": o.tag,
            "release": o.release_name,
            "package": o.package_name,
            "version": o.package_version,
        }
        return {k: capsule.expand(v) for k, v in fields.items()}

    # -- the Deliverer interface -------------------------------------------------------
    _where: str = ""

    def describe(self, capsule: Capsule, artifact: Artifact) -> str:
        return f"{self._where}/{artifact.name}"

    def check(self, capsule: Capsule) -> None:
        names = self._names(capsule)
        check_ref_name(names["branch"])
        check_ref_name(names["tag"])
        self._where = f"gitlab:{self.options.project}/packages/generic/{names['package']}/{names['version']}"
        gl = self._client()
        self._api(f"project {self.options.project}", lambda: gl.projects.get(self.options.project))

    def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
        names = self._names(capsule)
        gl = self._client()
        project = gl.projects.get(self.options.project, lazy=True)
        commit, changed = self._commit(capsule, project, names)
        extra: dict[str, Any] = {
            "project": self.options.project,
            "branch": names["branch"],
            "commit": commit,
            "committed": changed,
        }
        receipts = [self._package(project, names, a, target, extra) for a in artifacts]
        if self.options.release:
            web = self._release(capsule, project, names, commit, receipts)
            for r in receipts:
                r.extra.update({"tag": names["tag"], "release": web})
        return receipts

    # -- the commit ---------------------------------------------------------------
    def _tree(self, project: Any, path: str, ref: str) -> dict[str, tuple[str, str]]:
        items = (
            self._api(
                f"tree {path or '/'} at {ref}",
                lambda: project.repository_tree(path=path, ref=ref, recursive=True, get_all=True),
                missing_ok=True,
            )
            or []
        )
        return {i["path"]: (i["mode"], i["id"]) for i in items if i["type"] == "blob"}

    def _commit(self, capsule: Capsule, project: Any, names: dict[str, str]) -> tuple[str, bool]:
        for _ in range(3):  # the branch may move between our listing and our commit
            try:
                return self._commit_once(capsule, project, names)
            except _BadRequest as exc:
                if "already exists" not in str(exc) and "doesn't exist" not in str(exc):
                    raise
                log.info("gitlab branch %s changed while committing; listing it again", names["branch"])
        raise ConflictError(f"gitlab: branch {names['branch']} keeps changing; not forcing the commit")

    def _commit_once(self, capsule: Capsule, project: Any, names: dict[str, str]) -> tuple[str, bool]:
        branch, path = names["branch"], names["path"]
        head = self._api(f"branch {branch}", lambda: project.branches.get(branch), missing_ok=True)
        start = None
        if head is None:
            info = self._api(f"project {self.options.project}", lambda: project.manager.get(self.options.project))
            start = getattr(info, "default_branch", None)
        listed_ref = branch if head is not None else start
        current = self._tree(project, path, listed_ref) if listed_ref else {}
        files = capsule_files(capsule, path)
        wanted = {f.path: f for f in files}
        actions: list[dict[str, Any]] = []
        for f in files:
            have = current.get(f.path)
            if have == (f.mode, f.blob):
                continue
            actions.append(
                {
                    "action": "update" if have else "create",
                    "file_path": f.path,
                    "encoding": "base64",
                    "content": base64.b64encode(f.source.read_bytes()).decode(),
                    "execute_filemode": f.mode == "100755",
                }
            )
        actions += [{"action": "delete", "file_path": p} for p in sorted(current) if p not in wanted]
        if head is not None and not actions:
            return head.commit["id"], False
        data: dict[str, Any] = {"branch": branch, "commit_message": names["message"], "actions": actions}
        if start:
            data["start_branch"] = start
        commit = self._api("commit", lambda: project.commits.create(data))
        self._verify(project, path, commit.id, {p: (f.mode, f.blob) for p, f in wanted.items()})
        return commit.id, True

    def _verify(self, project: Any, path: str, sha: str, wanted: dict[str, tuple[str, str]]) -> None:
        got = self._tree(project, path, sha)
        if got != wanted:
            bad = sorted(set(got.items()) ^ set(wanted.items()))
            raise IntegrityError(
                f"gitlab: commit {sha[:12]} does not hold the capsule at {path or '/'} ({bad[0][0]} differs)"
            )

    # -- packages and the release ----------------------------------------------------
    def _package_url(self, project: Any, names: dict[str, str], file: str) -> str:
        pid = urllib.parse.quote(str(self.options.project), safe="")
        return (
            f"{self.options.url.rstrip('/')}/api/v4/projects/{pid}/packages/generic/"
            f"{names['package']}/{names['version']}/{urllib.parse.quote(file)}"
        )

    def _download_sha(self, project: Any, names: dict[str, str], file: str) -> tuple[str, int] | None:
        def once() -> tuple[str, int]:
            h, n = hashlib.sha256(), 0
            for chunk in project.generic_packages.download(names["package"], names["version"], file, iterator=True):
                h.update(chunk)
                n += len(chunk)
            return h.hexdigest(), n

        return self._api(f"read back {file}", once, missing_ok=True)

    def _package(
        self, project: Any, names: dict[str, str], art: Artifact, target: str, extra: dict[str, Any]
    ) -> Receipt:
        have = self._download_sha(project, names, art.name)
        existing = have == (art.sha256, art.size)
        if have is not None and not existing and not self.options.overwrite:
            raise ConflictError(
                f"gitlab: package {names['package']}/{names['version']} already has {art.name} with other content; "
                "set 'overwrite: true' to upload a new file"
            )
        if not existing:

            def upload() -> Any:
                with open(art.path, "rb") as fh:
                    return project.generic_packages.upload(
                        names["package"], names["version"], art.name, data=fh, select="package_file"
                    )

            self._api(f"upload {art.name}", upload)
            got = self._download_sha(project, names, art.name)
            if got != (art.sha256, art.size):
                raise IntegrityError(
                    f"gitlab: {art.name} reads back as {got}, expected sha256 {art.sha256[:12]} ({art.size} bytes)"
                )
        return Receipt(
            provider=self.name,
            target=target,
            location=f"gitlab:{self.options.project}/packages/generic/{names['package']}/{names['version']}/{art.name}",
            sha256=art.sha256,
            size=art.size,
            url=self._package_url(project, names, art.name),
            extra={**extra, "existing": existing},
        )

    def _release(
        self, capsule: Capsule, project: Any, names: dict[str, str], commit: str, receipts: list[Receipt]
    ) -> str:
        tag = names["tag"]
        body = (capsule.definition.description + "\n\n" if capsule.definition.description else "") + (
            f"Capsule `{capsule.ref}`, digest `sha256:{capsule.digest}`, commit {commit}."
        )
        links = [{"name": r.location.rsplit("/", 1)[1], "url": r.url, "link_type": "package"} for r in receipts]
        release = self._api(f"release {tag}", lambda: project.releases.get(tag), missing_ok=True)
        if release is None:
            data = {
                "tag_name": tag,
                "ref": commit,
                "name": names["release"],
                "description": body,
                "assets": {"links": links},
            }
            try:
                release = self._api(f"create release {tag}", lambda: project.releases.create(data))
            except _BadRequest:  # created by an attempt whose answer was lost
                release = self._api(f"release {tag}", lambda: project.releases.get(tag))
            return str(release._links.get("self", "")) if isinstance(getattr(release, "_links", None), dict) else ""
        at = (getattr(release, "commit", None) or {}).get("id")
        if at and at != commit:
            raise ConflictError(
                f"gitlab: tag {tag} already points at {at[:12]}, not at this capsule's commit {commit[:12]}; bump the version"
            )
        if (release.name, release.description) != (names["release"], body):
            release.name, release.description = names["release"], body
            self._api(f"update release {tag}", release.save)
        current = {
            link.name: link for link in self._api("release links", lambda: release.links.list(get_all=True)) or []
        }
        for want in links:
            link = current.get(want["name"])
            if link is None:
                self._api(f"link {want['name']}", functools.partial(release.links.create, want))
            elif link.url != want["url"]:
                link.url = want["url"]
                self._api(f"link {want['name']}", link.save)
        return str(release._links.get("self", "")) if isinstance(getattr(release, "_links", None), dict) else ""


@hookimpl
def qlcapsule_register_deliverers(register: Register) -> None:
    register(GitLabDeliverer)
