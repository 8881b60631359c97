"""The gitlab deliverer against a FAKE GitLab.

No real GitLab server can run on these machines, so these tests use ``fake_gitlab``
(forge_fakes.py): a stateful fake of the commits (``actions``), tree, branches,
releases, release links and generic packages endpoints that computes real git
object ids and rejects requests whose shape breaks GitLab's documented REST API v4
(the fixture fails the test if any did).
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fixtures_forge import CANARY_GITLAB_TOKEN
from operator_targets import add_operator_target, assert_capsule_target_refused

from qlcapsule import Capsule

pytestmark = pytest.mark.e2e


def _capsule(
    make_capsule: Any,
    fake: Any,
    root: Path | None = None,
    files: dict[str, Any] | None = None,
    version: str = "2.0.0-rc.1",
    **options: Any,
) -> Capsule:
    opts = {"project": "acme/capsules", "url": fake.url, "retries": 2, **options}
    add_operator_target("gl", {"provider": "gitlab", "options": opts})
    definition = f"name: orders\nversion: {version}\ndescription: Orders service\n"
    files = files or {"app.py": "print('hi')\n", "bin/run.sh": "#!/bin/sh\necho run\n", "logo.bin": bytes(range(256))}
    cap = make_capsule(files, definition=definition, seal=False, **({"root": root} if root else {}))
    if "bin/run.sh" in files:
        (cap.root / "bin/run.sh").chmod(0o755)
    cap.seal()
    return cap


def _artifact(tmp_path: Path, data: bytes = b"tarball " * 2000, name: str = "orders-2.0.0-rc.1.tar.gz") -> Path:
    p = tmp_path / "out" / name
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(data)
    return p


def _run(qlcapsule_cli: Any, *args: str, token: str | None = CANARY_GITLAB_TOKEN) -> Any:
    result = qlcapsule_cli("-vv", *args, env={"GITLAB_TOKEN": token or ""})
    assert CANARY_GITLAB_TOKEN not in result.output, "the token leaked into the output"
    return result


def test_commit_packages_and_release(make_capsule: Any, fake_gitlab: Any, qlcapsule_cli: Any, tmp_path: Path) -> None:
    """A FAKE GitLab: the branch holds the capsule (modes too), the package file reads back, the release links it."""
    cap = _capsule(make_capsule, fake_gitlab)
    art = _artifact(tmp_path)
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gl", "-a", str(art), "--json")
    assert res.exit_code == 0, res.output
    (receipt,) = json.loads(res.stdout)["result"]["receipts"]
    assert receipt["location"] == "gitlab:acme/capsules/packages/generic/orders/2.0.0-rc.1/orders-2.0.0-rc.1.tar.gz"
    assert receipt["extra"]["committed"] is True and receipt["extra"]["tag"] == "orders-2.0.0-rc.1"
    assert fake_gitlab.read_branch("acme/capsules", "capsules") == {rel: p.read_bytes() for rel, p, _ in cap.payload()}
    assert fake_gitlab.modes("acme/capsules", "capsules")["bin/run.sh"] == "100755"
    project = fake_gitlab.projects["acme/capsules"]
    assert project.packages[("orders", "2.0.0-rc.1", "orders-2.0.0-rc.1.tar.gz")] == [art.read_bytes()]
    release = project.releases["orders-2.0.0-rc.1"]
    assert project.tags["orders-2.0.0-rc.1"] == receipt["extra"]["commit"]
    assert [(link["name"], link["url"], link["link_type"]) for link in release["links"]] == [
        ("orders-2.0.0-rc.1.tar.gz", receipt["url"], "package")
    ]
    assert cap.digest in release["description"]
    req = urllib.request.Request(receipt["url"], headers={"PRIVATE-TOKEN": CANARY_GITLAB_TOKEN})
    with urllib.request.urlopen(req, timeout=10) as resp:  # plain HTTP read-back of the receipt URL
        assert hashlib.sha256(resp.read()).hexdigest() == receipt["sha256"]

    again = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gl", "-a", str(art), "--json")
    assert again.exit_code == 0, again.output
    r2 = json.loads(again.stdout)["result"]["receipts"][0]
    assert r2["extra"]["committed"] is False and r2["extra"]["existing"] is True
    assert len(project.packages[("orders", "2.0.0-rc.1", "orders-2.0.0-rc.1.tar.gz")]) == 1
    assert len(release["links"]) == 1


def test_update_replaces_the_capsule_directory(
    make_capsule: Any, fake_gitlab: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitLab: a new version under ``path`` updates, creates and deletes files; the rest of main stays."""
    fake_gitlab.seed("acme/capsules", "main", {"README.md": b"# repo\n"})
    opts = {"branch": "main", "path": "deploy/{name}", "release": False}
    cap = _capsule(make_capsule, fake_gitlab, root=tmp_path / "v1", **opts)
    assert _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gl", "-a", str(_artifact(tmp_path))).exit_code == 0
    files = {"app.py": "print('v2')\n", "new.txt": "new\n"}
    cap2 = _capsule(make_capsule, fake_gitlab, root=tmp_path / "v2", files=files, version="2.0.0", **opts)
    res = _run(qlcapsule_cli, "deliver", str(cap2.root), "-t", "gl", "-a", str(_artifact(tmp_path, b"v2")), "--json")
    assert res.exit_code == 0, res.output
    tree = fake_gitlab.read_branch("acme/capsules", "main")
    assert tree["README.md"] == b"# repo\n"
    assert {p for p in tree if p.startswith("deploy/orders/")} == {
        "deploy/orders/" + rel for rel, _, _ in cap2.payload()
    }
    assert tree["deploy/orders/app.py"] == b"print('v2')\n"
    assert fake_gitlab.projects["acme/capsules"].releases == {}


def test_new_branch_starts_from_the_default_branch(
    make_capsule: Any, fake_gitlab: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitLab: a missing branch is created from the default branch (start_branch)."""
    fake_gitlab.seed("acme/capsules", "main", {"README.md": b"# repo\n"})
    cap = _capsule(make_capsule, fake_gitlab, branch="capsule/{name}", path="orders")
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gl", "-a", str(_artifact(tmp_path)))
    assert res.exit_code == 0, res.output
    tree = fake_gitlab.read_branch("acme/capsules", "capsule/orders")
    assert tree["README.md"] == b"# repo\n" and "orders/capsule.lock" in tree


def test_options_and_credentials_before_the_network(
    make_capsule: Any, fake_gitlab: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitLab: bad options and a missing token are one line each and send nothing; a wrong token is rejected."""
    art = str(_artifact(tmp_path))
    for i, (opts, needle) in enumerate(
        [
            ({"project": "noslash"}, "project"),
            ({"tag": "v 1"}, "tag"),
            ({"url": "ftp://x"}, "url"),
            ({"token": "x"}, "token: unknown key"),
        ]
    ):
        cap = _capsule(make_capsule, fake_gitlab, root=tmp_path / f"c{i}", **opts)
        res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gl", "-a", art)
        line = res.stderr.strip().splitlines()[-1]
        assert res.exit_code == 2 and "targets.gl.options" in line and needle in line, line
    cap = _capsule(make_capsule, fake_gitlab, root=tmp_path / "ok")
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gl", "--dry-run", token=None)
    assert res.exit_code == 2 and res.stderr.strip().splitlines()[-1] == (
        "error: missing credential: environment variable GITLAB_TOKEN is not set (GitLab token for the gitlab target)"
    )
    assert fake_gitlab.log == []
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gl", "--dry-run", token="glpat-wrong-token")
    assert res.exit_code == 2 and "was rejected (401)" in res.stderr and "glpat-wrong-token" not in res.output
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gl", "--dry-run", "-a", art)
    assert res.exit_code == 0 and "would deliver gitlab:acme/capsules/packages/generic/orders/2.0.0-rc.1/" in res.stdout
    assert {m for m, _ in fake_gitlab.log} == {"GET"}


def test_conflicting_package_file(make_capsule: Any, fake_gitlab: Any, qlcapsule_cli: Any, tmp_path: Path) -> None:
    """A FAKE GitLab: a package file with other content is a conflict unless overwrite is set."""
    cap = _capsule(make_capsule, fake_gitlab, release=False)
    assert _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gl", "-a", str(_artifact(tmp_path))).exit_code == 0
    other = str(_artifact(tmp_path, b"different"))
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gl", "-a", other)
    assert res.exit_code == 1 and "already has orders-2.0.0-rc.1.tar.gz with other content" in res.stderr
    cap2 = _capsule(make_capsule, fake_gitlab, root=tmp_path / "ow", release=False, overwrite=True)
    assert _run(qlcapsule_cli, "deliver", str(cap2.root), "-t", "gl", "-a", other).exit_code == 0
    files = fake_gitlab.projects["acme/capsules"].packages[("orders", "2.0.0-rc.1", "orders-2.0.0-rc.1.tar.gz")]
    assert files[-1] == b"different"


def test_transient_error_retried_exactly_once(
    make_capsule: Any, fake_gitlab: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitLab answering 502 once on the package upload and once on the release: one file, one release."""
    cap = _capsule(make_capsule, fake_gitlab)
    fake_gitlab.fail_next += [("PUT", r"/packages/generic/", 502), ("POST", r"/releases$", 502)]
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gl", "-a", str(_artifact(tmp_path)))
    assert res.exit_code == 0, res.output
    assert fake_gitlab.fail_next == [] and "event=retry" in res.stderr
    project = fake_gitlab.projects["acme/capsules"]
    assert len(project.packages[("orders", "2.0.0-rc.1", "orders-2.0.0-rc.1.tar.gz")]) == 1
    assert list(project.releases) == ["orders-2.0.0-rc.1"]


# -- credentials and redirects (issue 16) ------------------------------------------------


def _rd_deliver(make_capsule: Any, qlcapsule_cli: Any, tmp_path: Path, fake: Any) -> Any:
    """Deliver through an operator targets file (the target is the operator's, not the capsule's)."""
    opts = {"project": "acme/capsules", "url": fake.origin, "retries": 2, "release": False}
    targets = tmp_path / "operator-targets.yaml"
    targets.write_text(f"targets:\n  gl:\n    provider: gitlab\n    options: {json.dumps(opts)}\n")
    cap = make_capsule({"app.py": "print('hi')\n"}, definition="name: orders\nversion: 2.0.0\n")
    art = _artifact(tmp_path, name="orders-2.0.0.tar.gz")
    env = {"GITLAB_TOKEN": CANARY_GITLAB_TOKEN, "QLCAPSULE_TARGETS_FILE": str(targets)}
    res = qlcapsule_cli("-vv", "deliver", str(cap.root), "-t", "gl", "-a", str(art), env=env)
    assert CANARY_GITLAB_TOKEN not in res.output, "the token leaked into the output"
    return res


@pytest.mark.parametrize("status", [301, 302, 307])
def test_token_never_follows_a_redirect_to_another_host(
    status: int, make_capsule: Any, fake_gitlab: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitLab redirecting a GET to another port: followed without PRIVATE-TOKEN (the far end records it)."""
    from faultproxy import Recorder

    far = Recorder(404)
    try:
        fake_gitlab.redirect_next.append(("GET", r"^/api/v4/projects/acme%2Fcapsules$", status, far.url + "/p"))
        res = _rd_deliver(make_capsule, qlcapsule_cli, tmp_path, fake_gitlab)
    finally:
        far.stop()
    assert [h.path for h in far.heard] == ["/p"], res.output
    assert far.carried(CANARY_GITLAB_TOKEN) == []
    assert not any(k.lower() in ("private-token", "authorization", "cookie") for k in far.heard[0].headers)
    assert res.exit_code == 2 and "not found (404" in res.stderr


@pytest.mark.parametrize("status", [302, 307, 308])
def test_a_commit_redirected_to_another_host_is_refused(
    status: int, make_capsule: Any, fake_gitlab: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitLab redirecting the commit POST to another port: one line, exit 3, nothing sent there."""
    from faultproxy import Recorder

    far = Recorder(201, b"{}")
    try:
        fake_gitlab.redirect_next.append(("POST", r"/repository/commits$", status, far.url + "/commits"))
        res = _rd_deliver(make_capsule, qlcapsule_cli, tmp_path, fake_gitlab)
    finally:
        far.stop()
    assert far.heard == []
    assert res.exit_code == 3, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"redirected a POST to another host (http://127.0.0.1:{far.port})" in errors[0]
    assert "Traceback" not in res.output and "capsules" not in fake_gitlab.projects["acme/capsules"].branches


def test_a_capsule_defined_gitlab_target_is_refused(make_capsule: Any, qlcapsule_cli: Any, monkeypatch: Any) -> None:
    """A pull request's capsule.yaml sends PRIVATE-TOKEN (any variable it names) to its server: refused."""
    from faultproxy import Recorder

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY_GITLAB_TOKEN)
    far = Recorder(404)
    try:
        opts = {"project": "acme/capsules", "url": far.url, "token_env": "AWS_SECRET_ACCESS_KEY"}
        cap = make_capsule(
            {"app.py": "print('hi')\n"},
            definition=f"name: orders\nversion: 1.0.0\ntargets:\n  gl:\n    provider: gitlab\n    options: {json.dumps(opts)}\n",
        )
        assert_capsule_target_refused(qlcapsule_cli, cap.root, "gl", far, (CANARY_GITLAB_TOKEN,))
    finally:
        far.stop()
