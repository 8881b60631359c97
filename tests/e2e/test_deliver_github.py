"""The github deliverer against a FAKE GitHub.

No real GitHub (or Gitea/Forgejo) server can run on these machines, so these tests
use ``fake_github`` (forge_fakes.py): a stateful fake of the git data, releases and
asset endpoints that computes real git object ids and rejects requests whose
shape breaks GitHub's documented REST API (the fixture fails the test if any did).
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fixtures_forge import CANARY_GITHUB_TOKEN
from operator_targets import add_operator_target, assert_capsule_target_refused

from qlcapsule import Capsule

pytestmark = pytest.mark.e2e


def _capsule(
    make_capsule: Any,
    fake: Any,
    version: str = "1.0.0",
    files: dict[str, Any] | None = None,
    root: Path | None = None,
    **options: Any,
) -> Capsule:
    opts = {
        "repository": "acme/capsules",
        "base_url": fake.base_url,
        "retries": 2,
        "request_interval": 0,
        "write_interval": 0,
        **options,
    }
    add_operator_target("gh", {"provider": "github", "options": opts})
    definition = f"name: orders\nversion: {version}\ndescription: Orders service\n"
    files = files or {"app.py": "print('hi')\n", "bin/run.sh": "#!/bin/sh\necho run\n"}
    kw = {"root": root} if root else {}
    cap = make_capsule(files, definition=definition, seal=False, **kw)
    if "bin/run.sh" in files:
        (cap.root / "bin/run.sh").chmod(0o755)
    cap.seal()
    return cap


def _artifact(tmp_path: Path, data: bytes = b"artifact bytes " * 1000, name: str = "orders-1.0.0.tar.gz") -> Path:
    p = tmp_path / "out" / name
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(data)
    return p


def _run(qlcapsule_cli: Any, *args: str, token: str | None = CANARY_GITHUB_TOKEN) -> Any:
    env = {"GITHUB_TOKEN": token} if token is not None else {"GITHUB_TOKEN": ""}
    result = qlcapsule_cli("-vv", *args, env=env)
    assert CANARY_GITHUB_TOKEN not in result.output, "the token leaked into the output"
    return result


def test_push_commit_and_release(make_capsule: Any, fake_github: Any, qlcapsule_cli: Any, tmp_path: Path) -> None:
    """A FAKE GitHub: the branch holds exactly the capsule, the release holds the artifact, read back by plain HTTP."""
    files = {"app.py": "print('hi')\n", "bin/run.sh": "#!/bin/sh\necho run\n", "logo.bin": bytes(range(256)) * 4}
    cap = _capsule(make_capsule, fake_github, files=files)
    art = _artifact(tmp_path)
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "--target", "gh", "--artifact", str(art), "--json")
    assert res.exit_code == 0, res.output
    receipt = json.loads(res.stdout)["result"]["receipts"][0]
    assert receipt["provider"] == "github"
    assert receipt["location"] == "github:acme/capsules/releases/orders-1.0.0/orders-1.0.0.tar.gz"
    assert receipt["sha256"] == hashlib.sha256(art.read_bytes()).hexdigest()
    assert receipt["extra"]["committed"] is True and receipt["extra"]["existing"] is False

    files = fake_github.read_branch("acme/capsules", "capsules")
    expected = {rel: p.read_bytes() for rel, p, _ in cap.payload()}
    assert files == expected
    repo = fake_github.repos["acme/capsules"]
    flat = repo.store.flatten(repo.store.objects[repo.refs["refs/heads/capsules"]][1]["tree"])
    assert flat["bin/run.sh"][0] == "100755" and flat["app.py"][0] == "100644"
    # binary files go up as base64 blobs, text inline in the tree request
    assert fake_github.log.count(("POST", "/api/v3/repos/acme/capsules/git/blobs")) == 1
    assert repo.refs["refs/tags/orders-1.0.0"] == receipt["extra"]["commit"] == repo.refs["refs/heads/capsules"]
    (release,) = repo.releases
    assert release["name"] == "orders 1.0.0" and release["prerelease"] is False
    assert cap.digest in release["body"]
    with urllib.request.urlopen(receipt["url"], timeout=10) as resp:  # plain HTTP, no token
        assert hashlib.sha256(resp.read()).hexdigest() == receipt["sha256"]

    # delivering the same version again changes nothing and says so
    commits_before = sum(1 for k, _ in repo.store.objects.values() if k == "commit")
    again = _run(qlcapsule_cli, "deliver", str(cap.root), "--target", "gh", "--artifact", str(art), "--json")
    assert again.exit_code == 0, again.output
    r2 = json.loads(again.stdout)["result"]["receipts"][0]
    assert r2["extra"]["committed"] is False and r2["extra"]["existing"] is True
    assert sum(1 for k, _ in repo.store.objects.values() if k == "commit") == commits_before
    assert len(release["assets"]) == 1


def test_path_keeps_other_files_and_replaces_the_old_version(
    make_capsule: Any, fake_github: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitHub: with ``path``, the rest of the branch is kept and the capsule directory is replaced."""
    fake_github.seed("acme/capsules", "main", {"README.md": b"# repo\n", "capsules/orders/stale.txt": b"old\n"})
    root = tmp_path / "cap"
    cap = _capsule(make_capsule, fake_github, root=root, branch="main", path="capsules/{name}")
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "--target", "gh", "--artifact", str(_artifact(tmp_path)))
    assert res.exit_code == 0, res.output
    files = fake_github.read_branch("acme/capsules", "main")
    assert files["README.md"] == b"# repo\n"
    assert "capsules/orders/stale.txt" not in files
    assert files["capsules/orders/app.py"] == b"print('hi')\n"
    assert "capsules/orders/capsule.lock" in files
    assert "delivered" in res.stdout and "url: http://127.0.0.1" in res.stdout


def test_options_are_checked_before_any_request(
    make_capsule: Any, fake_github: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitHub: bad options fail with one line naming the field, and nothing is sent."""
    art = str(_artifact(tmp_path))
    cases = [
        ({"repository": "not-a-repo"}, "repository"),
        ({"branch": "a..b"}, "branch"),
        ({"colour": "red"}, "colour: unknown key"),
        ({"timeout": 0}, "timeout"),
        ({"path": "../up"}, "path"),
    ]
    for i, (opts, needle) in enumerate(cases):
        cap = _capsule(make_capsule, fake_github, root=tmp_path / f"c{i}", **opts)
        res = _run(qlcapsule_cli, "deliver", str(cap.root), "--target", "gh", "--artifact", art)
        assert res.exit_code == 2, res.output
        line = res.stderr.strip().splitlines()[-1]
        assert line.startswith("error: ") and "targets.gh.options" in line and needle in line, line
    assert fake_github.log == []


def test_credentials_missing_or_rejected(
    make_capsule: Any, fake_github: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitHub: no token is one line naming GITHUB_TOKEN and no request; a wrong token is rejected cleanly."""
    cap = _capsule(make_capsule, fake_github)
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "--target", "gh", "--dry-run", token=None)
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[-1] == (
        "error: missing credential: environment variable GITHUB_TOKEN is not set (GitHub token for the github target)"
    )
    assert fake_github.log == []
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "--target", "gh", "--dry-run", token="ghp_wrong_token_value")
    assert res.exit_code == 2 and "rejected (401" in res.stderr, res.output
    assert "ghp_wrong_token_value" not in res.output


def test_dry_run_writes_nothing(make_capsule: Any, fake_github: Any, qlcapsule_cli: Any, tmp_path: Path) -> None:
    """A FAKE GitHub: --dry-run checks access with GET requests only."""
    cap = _capsule(make_capsule, fake_github)
    res = _run(
        qlcapsule_cli, "deliver", str(cap.root), "--target", "gh", "--dry-run", "--artifact", str(_artifact(tmp_path))
    )
    assert res.exit_code == 0, res.output
    assert "would deliver" in res.stdout and "orders-1.0.0" in res.stdout
    assert fake_github.log and {m for m, _ in fake_github.log} == {"GET"}
    assert fake_github.repos["acme/capsules"].refs == {}


def test_conflicting_asset_and_overwrite(
    make_capsule: Any, fake_github: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitHub: an asset with other content is a conflict (exit 1) unless overwrite is set."""
    cap = _capsule(make_capsule, fake_github)
    assert _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gh", "-a", str(_artifact(tmp_path))).exit_code == 0
    changed = _artifact(tmp_path, b"other bytes")
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gh", "-a", str(changed))
    assert res.exit_code == 1 and "already has an asset orders-1.0.0.tar.gz" in res.stderr, res.output
    cap2 = _capsule(make_capsule, fake_github, root=tmp_path / "again", overwrite=True)
    # capsule.yaml changed (overwrite: true), so the commit is new: the tag moves and the asset is replaced
    res = _run(qlcapsule_cli, "deliver", str(cap2.root), "-t", "gh", "-a", str(changed), "--json")
    assert res.exit_code == 0, res.output
    repo = fake_github.repos["acme/capsules"]
    (release,) = repo.releases
    assert [a["data"] for a in release["assets"]] == [b"other bytes"]
    assert repo.refs["refs/tags/orders-1.0.0"] == repo.refs["refs/heads/capsules"]


def test_tag_of_other_content_is_a_conflict(
    make_capsule: Any, fake_github: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitHub: a changed capsule under an already released version does not move the tag."""
    cap = _capsule(make_capsule, fake_github)
    art = str(_artifact(tmp_path))
    assert _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gh", "-a", art).exit_code == 0
    (cap.root / "app.py").write_text("print('changed')\n")
    cap.seal()
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gh", "-a", art)
    assert res.exit_code == 1 and "tag orders-1.0.0 already points at" in res.stderr, res.output


def test_transient_errors_are_retried_exactly_once(
    make_capsule: Any, fake_github: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitHub answering 502 once on the ref update and once on the asset upload: one commit, one asset."""
    cap = _capsule(make_capsule, fake_github)
    fake_github.fail_next += [("POST", r"/git/refs$", 502), ("POST", r"/releases/\d+/assets$", 502)]
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gh", "-a", str(_artifact(tmp_path)), "--json")
    assert res.exit_code == 0, res.output
    assert fake_github.fail_next == []
    assert "event=retry" in res.stderr
    repo = fake_github.repos["acme/capsules"]
    head = repo.refs["refs/heads/capsules"]
    assert repo.store.objects[head][1]["parents"] == []
    assert len(repo.releases) == 1 and len(repo.releases[0]["assets"]) == 1


def test_server_down_is_a_remote_error(make_capsule: Any, fake_github: Any, qlcapsule_cli: Any, tmp_path: Path) -> None:
    """A FAKE GitHub that keeps failing: exit 3 after bounded retries, one line, nothing published."""
    cap = _capsule(make_capsule, fake_github)
    fake_github.fail_next += [("POST", r"/git/trees$", 503)] * 2
    res = _run(qlcapsule_cli, "deliver", str(cap.root), "-t", "gh", "-a", str(_artifact(tmp_path)))
    assert res.exit_code == 3, res.output
    assert res.stderr.strip().splitlines()[-1].startswith("error: github: capsule tree: 503")
    assert fake_github.repos["acme/capsules"].refs == {}


# -- credentials and redirects (issue 16) ------------------------------------------------


def _rd_deliver(make_capsule: Any, qlcapsule_cli: Any, tmp_path: Path, fake: Any) -> Any:
    """Deliver through an operator targets file (the target is the operator's, not the capsule's)."""
    opts = {"repository": "acme/capsules", "base_url": fake.base_url, "retries": 2, "request_interval": 0}
    opts["write_interval"] = 0
    targets = tmp_path / "operator-targets.yaml"
    targets.write_text(f"targets:\n  gh:\n    provider: github\n    options: {json.dumps(opts)}\n")
    cap = make_capsule({"app.py": "print('hi')\n"}, definition="name: orders\nversion: 1.0.0\n")
    env = {"GITHUB_TOKEN": CANARY_GITHUB_TOKEN, "QLCAPSULE_TARGETS_FILE": str(targets)}
    res = qlcapsule_cli("-vv", "deliver", str(cap.root), "-t", "gh", "-a", str(_artifact(tmp_path)), env=env)
    assert CANARY_GITHUB_TOKEN not in res.output, "the token leaked into the output"
    assert "Traceback" not in res.output and "internal error" not in res.output
    return res


def _errors(res: Any) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("status", [301, 302, 307])
def test_token_never_follows_a_redirect_to_another_port(
    status: int, make_capsule: Any, fake_github: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitHub redirecting a GET to another port of the same host name: followed without the token."""
    from faultproxy import Recorder

    far = Recorder(404)
    try:
        fake_github.redirect_next.append(("GET", r"^/api/v3/repos/acme/capsules$", status, far.url + "/r"))
        res = _rd_deliver(make_capsule, qlcapsule_cli, tmp_path, fake_github)
    finally:
        far.stop()
    assert [h.path for h in far.heard] == ["/r"], res.output
    assert far.carried(CANARY_GITHUB_TOKEN) == []
    assert not any(k.lower() in ("authorization", "cookie") for k in far.heard[0].headers)
    assert res.exit_code == 2 and len(_errors(res)) == 1 and "not found (404)" in _errors(res)[0]


@pytest.mark.parametrize(("status", "where"), [(302, "far"), (307, "far"), (302, "same"), (302, None)])
def test_a_redirect_the_deliverer_cannot_follow_is_one_line_exit_3(
    status: int, where: str | None, make_capsule: Any, fake_github: Any, qlcapsule_cli: Any, tmp_path: Path
) -> None:
    """A FAKE GitHub answering a write with a 3xx (to another port, to itself, without Location): exit 3, never 70."""
    from faultproxy import Recorder

    far = Recorder(201, b"{}")
    location = {"far": far.url + "/trees", "same": fake_github.base_url + "/elsewhere", None: None}[where]
    try:
        fake_github.redirect_next.append(("POST", r"/git/trees$", status, location))
        res = _rd_deliver(make_capsule, qlcapsule_cli, tmp_path, fake_github)
    finally:
        far.stop()
    assert far.heard == []
    assert res.exit_code == 3, res.output
    (line,) = _errors(res)
    expected = {
        "far": f"redirected a POST to another host (http://127.0.0.1:{far.port})",
        "same": "which would re-send it as a GET",
        None: "without a Location",
    }[where]
    assert line.startswith("error: github: ") and expected in line
    assert "refs/heads/capsules" not in fake_github.repos["acme/capsules"].refs


def test_a_capsule_defined_github_target_is_refused(make_capsule: Any, qlcapsule_cli: Any, monkeypatch: Any) -> None:
    """A pull request's capsule.yaml points a github target at its own server with another secret: refused."""
    from faultproxy import Recorder

    monkeypatch.setenv("GITHUB_TOKEN", CANARY_GITHUB_TOKEN)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY_GITHUB_TOKEN + "-aws")
    far = Recorder(404)
    try:
        for token_env in ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY"):
            opts = {"repository": "acme/capsules", "base_url": far.url, "token_env": token_env}
            cap = make_capsule(
                {"app.py": "print('hi')\n"},
                definition=f"name: orders\nversion: 1.0.0\ntargets:\n  gh:\n    provider: github\n    options: {json.dumps(opts)}\n",
            )
            assert_capsule_target_refused(qlcapsule_cli, cap.root, "gh", far, (CANARY_GITHUB_TOKEN,))
    finally:
        far.stop()
