"""Stateful fakes of the GitHub and GitLab REST endpoints the deliverers use.

These are FAKES: no real GitHub or GitLab server can run on the test machines
(no Gitea/Forgejo/GitLab package exists on the reachable registries). They keep
real state (a git object store whose blob/tree/commit ids are computed exactly
as git computes them, refs, releases, assets, generic packages) and check each
request's shape against the documented API (required fields, enums, auth
header); a request that breaks the documented shape gets the forge's error
status and is recorded in ``violations`` so a test can assert there were none.

Documented APIs modelled:

- GitHub REST 2022-11-28: git blobs/trees/commits/refs
  (https://docs.github.com/en/rest/git), releases and release assets
  (https://docs.github.com/en/rest/releases).
- GitLab REST v4: repository commits with ``actions``, repository tree,
  branches, releases and release links, generic packages
  (https://docs.gitlab.com/ee/api/).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# -- a git object store --------------------------------------------------------


def git_hash(kind: str, data: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data).hexdigest()


class ObjectStore:
    """Blobs, trees and commits with real git ids."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[str, Any]] = {}

    def put_blob(self, data: bytes) -> str:
        sha = git_hash("blob", data)
        self.objects[sha] = ("blob", data)
        return sha

    def put_tree(self, entries: dict[str, tuple[str, str]]) -> str:
        """``entries``: name -> (git mode without leading zero, sha)."""

        def key(item: tuple[str, tuple[str, str]]) -> bytes:
            name, (mode, _) = item
            return name.encode() + (b"/" if mode == "40000" else b"")

        raw = b"".join(
            f"{mode} {name}".encode() + b"\0" + bytes.fromhex(sha)
            for name, (mode, sha) in sorted(entries.items(), key=key)
        )
        sha = git_hash("tree", raw)
        self.objects[sha] = ("tree", dict(entries))
        return sha

    def put_commit(
        self, tree: str, parents: list[str], message: str, author: str = "fake <fake@example.invalid>"
    ) -> str:
        stamp = f"{author} {int(time.time())} +0000"
        text = f"tree {tree}\n" + "".join(f"parent {p}\n" for p in parents)
        text += f"author {stamp}\ncommitter {stamp}\n\n{message}"
        sha = git_hash("commit", text.encode())
        self.objects[sha] = ("commit", {"tree": tree, "parents": list(parents), "message": message})
        return sha

    def kind(self, sha: str) -> str | None:
        obj = self.objects.get(sha)
        return obj[0] if obj else None

    def flatten(self, tree: str | None, prefix: str = "") -> dict[str, tuple[str, str]]:
        """path -> (mode, blob sha) for every blob under ``tree``."""
        out: dict[str, tuple[str, str]] = {}
        if tree is None:
            return out
        for name, (mode, sha) in self.objects[tree][1].items():
            path = f"{prefix}{name}"
            if mode == "40000":
                out.update(self.flatten(sha, path + "/"))
            else:
                out[path] = (mode, sha)
        return out

    def build(self, flat: dict[str, tuple[str, str]]) -> str:
        """The tree id for a flat path map (intermediate trees created)."""
        groups: dict[str, dict[str, tuple[str, str]]] = {}
        entries: dict[str, tuple[str, str]] = {}
        for path, (mode, sha) in flat.items():
            head, sep, rest = path.partition("/")
            if sep:
                groups.setdefault(head, {})[rest] = (mode, sha)
            else:
                entries[head] = (mode, sha)
        for name, sub in groups.items():
            entries[name] = ("40000", self.build(sub))
        return self.put_tree(entries)

    def read(self, tree: str) -> dict[str, bytes]:
        return {p: self.objects[s][1] for p, (_, s) in self.flatten(tree).items()}

    def is_ancestor(self, old: str, new: str) -> bool:
        seen, todo = set(), [new]
        while todo:
            c = todo.pop()
            if c == old:
                return True
            if c in seen or self.kind(c) != "commit":
                continue
            seen.add(c)
            todo.extend(self.objects[c][1]["parents"])
        return False


# -- a tiny JSON HTTP framework ------------------------------------------------


class Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Any
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise Reply(400, {"message": "Problems parsing JSON"}) from None


class FakeServer:
    """A threaded HTTP server routing ``(method, regex)`` to handler methods."""

    routes: list[tuple[str, str, str]] = []

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.violations: list[str] = []
        self.log: list[tuple[str, str]] = []
        self.fail_next: list[tuple[str, str, int]] = []  # (method, path regex, status) injected faults
        # (method, path regex, status, Location or None): answer the next match with a redirect
        self.redirect_next: list[tuple[str, str, int, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # answers are written as two segments; without this, delayed ACKs cost 40 ms a request
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(
                    self.command,
                    urllib.parse.unquote(url.path),
                    dict(urllib.parse.parse_qsl(url.query)),
                    self.headers,
                    body,
                )
                # the raw (still percent-encoded) path, for ids like group%2Fproject
                req.raw_path = url.path  # type: ignore[attr-defined]
                status, payload, headers = server.dispatch(req)
                if isinstance(payload, bytes):
                    data, ctype = payload, headers.pop("Content-Type", "application/octet-stream")
                else:
                    data, ctype = (b"" if payload is None else json.dumps(payload).encode()), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def violate(self, status: int, message: str) -> Reply:
        self.violations.append(message)
        return Reply(status, {"message": message})

    def dispatch(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.log.append((req.method, req.path))
            for i, (m, rx, status) in enumerate(self.fail_next):
                if m == req.method and re.search(rx, req.path):
                    del self.fail_next[i]
                    return status, {"message": "injected fault"}, {}
            for i, (m, rx, status, location) in enumerate(self.redirect_next):
                if m == req.method and re.search(rx, req.path):
                    del self.redirect_next[i]
                    return status, None, {"Location": location} if location else {}
            try:
                self.authenticate(req)
                for method, rx, name in self.routes:
                    if method != req.method:
                        continue
                    m = re.fullmatch(rx, req.path)
                    if m:
                        result = getattr(self, name)(req, *m.groups())
                        if isinstance(result, tuple):
                            return result[0], result[1], {}
                        return 200, result, {}
                raise Reply(404, {"message": "Not Found"})
            except Reply as r:
                return r.status, r.body, dict(r.headers)

    def authenticate(self, req: Request) -> None:
        raise NotImplementedError


def _require(server: FakeServer, data: Any, key: str, kind: type | tuple[type, ...], status: int = 422) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise server.violate(status, f"missing required field {key!r}")
    if not isinstance(data[key], kind):
        raise server.violate(status, f"field {key!r} has the wrong type")
    return data[key]


# -- GitHub -----------------------------------------------------------------------

_GH_MODES = {"100644", "100755", "040000", "160000", "120000"}


@dataclass
class GitHubRepo:
    full_name: str
    store: ObjectStore = field(default_factory=ObjectStore)
    refs: dict[str, str] = field(default_factory=dict)
    releases: list[dict[str, Any]] = field(default_factory=list)


class FakeGitHub(FakeServer):
    """GitHub Enterprise-style layout: API at ``/api/v3``, uploads at ``/api/uploads``."""

    A = r"/api/v3/repos/([^/]+/[^/]+)"
    routes = [
        ("GET", A, "get_repo"),
        ("GET", A + r"/git/(?:ref|refs)/(.+)", "get_ref"),
        ("POST", A + r"/git/refs", "create_ref"),
        ("PATCH", A + r"/git/refs/(.+)", "update_ref"),
        ("POST", A + r"/git/blobs", "create_blob"),
        ("GET", A + r"/git/blobs/([0-9a-f]{40})", "get_blob"),
        ("POST", A + r"/git/trees", "create_tree"),
        ("GET", A + r"/git/trees/([0-9a-f]{40})", "get_tree"),
        ("POST", A + r"/git/commits", "create_commit"),
        ("GET", A + r"/git/commits/([0-9a-f]{40})", "get_commit"),
        ("GET", A + r"/releases/tags/(.+)", "get_release_by_tag"),
        ("POST", A + r"/releases", "create_release"),
        ("PATCH", A + r"/releases/(\d+)", "update_release"),
        ("GET", A + r"/releases/(\d+)", "get_release"),
        ("GET", A + r"/releases/(\d+)/assets", "list_assets"),
        ("GET", A + r"/releases/assets/(\d+)", "get_asset"),
        ("DELETE", A + r"/releases/assets/(\d+)", "delete_asset"),
        ("POST", r"/api/uploads/repos/([^/]+/[^/]+)/releases/(\d+)/assets", "upload_asset"),
        ("GET", r"/([^/]+/[^/]+)/releases/download/([^/]+)/([^/]+)", "download"),
    ]

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.repos: dict[str, GitHubRepo] = {}
        self._ids = iter(range(1000, 10**9))

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/v3"

    def add_repo(self, full_name: str) -> GitHubRepo:
        self.repos[full_name] = GitHubRepo(full_name)
        return self.repos[full_name]

    # GitHub answers 404 (not 403) for a private repository without access.
    def authenticate(self, req: Request) -> None:
        if "/releases/download/" in req.path:
            return
        auth = req.headers.get("Authorization", "")
        if auth not in (f"token {self.token}", f"Bearer {self.token}"):
            raise Reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        if req.method in ("POST", "PATCH", "PUT") and req.body and "/api/uploads/" not in req.path:
            if "json" not in req.headers.get("Content-Type", ""):
                raise self.violate(415, "JSON body without a JSON Content-Type")

    def repo(self, name: str) -> GitHubRepo:
        if name not in self.repos:
            raise Reply(404, {"message": "Not Found"})
        return self.repos[name]

    def _url(self, name: str, rest: str) -> str:
        return f"{self.base_url}/repos/{name}{rest}"

    def get_repo(self, req: Request, name: str) -> Any:
        r = self.repo(name)
        return {
            "id": 1,
            "full_name": r.full_name,
            "name": name.split("/")[1],
            "url": self._url(name, ""),
            "default_branch": "main",
            "private": True,
        }

    def _ref_json(self, name: str, ref: str, sha: str) -> dict[str, Any]:
        return {"ref": ref, "url": self._url(name, f"/git/{ref}"), "object": {"sha": sha, "type": "commit"}}

    def get_ref(self, req: Request, name: str, ref: str) -> Any:
        r = self.repo(name)
        full = ref if ref.startswith("refs/") else f"refs/{ref}"
        if full not in r.refs:
            raise Reply(404, {"message": "Not Found"})
        return self._ref_json(name, full, r.refs[full])

    def create_ref(self, req: Request, name: str) -> Any:
        r, data = self.repo(name), req.json()
        ref, sha = _require(self, data, "ref", str), _require(self, data, "sha", str)
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise self.violate(422, "ref must be fully qualified (refs/heads/...)")
        if r.store.kind(sha) != "commit":
            raise Reply(422, {"message": "Object does not exist"})
        if ref in r.refs:
            raise Reply(422, {"message": "Reference already exists"})
        r.refs[ref] = sha
        return 201, self._ref_json(name, ref, sha)

    def update_ref(self, req: Request, name: str, ref: str) -> Any:
        r, data = self.repo(name), req.json()
        sha = _require(self, data, "sha", str)
        full = f"refs/{ref}"
        if full not in r.refs:
            raise Reply(422, {"message": "Reference does not exist"})
        if not data.get("force") and not r.store.is_ancestor(r.refs[full], sha):
            raise Reply(422, {"message": "Update is not a fast forward"})
        r.refs[full] = sha
        return self._ref_json(name, full, sha)

    def create_blob(self, req: Request, name: str) -> Any:
        r, data = self.repo(name), req.json()
        content = _require(self, data, "content", str)
        encoding = data.get("encoding", "utf-8")
        if encoding not in ("utf-8", "base64"):
            raise self.violate(422, "encoding must be utf-8 or base64")
        raw = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
        sha = r.store.put_blob(raw)
        return 201, {"sha": sha, "url": self._url(name, f"/git/blobs/{sha}")}

    def get_blob(self, req: Request, name: str, sha: str) -> Any:
        r = self.repo(name)
        if r.store.kind(sha) != "blob":
            raise Reply(404, {"message": "Not Found"})
        data = r.store.objects[sha][1]
        return {"sha": sha, "size": len(data), "encoding": "base64", "content": base64.b64encode(data).decode()}

    def _tree_json(self, name: str, r: GitHubRepo, sha: str, recursive: bool) -> dict[str, Any]:
        items = []

        def walk(tree: str, prefix: str) -> None:
            for n, (mode, s) in sorted(r.store.objects[tree][1].items()):
                is_tree = mode == "40000"
                item = {
                    "path": prefix + n,
                    "mode": "040000" if is_tree else mode,
                    "type": "tree" if is_tree else "blob",
                    "sha": s,
                    "url": self._url(name, f"/git/{'trees' if is_tree else 'blobs'}/{s}"),
                }
                if not is_tree:
                    item["size"] = len(r.store.objects[s][1])
                items.append(item)
                if is_tree and recursive:
                    walk(s, prefix + n + "/")

        walk(sha, "")
        return {"sha": sha, "url": self._url(name, f"/git/trees/{sha}"), "tree": items, "truncated": False}

    def create_tree(self, req: Request, name: str) -> Any:
        r, data = self.repo(name), req.json()
        entries = _require(self, data, "tree", list)
        base = data.get("base_tree")
        if base is not None and r.store.kind(base) != "tree":
            raise Reply(422, {"message": "base_tree is not a valid tree oid"})
        flat = r.store.flatten(base)
        for e in entries:
            path, mode, typ = (
                _require(self, e, "path", str),
                _require(self, e, "mode", str),
                _require(self, e, "type", str),
            )
            if mode not in _GH_MODES or typ not in ("blob", "tree", "commit"):
                raise self.violate(422, f"invalid mode/type {mode}/{typ} for {path}")
            if ("sha" in e) == ("content" in e):
                raise self.violate(422, f"tree entry {path}: exactly one of sha or content")
            if path.startswith("/") or path.endswith("/") or "//" in path:
                raise self.violate(422, f"tree entry path {path!r} is malformed")
            sha = e.get("sha") if "sha" in e else r.store.put_blob(e["content"].encode())
            for p in [p for p in flat if p == path or p.startswith(path + "/")]:
                del flat[p]
            if sha is None:
                continue
            if typ == "tree":
                if r.store.kind(sha) != "tree" or mode != "040000":
                    raise Reply(422, {"message": f"tree.sha {sha} is not a tree"})
                flat.update({f"{path}/{p}": v for p, v in r.store.flatten(sha).items()})
            else:
                if r.store.kind(sha) != "blob":
                    raise Reply(422, {"message": f"tree.sha {sha} is not a valid blob"})
                flat[path] = (mode, sha)
        sha = r.store.build(flat)
        return 201, self._tree_json(name, r, sha, recursive=False)

    def get_tree(self, req: Request, name: str, sha: str) -> Any:
        r = self.repo(name)
        if r.store.kind(sha) != "tree":
            raise Reply(404, {"message": "Not Found"})
        return self._tree_json(name, r, sha, recursive=req.query.get("recursive") not in (None, "", "0", "false"))

    def _commit_json(self, name: str, r: GitHubRepo, sha: str) -> dict[str, Any]:
        c = r.store.objects[sha][1]
        person = {"name": "fake", "email": "fake@example.invalid", "date": "2024-01-01T00:00:00Z"}
        return {
            "sha": sha,
            "url": self._url(name, f"/git/commits/{sha}"),
            "message": c["message"],
            "tree": {"sha": c["tree"], "url": self._url(name, f"/git/trees/{c['tree']}")},
            "parents": [{"sha": p, "url": self._url(name, f"/git/commits/{p}")} for p in c["parents"]],
            "author": person,
            "committer": person,
        }

    def create_commit(self, req: Request, name: str) -> Any:
        r, data = self.repo(name), req.json()
        message, tree = _require(self, data, "message", str), _require(self, data, "tree", str)
        parents = data.get("parents", [])
        if not isinstance(parents, list):
            raise self.violate(422, "parents must be an array")
        if r.store.kind(tree) != "tree" or any(r.store.kind(p) != "commit" for p in parents):
            raise Reply(422, {"message": "Tree SHA does not exist"})
        sha = r.store.put_commit(tree, parents, message)
        return 201, self._commit_json(name, r, sha)

    def get_commit(self, req: Request, name: str, sha: str) -> Any:
        r = self.repo(name)
        if r.store.kind(sha) != "commit":
            raise Reply(404, {"message": "Not Found"})
        return self._commit_json(name, r, sha)

    # releases
    def _release_json(self, name: str, rel: dict[str, Any]) -> dict[str, Any]:
        rid = rel["id"]
        return {
            "id": rid,
            "url": self._url(name, f"/releases/{rid}"),
            "html_url": f"{self.origin}/{name}/releases/tag/{rel['tag_name']}",
            "assets_url": self._url(name, f"/releases/{rid}/assets"),
            "upload_url": f"{self.origin}/api/uploads/repos/{name}/releases/{rid}/assets{{?name,label}}",
            "tag_name": rel["tag_name"],
            "target_commitish": rel["target_commitish"],
            "name": rel["name"],
            "body": rel["body"],
            "draft": rel["draft"],
            "prerelease": rel["prerelease"],
            "assets": [self._asset_json(name, rel, a) for a in rel["assets"]],
        }

    def _asset_json(self, name: str, rel: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": a["id"],
            "url": self._url(name, f"/releases/assets/{a['id']}"),
            "name": a["name"],
            "label": a["label"],
            "content_type": a["content_type"],
            "size": len(a["data"]),
            "state": "uploaded",
            "digest": "sha256:" + hashlib.sha256(a["data"]).hexdigest(),
            "browser_download_url": f"{self.origin}/{name}/releases/download/{rel['tag_name']}/{a['name']}",
        }

    def _release(self, r: GitHubRepo, rid: str) -> dict[str, Any]:
        for rel in r.releases:
            if rel["id"] == int(rid):
                return rel
        raise Reply(404, {"message": "Not Found"})

    def get_release_by_tag(self, req: Request, name: str, tag: str) -> Any:
        r = self.repo(name)
        for rel in r.releases:
            if rel["tag_name"] == tag:
                return self._release_json(name, rel)
        raise Reply(404, {"message": "Not Found"})

    def get_release(self, req: Request, name: str, rid: str) -> Any:
        return self._release_json(name, self._release(self.repo(name), rid))

    def create_release(self, req: Request, name: str) -> Any:
        r, data = self.repo(name), req.json()
        tag = _require(self, data, "tag_name", str)
        for key in ("draft", "prerelease"):
            if key in data and not isinstance(data[key], bool):
                raise self.violate(422, f"{key} must be a boolean")
        if any(rel["tag_name"] == tag for rel in r.releases):
            raise Reply(
                422,
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Release", "code": "already_exists", "field": "tag_name"}],
                },
            )
        target = data.get("target_commitish") or r.refs.get("refs/heads/main")
        if f"refs/tags/{tag}" not in r.refs:
            sha = r.refs.get(f"refs/heads/{target}", target)
            if r.store.kind(sha or "") != "commit":
                raise Reply(
                    422, {"message": "Validation Failed", "errors": [{"field": "target_commitish", "code": "invalid"}]}
                )
            r.refs[f"refs/tags/{tag}"] = sha
        rel = {
            "id": next(self._ids),
            "tag_name": tag,
            "target_commitish": target,
            "name": data.get("name") or tag,
            "body": data.get("body") or "",
            "draft": data.get("draft", False),
            "prerelease": data.get("prerelease", False),
            "assets": [],
        }
        r.releases.append(rel)
        return 201, self._release_json(name, rel)

    def update_release(self, req: Request, name: str, rid: str) -> Any:
        r, data = self.repo(name), req.json()
        rel = self._release(r, rid)
        for key in ("name", "body", "draft", "prerelease", "tag_name", "target_commitish"):
            if key in data and data[key] is not None:
                rel[key] = data[key]
        return self._release_json(name, rel)

    def list_assets(self, req: Request, name: str, rid: str) -> Any:
        rel = self._release(self.repo(name), rid)
        return [self._asset_json(name, rel, a) for a in rel["assets"]]

    def _find_asset(self, r: GitHubRepo, aid: str) -> tuple[dict[str, Any], dict[str, Any]]:
        for rel in r.releases:
            for a in rel["assets"]:
                if a["id"] == int(aid):
                    return rel, a
        raise Reply(404, {"message": "Not Found"})

    def get_asset(self, req: Request, name: str, aid: str) -> Any:
        rel, a = self._find_asset(self.repo(name), aid)
        if req.headers.get("Accept") == "application/octet-stream":
            raise Reply(200, a["data"], {"Content-Type": "application/octet-stream"})
        return self._asset_json(name, rel, a)

    def delete_asset(self, req: Request, name: str, aid: str) -> Any:
        rel, a = self._find_asset(self.repo(name), aid)
        rel["assets"].remove(a)
        return 204, None

    def upload_asset(self, req: Request, name: str, rid: str) -> Any:
        r = self.repo(name)
        rel = self._release(r, rid)
        aname = req.query.get("name")
        if not aname:
            raise self.violate(422, "asset upload without ?name=")
        ctype = req.headers.get("Content-Type")
        if not ctype or "x-www-form-urlencoded" in ctype:
            raise self.violate(422, "asset upload needs the asset's Content-Type")
        if int(req.headers.get("Content-Length") or -1) != len(req.body):
            raise self.violate(400, "Content-Length does not match the body")
        if any(a["name"] == aname for a in rel["assets"]):
            raise Reply(
                422,
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}],
                },
            )
        a = {
            "id": next(self._ids),
            "name": aname,
            "label": req.query.get("label", ""),
            "content_type": ctype,
            "data": req.body,
        }
        rel["assets"].append(a)
        return 201, self._asset_json(name, rel, a)

    def download(self, req: Request, name: str, tag: str, aname: str) -> Any:
        r = self.repo(name)
        for rel in r.releases:
            if rel["tag_name"] == tag:
                for a in rel["assets"]:
                    if a["name"] == aname:
                        raise Reply(200, a["data"], {"Content-Type": "application/octet-stream"})
        raise Reply(404, {"message": "Not Found"})

    # helpers for tests
    def read_branch(self, name: str, branch: str) -> dict[str, bytes]:
        r = self.repos[name]
        commit = r.store.objects[r.refs[f"refs/heads/{branch}"]][1]
        return r.store.read(commit["tree"])

    def seed(self, name: str, branch: str, files: dict[str, bytes]) -> str:
        """Give ``branch`` a first commit holding ``files``; returns its id."""
        r = self.repos[name]
        tree = r.store.build({p: ("100644", r.store.put_blob(d)) for p, d in files.items()})
        sha = r.store.put_commit(tree, [], "seed")
        r.refs[f"refs/heads/{branch}"] = sha
        return sha


# -- GitLab -----------------------------------------------------------------------


@dataclass
class GitLabProject:
    id: int
    path: str
    store: ObjectStore = field(default_factory=ObjectStore)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    packages: dict[tuple[str, str, str], list[bytes]] = field(default_factory=dict)


_GL_NAME = re.compile(r"[A-Za-z0-9._~+-]+")
_GL_VERSION = re.compile(r"(\.?[\w+-]+\.?)+")


class FakeGitLab(FakeServer):
    P = r"/api/v4/projects/([^/]+)"
    routes = [
        ("GET", P, "get_project"),
        ("GET", P + r"/repository/branches/(.+)", "get_branch"),
        ("GET", P + r"/repository/tree", "get_tree"),
        ("POST", P + r"/repository/commits", "create_commit"),
        ("GET", P + r"/repository/commits/([0-9a-f]{40})", "get_commit"),
        ("GET", P + r"/repository/blobs/([0-9a-f]{40})/raw", "get_blob_raw"),
        ("GET", P + r"/releases/([^/]+)", "get_release"),
        ("POST", P + r"/releases", "create_release"),
        ("PUT", P + r"/releases/([^/]+)", "update_release"),
        ("GET", P + r"/releases/([^/]+)/assets/links", "list_links"),
        ("POST", P + r"/releases/([^/]+)/assets/links", "create_link"),
        ("PUT", P + r"/releases/([^/]+)/assets/links/(\d+)", "update_link"),
        ("DELETE", P + r"/releases/([^/]+)/assets/links/(\d+)", "delete_link"),
        ("PUT", P + r"/packages/generic/([^/]+)/([^/]+)/([^/]+)", "put_package"),
        ("GET", P + r"/packages/generic/([^/]+)/([^/]+)/([^/]+)", "get_package"),
    ]

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.projects: dict[str, GitLabProject] = {}
        self._ids = iter(range(1, 10**9))

    @property
    def url(self) -> str:
        return self.origin

    def add_project(self, path: str) -> GitLabProject:
        p = GitLabProject(id=len(self.projects) + 42, path=path)
        self.projects[path] = p
        return p

    def dispatch(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        # the project id is percent-encoded in the URL ("group%2Fname"): re-split on the raw path
        raw = getattr(req, "raw_path", req.path)
        m = re.match(r"/api/v4/projects/([^/]+)(/.*)?$", raw)
        if m:
            req.path = f"/api/v4/projects/{m.group(1)}" + urllib.parse.unquote(m.group(2) or "")
        return super().dispatch(req)

    def authenticate(self, req: Request) -> None:
        token = req.headers.get("PRIVATE-TOKEN") or req.headers.get("Authorization", "").removeprefix("Bearer ")
        if token != self.token:
            raise Reply(401, {"message": "401 Unauthorized"})

    def project(self, pid: str) -> GitLabProject:
        key = urllib.parse.unquote(pid)
        for p in self.projects.values():
            if key in (p.path, str(p.id)):
                return p
        raise Reply(404, {"message": "404 Project Not Found"})

    def get_project(self, req: Request, pid: str) -> Any:
        p = self.project(pid)
        return {
            "id": p.id,
            "path_with_namespace": p.path,
            "default_branch": "main" if "main" in p.branches else None,
            "web_url": f"{self.origin}/{p.path}",
            "empty_repo": not p.branches,
        }

    def _commit_json(self, p: GitLabProject, sha: str) -> dict[str, Any]:
        c = p.store.objects[sha][1]
        return {
            "id": sha,
            "short_id": sha[:8],
            "title": c["message"].splitlines()[0] if c["message"] else "",
            "message": c["message"],
            "parent_ids": c["parents"],
            "web_url": f"{self.origin}/{p.path}/-/commit/{sha}",
        }

    def get_branch(self, req: Request, pid: str, branch: str) -> Any:
        p = self.project(pid)
        if branch not in p.branches:
            raise Reply(404, {"message": "404 Branch Not Found"})
        return {"name": branch, "commit": self._commit_json(p, p.branches[branch])}

    def get_tree(self, req: Request, pid: str) -> Any:
        p = self.project(pid)
        ref = req.query.get("ref") or "main"
        sha = p.branches.get(ref) or p.tags.get(ref) or (ref if p.store.kind(ref) == "commit" else None)
        if sha is None:
            raise Reply(404, {"message": "404 Tree Not Found"})
        flat = p.store.flatten(p.store.objects[sha][1]["tree"])
        path = req.query.get("path", "").strip("/")
        if path:
            flat = {k[len(path) + 1 :]: v for k, v in flat.items() if k.startswith(path + "/")}
            if not flat:
                raise Reply(404, {"message": "404 Tree Not Found"})
        if str(req.query.get("recursive")).lower() not in ("true", "1", "t", "yes"):
            raise self.violate(400, "the deliverer is expected to list recursively")
        prefix = f"{path}/" if path else ""
        return [
            {"id": s, "name": k.rsplit("/", 1)[-1], "type": "blob", "path": prefix + k, "mode": m.zfill(6)}
            for k, (m, s) in sorted(flat.items())
        ]
        # a single page: python-gitlab stops when there is no Link: rel="next"

    def create_commit(self, req: Request, pid: str) -> Any:
        p, data = self.project(pid), req.json()
        branch = _require(self, data, "branch", str, 400)
        message = _require(self, data, "commit_message", str, 400)
        actions = _require(self, data, "actions", list, 400)
        start = data.get("start_branch")
        if branch in p.branches:
            parent: str | None = p.branches[branch]
        elif start:
            if start not in p.branches:
                raise Reply(400, {"message": f"A branch called '{start}' does not exist"})
            parent = p.branches[start]
        elif not p.branches:
            parent = None  # an empty repository
        else:
            raise Reply(400, {"message": "You can only create or edit files when you are on a branch"})
        flat = p.store.flatten(p.store.objects[parent][1]["tree"]) if parent else {}
        for a in actions:
            action = _require(self, a, "action", str, 400)
            path = _require(self, a, "file_path", str, 400)
            if action not in ("create", "delete", "move", "update", "chmod"):
                raise self.violate(400, f"actions[].action {action!r} is not valid")
            encoding = a.get("encoding", "text")
            if encoding not in ("text", "base64"):
                raise self.violate(400, "actions[].encoding must be text or base64")
            exists = path in flat
            if action == "create" and exists:
                raise Reply(400, {"message": f"A file with this name already exists: {path}"})
            if action in ("update", "delete", "chmod") and not exists:
                raise Reply(400, {"message": f"A file with this name doesn't exist: {path}"})
            if action == "delete":
                del flat[path]
                continue
            mode = flat.get(path, ("100644", ""))[0]
            if "execute_filemode" in a:
                if not isinstance(a["execute_filemode"], bool):
                    raise self.violate(400, "execute_filemode must be a boolean")
                mode = "100755" if a["execute_filemode"] else "100644"
            if action == "chmod":
                flat[path] = (mode, flat[path][1])
                continue
            content = _require(self, a, "content", str, 400)
            raw = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
            flat[path] = (mode, p.store.put_blob(raw))
        tree = p.store.build(flat)
        sha = p.store.put_commit(tree, [parent] if parent else [], message)
        p.branches[branch] = sha
        return 201, self._commit_json(p, sha)

    def get_commit(self, req: Request, pid: str, sha: str) -> Any:
        p = self.project(pid)
        if p.store.kind(sha) != "commit":
            raise Reply(404, {"message": "404 Commit Not Found"})
        return self._commit_json(p, sha)

    def get_blob_raw(self, req: Request, pid: str, sha: str) -> Any:
        p = self.project(pid)
        if p.store.kind(sha) != "blob":
            raise Reply(404, {"message": "404 Blob Not Found"})
        raise Reply(200, p.store.objects[sha][1], {"Content-Type": "application/octet-stream"})

    # releases
    def _release_json(self, p: GitLabProject, rel: dict[str, Any]) -> dict[str, Any]:
        return {
            "tag_name": rel["tag_name"],
            "name": rel["name"],
            "description": rel["description"],
            "commit": self._commit_json(p, p.tags[rel["tag_name"]]),
            "assets": {"links": [dict(link) for link in rel["links"]]},
            "_links": {"self": f"{self.origin}/{p.path}/-/releases/{rel['tag_name']}"},
        }

    def _rel(self, p: GitLabProject, tag: str) -> dict[str, Any]:
        if tag not in p.releases:
            raise Reply(404, {"message": "404 Not Found"})
        return p.releases[tag]

    def get_release(self, req: Request, pid: str, tag: str) -> Any:
        p = self.project(pid)
        return self._release_json(p, self._rel(p, tag))

    def _check_link(
        self, p: GitLabProject, rel: dict[str, Any], link: Any, ignore: int | None = None
    ) -> dict[str, Any]:
        name = _require(self, link, "name", str, 400)
        url = _require(self, link, "url", str, 400)
        if not url.startswith(("http://", "https://", "ftp://")):
            raise self.violate(400, "link url is not a valid URL")
        if link.get("link_type", "other") not in ("other", "runbook", "image", "package"):
            raise self.violate(400, "link_type does not have a valid value")
        for other in rel["links"]:
            if other["id"] != ignore and (other["name"] == name or other["url"] == url):
                raise Reply(400, {"message": {"name": ["has already been taken"]}})
        out = {"id": next(self._ids), "name": name, "url": url, "link_type": link.get("link_type", "other")}
        if link.get("direct_asset_path"):
            out["direct_asset_url"] = (
                f"{self.origin}/{p.path}/-/releases/{rel['tag_name']}/downloads/{link['direct_asset_path'].lstrip('/')}"
            )
        return out

    def create_release(self, req: Request, pid: str) -> Any:
        p, data = self.project(pid), req.json()
        tag = _require(self, data, "tag_name", str, 400)
        if tag in p.releases:
            raise Reply(409, {"message": "Release already exists"})
        if tag not in p.tags:
            ref = data.get("ref")
            if not ref:
                raise Reply(400, {"message": "Ref is not specified"})
            sha = p.branches.get(ref, ref)
            if p.store.kind(sha) != "commit":
                raise Reply(400, {"message": "Ref is not valid"})
            p.tags[tag] = sha
        rel = {
            "tag_name": tag,
            "name": data.get("name") or tag,
            "description": data.get("description") or "",
            "links": [],
        }
        for link in (data.get("assets") or {}).get("links", []):
            rel["links"].append(self._check_link(p, rel, link))
        p.releases[tag] = rel
        return 201, self._release_json(p, rel)

    def update_release(self, req: Request, pid: str, tag: str) -> Any:
        p, data = self.project(pid), req.json()
        rel = self._rel(p, tag)
        for key in ("name", "description"):
            if key in data:
                rel[key] = data[key]
        return self._release_json(p, rel)

    def list_links(self, req: Request, pid: str, tag: str) -> Any:
        return [dict(link) for link in self._rel(self.project(pid), tag)["links"]]

    def create_link(self, req: Request, pid: str, tag: str) -> Any:
        p = self.project(pid)
        rel = self._rel(p, tag)
        link = self._check_link(p, rel, req.json())
        rel["links"].append(link)
        return 201, dict(link)

    def update_link(self, req: Request, pid: str, tag: str, lid: str) -> Any:
        p = self.project(pid)
        rel = self._rel(p, tag)
        for i, link in enumerate(rel["links"]):
            if link["id"] == int(lid):
                merged = {**link, **req.json()}
                new = self._check_link(p, rel, merged, ignore=link["id"])
                new["id"] = link["id"]
                rel["links"][i] = new
                return dict(new)
        raise Reply(404, {"message": "404 Not found"})

    def delete_link(self, req: Request, pid: str, tag: str, lid: str) -> Any:
        rel = self._rel(self.project(pid), tag)
        for link in rel["links"]:
            if link["id"] == int(lid):
                rel["links"].remove(link)
                return dict(link)
        raise Reply(404, {"message": "404 Not found"})

    def put_package(self, req: Request, pid: str, name: str, version: str, fname: str) -> Any:
        p = self.project(pid)
        if not _GL_NAME.fullmatch(name) or not _GL_VERSION.fullmatch(version) or not _GL_NAME.fullmatch(fname):
            raise self.violate(400, "package name, version or file name does not match GitLab's rules")
        if "json" in req.headers.get("Content-Type", ""):
            raise self.violate(400, "generic package body sent as JSON")
        p.packages.setdefault((name, version, fname), []).append(req.body)
        if req.query.get("select") == "package_file":
            return 201, {
                "id": next(self._ids),
                "package_id": 1,
                "file_name": fname,
                "size": len(req.body),
                "file_sha256": hashlib.sha256(req.body).hexdigest(),
                "file_md5": None,
            }
        return 201, {"message": "201 Created"}

    def get_package(self, req: Request, pid: str, name: str, version: str, fname: str) -> Any:
        p = self.project(pid)
        files = p.packages.get((name, version, fname))
        if not files:
            raise Reply(404, {"message": "404 Package Not Found"})
        raise Reply(200, files[-1], {"Content-Type": "application/octet-stream"})

    # helpers for tests
    def read_branch(self, path: str, branch: str) -> dict[str, bytes]:
        p = self.projects[path]
        return p.store.read(p.store.objects[p.branches[branch]][1]["tree"])

    def modes(self, path: str, branch: str) -> dict[str, str]:
        p = self.projects[path]
        return {k: m for k, (m, _) in p.store.flatten(p.store.objects[p.branches[branch]][1]["tree"]).items()}

    def seed(self, path: str, branch: str, files: dict[str, bytes]) -> str:
        p = self.projects[path]
        tree = p.store.build({k: ("100644", p.store.put_blob(d)) for k, d in files.items()})
        sha = p.store.put_commit(tree, [], "seed")
        p.branches[branch] = sha
        return sha
