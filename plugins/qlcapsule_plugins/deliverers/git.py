"""Deliver to any git remote: one commit holding the capsule and its exports, pushed over git itself.

Works with every git server (GitHub, GitLab, Gitea, a bare repository behind
``git http-backend``, ``file://``) without a forge API. With pygit2 (a base
dependency) the deliverer:

1. fetches the branch (when it exists) into a throw-away bare repository;
2. builds a tree that is the branch's tree with ``path`` replaced by the capsule
   (locked files, capsule.lock, capsule.sig) and the artifacts written to
   ``artifacts_path`` (a "chart repository on a branch" layout);
3. commits on top of the head (nothing when the tree is unchanged) and pushes
   ``refs/heads/<branch>`` (fast-forward only) and, when ``tag`` is set, the tag;
4. checks every ref update the server reported — libgit2 does **not** raise when a
   hook or a policy rejects a ref, the rejection only arrives in the
   ``push_update_reference`` callback — and reads the branch back from the remote:
   its commit id must be the one pushed (git ids cover every byte).

Credentials: for http(s) URLs a token from the variable named by ``token_env``
(sent as the password of ``username``; ``x-access-token`` suits GitHub, ``oauth2``
GitLab). URLs must not carry credentials themselves.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

from ._forge import capsule_files, check_ref_name, check_repo_path

log = get_logger("qlcapsule.deliverers.git")


class GitOptions(Options):
    url: str = Field(description="remote URL: https://, http://, ssh://, git:// or file://")
    branch: Expandable = Field(default="capsules", description="branch receiving the commit; {name}/{version} expand")
    path: Expandable = Field(default="", description="directory of the capsule in the branch; '' = the branch root")
    artifacts_path: Expandable = Field(default="dist", description="directory receiving the exported files")
    tag: Expandable | None = Field(default=None, description="also push this tag at the commit, e.g. {name}-{version}")
    message: ExpandableText = Field(default="{name} {version}")
    author: str = Field(default="qlcapsule <qlcapsule@localhost>", pattern=r"^[^<>]+ <[^<>]*>$")
    token_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="e.g. GITHUB_TOKEN")
    username: str = Field(default="x-access-token", description="user name sent with the token")
    overwrite: bool = Field(default=False, description="replace an exported file that exists with other content")
    retries: int = Field(default=3, ge=1, le=10)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urllib.parse.urlsplit(v)
        if parts.scheme not in ("https", "http", "ssh", "git", "file"):
            raise ValueError(f"{v!r}: use an https://, http://, ssh://, git:// or file:// URL")
        if parts.password is not None:
            raise ValueError("the URL must not contain a password; use token_env")
        return v

    @field_validator("branch")
    @classmethod
    def _branch(cls, v: str) -> str:
        return check_ref_name(v)

    @field_validator("tag")
    @classmethod
    def _tag(cls, v: str | None) -> str | None:
        return None if v is None else check_ref_name(v)

    @field_validator("path", "artifacts_path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_repo_path(v)


class _Rejected(RemoteError):
    pass


class GitDeliverer(Deliverer):
    name = "git"
    description = "commit the capsule and its exports to a branch of any git remote and push it"
    Options = GitOptions

    options: GitOptions

    def _callbacks(self) -> Any:
        import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only when this deliverer runs

        token = read_secret(self.options.token_env, what="token for the git target") if self.options.token_env else None
        deliverer = self

        class Callbacks(pygit2.RemoteCallbacks):
            def __init__(self) -> None:
                super().__init__()
                self.rejected: dict[str, str] = {}
                self.asked = 0

            def credentials(self, url: str, username_from_url: str | None, allowed_types: Any) -> Any:
                self.asked += 1
                if token is None:
                    raise CredentialsError(
                        f"missing credential: {deliverer._safe_url()} asks for a login; set token_env (e.g. GITHUB_TOKEN)"
                    )
                if self.asked > 1:
                    raise CredentialsError(
                        f"git: {deliverer._safe_url()} rejected the token in {deliverer.options.token_env}"
                    )
                return pygit2.UserPass(deliverer.options.username, token)

            def push_update_reference(self, refname: str, message: str | None) -> None:
                if message:
                    self.rejected[refname] = message

        return Callbacks()

    def _safe_url(self) -> str:
        parts = urllib.parse.urlsplit(self.options.url)
        return urllib.parse.urlunsplit(
            parts._replace(netloc=parts.hostname or parts.netloc)
            if parts.port is None
            else parts._replace(netloc=f"{parts.hostname}:{parts.port}")
        )

    def _call(self, what: str, fn: Any) -> Any:
        import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only when this deliverer runs

        try:
            return fn()
        except (CredentialsError, RemoteError):
            raise
        except pygit2.GitError as exc:
            text = scrub_error(exc)
            if any(s in text.lower() for s in ("401", "403", "authentication", "unauthorized")):
                raise CredentialsError(f"git: {what}: {self._safe_url()} refused the credentials ({text})") from None
            raise TransientError(f"git: {what}: {self._safe_url()}: {text}") from None

    def _heads(self, remote: Any, cb: Any) -> dict[str, str]:
        lister = getattr(remote, "list_heads", None)
        if lister is not None:
            return {h.name: str(h.oid) for h in lister(callbacks=cb)}
        return {h["name"]: str(h["oid"]) for h in remote.ls_remotes(callbacks=cb)}  # pygit2 < 1.15

    # -- the Deliverer interface ----------------------------------------------------
    _where = ""

    def describe(self, capsule: Capsule, artifact: Artifact) -> str:
        return f"{self._where}/{artifact.name}" if self._where else artifact.name

    def check(self, capsule: Capsule) -> None:
        import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only when this deliverer runs

        branch = capsule.expand(self.options.branch)
        check_ref_name(branch)
        dest = capsule.expand(self.options.artifacts_path)
        self._where = f"{self._safe_url()}#{branch}:{dest}" if dest else f"{self._safe_url()}#{branch}:"
        with tempfile.TemporaryDirectory(prefix="qlcapsule-git-") as tmp:
            repo = pygit2.init_repository(tmp, bare=True)
            remote = repo.remotes.create_anonymous(self.options.url)
            cb = self._callbacks()
            retry(
                lambda: self._call("list refs", lambda: self._heads(remote, cb)),
                attempts=self.options.retries,
                what="git list refs",
            )

    def deliver(self, capsule: Capsule, artifacts: Sequence[Artifact], *, target: str) -> list[Receipt]:
        names = {
            k: capsule.expand(v)
            for k, v in {
                "branch": self.options.branch,
                "path": self.options.path,
                "dist": self.options.artifacts_path,
                "message": self.options.message,
                "tag": self.options.tag or "",
            }.items()
        }
        tmp = Path(tempfile.mkdtemp(prefix="qlcapsule-git-"))
        try:
            for _ in range(3):
                try:
                    commit, changed = retry(
                        lambda: self._push(capsule, artifacts, names, tmp),
                        attempts=self.options.retries,
                        what="git push",
                    )
                    break
                except _Rejected as exc:
                    if "fast-forward" not in str(exc) and "fetch first" not in str(exc):
                        raise
                    log.info("git branch %s moved while pushing; trying again on the new head", names["branch"])
            else:
                raise ConflictError(f"git: branch {names['branch']} keeps moving; not forcing the push")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        extra = {
            "url": self._safe_url(),
            "branch": names["branch"],
            "commit": commit,
            "committed": changed,
            "path": names["path"],
            **({"tag": names["tag"]} if names["tag"] else {}),
        }
        where = f"{self._safe_url()}#{names['branch']}:" + (f"{names['dist']}/" if names["dist"] else "")
        return [
            Receipt(
                provider=self.name,
                target=target,
                location=where + a.name,
                sha256=a.sha256,
                size=a.size,
                url=None,
                extra=dict(extra),
            )
            for a in artifacts
        ]

    # -- the push ---------------------------------------------------------------------
    def _push(  # noqa: C901 - each way a push can be rejected
        self, capsule: Capsule, artifacts: Sequence[Artifact], names: dict[str, str], tmp: Path
    ) -> tuple[str, bool]:
        import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only when this deliverer runs

        shutil.rmtree(tmp, ignore_errors=True)
        repo = pygit2.init_repository(str(tmp), bare=True)
        remote = repo.remotes.create_anonymous(self.options.url)
        branch = names["branch"]
        ref = f"refs/heads/{branch}"
        # one callbacks object per connection: libgit2 asks again for credentials only after a refusal
        heads = self._call("list refs", lambda: self._heads(remote, self._callbacks()))
        parent: pygit2.Commit | None = None
        if ref in heads:
            self._call("fetch", lambda: remote.fetch([f"+{ref}:refs/qlcapsule/base"], callbacks=self._callbacks()))
            fetched = repo.get(heads[ref])
            if fetched is None:
                raise RemoteError(f"git: fetched {branch} but commit {heads[ref]} is missing")
            if not isinstance(fetched, pygit2.Commit):
                raise RemoteError(f"git: {branch} points at a {fetched.type_str}, not a commit ({heads[ref]})")
            parent = fetched

        index = pygit2.Index()
        if parent is not None:
            index.read_tree(parent.tree)
        prefix, dist = names["path"], names["dist"]
        shipped: dict[str, str] = {}  # earlier exports stay, like a chart repository on a branch
        for entry in list(index):
            if dist and entry.path.startswith(dist + "/"):
                shipped[entry.path] = str(entry.id)
            elif not prefix or entry.path.startswith(prefix + "/"):
                index.remove(entry.path)
        files = capsule_files(capsule, prefix)
        taken = {f.path for f in files}
        for f in files:
            index.add(pygit2.IndexEntry(f.path, repo.create_blob(f.source.read_bytes()), _mode(f.mode)))
        for a in artifacts:
            path = f"{dist}/{a.name}" if dist else a.name
            if path in taken:
                raise InputError(f"git: artifact {a.name} would overwrite the capsule file {path}; set artifacts_path")
            with open(a.path, "rb") as fh:
                oid = repo.create_blob(fh.read())
            if shipped.get(path, str(oid)) != str(oid) and not self.options.overwrite:
                raise ConflictError(
                    f"git: {branch} already has {path} with other content; bump the version or set 'overwrite: true'"
                )
            index.add(pygit2.IndexEntry(path, oid, pygit2.enums.FileMode.BLOB))
        tree = index.write_tree(repo)
        if parent is not None and parent.tree_id == tree and not names["tag"]:
            return str(parent.id), False
        changed = parent is None or parent.tree_id != tree
        if parent is not None and not changed:
            oid = parent.id
        else:
            name, email = self.options.author[:-1].split(" <", 1)
            sig = pygit2.Signature(name, email, int(time.time()), 0)
            oid = repo.create_commit(None, sig, sig, names["message"], tree, [parent.id] if parent is not None else [])
        repo.references.create(ref, oid, force=True)
        specs = [f"{ref}:{ref}"]
        if names["tag"]:
            tag_ref = f"refs/tags/{names['tag']}"
            if heads.get(tag_ref) == str(oid):
                specs = specs if changed else []
            else:
                repo.references.create(tag_ref, oid, force=True)
                specs.append(f"{tag_ref}:{tag_ref}")
        if specs:
            # a remote that listed refs stays connected for fetching; pushing needs a fresh one
            pusher = repo.remotes.create_anonymous(self.options.url)
            cb = self._callbacks()
            self._call("push", lambda: pusher.push(specs, callbacks=cb))
            if cb.rejected:
                refname, why = next(iter(cb.rejected.items()))
                if refname.startswith("refs/tags/") and "already exists" in why:
                    raise ConflictError(
                        f"git: tag {names['tag']} already exists on {self._safe_url()} at another commit"
                    )
                raise _Rejected(f"git: {self._safe_url()} rejected {refname}: {scrub_error(Exception(why))}")
        after = self._call(
            "read back", lambda: self._heads(repo.remotes.create_anonymous(self.options.url), self._callbacks())
        )
        if after.get(ref) != str(oid):
            raise IntegrityError(f"git: {self._safe_url()} has {branch} at {after.get(ref, '(missing)')}, not at {oid}")
        return str(oid), changed


def _mode(mode: str) -> Any:
    import pygit2  # noqa: PLC0415 -- start-up: pygit2 loads only when this deliverer runs

    return pygit2.enums.FileMode.BLOB_EXECUTABLE if mode == "100755" else pygit2.enums.FileMode.BLOB


@hookimpl
def qlcapsule_register_deliverers(register: Register) -> None:
    register(GitDeliverer)
