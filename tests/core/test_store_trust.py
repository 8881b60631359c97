"""What the store trusts: a fetched ref is data, not authority.

An attacker who gets a branch fetched into the store (``refs/capsules/<name>/heads/evil``
written by a second repository and ``git fetch``) must not decide which commit a version
names, what ``tag`` pins, what the rollback check compares with, what a terminal shows,
or what ``checkout`` writes; a ``.qlcapsule/merge.json`` planted in a capsule directory
must not choose a merge commit's parents.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pygit2
import pytest

from qlcapsule import Capsule
from qlcapsule.signing.signatures import keygen, sign_capsule
from qlcapsule.store.versions import commit_capsule, open_store
from qlcapsule.testing import write_capsule

GENUINE = {"app.txt": "genuine\n"}
EVIL = {"app.txt": "evil\n"}


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def _fetch_evil(store: Path, evil_store: Path, name: str = "demo", branch: str = "evil") -> None:
    """What `git fetch` of an attacker's repository does: a ref under the capsule's namespace in our store."""
    ref = f"refs/capsules/{name}/heads/{branch}"
    _git(store, "fetch", "--no-tags", str(evil_store), f"+{ref}:{ref}")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store.git"


@pytest.fixture
def genuine(tmp_path: Path, store: Path) -> str:
    """demo 1.0.0 committed on main; returns its commit id."""
    cap = write_capsule(tmp_path / "genuine", GENUINE, name="demo", version="1.0.0")
    return commit_capsule(cap.root, store=store).commit


def _evil_branch(tmp_path: Path, store: Path, version: str, files: dict[str, str] | None = None, **ident: str) -> str:
    """An attacker's demo@``version`` on branch ``evil`` in a second repository, fetched into ``store``."""
    evil_store = tmp_path / "evil.git"
    cap = write_capsule(tmp_path / f"evil-{version}", files or EVIL, name="demo", version=version)
    old = {k: os.environ.get(k) for k in ident}
    os.environ.update(ident)
    try:
        done = commit_capsule(cap.root, store=evil_store, branch="evil", message=ident.get("MESSAGE"))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    # an attacker dates the commit as they like: an hour ahead makes it the newest on every walk
    repo = pygit2.Repository(str(evil_store))
    c = repo[done.commit]
    later = [pygit2.Signature(s.name, s.email, s.time + 3600, s.offset) for s in (c.author, c.committer)]
    new = repo.create_commit(None, *later, c.message, c.tree_id, c.parent_ids)
    repo.references["refs/capsules/demo/heads/evil"].set_target(new)
    _fetch_evil(store, evil_store)
    return str(new)


# -- finding 9: versions resolve through the capsule's own namespace -------------------


def test_checkout_of_a_version_ignores_a_fetched_side_branch(
    tmp_path: Path, store: Path, genuine: str, qlcapsule_cli: Any
) -> None:
    evil = _evil_branch(tmp_path, store, "1.0.0")
    assert open_store(store=store).head("demo", "evil") is not None and evil != genuine
    out = tmp_path / "out"
    res = qlcapsule_cli("checkout", "demo", "1.0.0", str(out), "--store", str(store), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["result"]["commit"] == genuine
    assert (out / "app.txt").read_text() == "genuine\n"
    # the branch named explicitly is the user's choice
    out2 = tmp_path / "out2"
    res = qlcapsule_cli("checkout", "demo", "1.0.0", str(out2), "--branch", "evil", "--store", str(store), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["result"]["commit"] == evil


def test_a_branch_named_like_a_version_does_not_shadow_it(
    tmp_path: Path, store: Path, genuine: str, qlcapsule_cli: Any
) -> None:
    evil_store = tmp_path / "evil.git"
    cap = write_capsule(tmp_path / "evil", EVIL, name="demo", version="1.0.0")
    commit_capsule(cap.root, store=evil_store, branch="1.0.0")
    _fetch_evil(store, evil_store, branch="1.0.0")
    res = qlcapsule_cli("checkout", "demo", "1.0.0", str(tmp_path / "out"), "--store", str(store), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["result"]["commit"] == genuine


def test_tag_pins_the_genuine_version(tmp_path: Path, store: Path, genuine: str, qlcapsule_cli: Any) -> None:
    _evil_branch(tmp_path, store, "1.0.0")
    res = qlcapsule_cli("tag", "demo", "1.0.0", "--store", str(store), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["result"]["commit"] == genuine
    repo = pygit2.Repository(str(store))
    assert str(repo.references["refs/capsules/demo/tags/1.0.0"].peel(pygit2.Commit).id) == genuine


def test_a_version_only_on_a_side_branch_is_not_found_without_naming_it(
    tmp_path: Path, store: Path, genuine: str, qlcapsule_cli: Any
) -> None:
    _evil_branch(tmp_path, store, "2.0.0")
    res = qlcapsule_cli("checkout", "demo", "2.0.0", str(tmp_path / "out"), "--store", str(store))
    assert res.exit_code == 2 and "2.0.0" in res.stderr and "main" in res.stderr, res.output
    assert not (tmp_path / "out").exists()
    res = qlcapsule_cli("tag", "demo", "2.0.0", "--store", str(store))
    assert res.exit_code == 2, res.output
    assert "refs/capsules/demo/tags/2.0.0" not in pygit2.Repository(str(store)).listall_references()


def test_rollback_compares_only_with_main_and_tags(
    tmp_path: Path, store: Path, genuine: str, monkeypatch: pytest.MonkeyPatch, qlcapsule_cli: Any
) -> None:
    key = keygen("ed25519", tmp_path / "k.key")
    monkeypatch.setenv("QLCAPSULE_STORE", str(store))
    signed = write_capsule(tmp_path / "signed", GENUINE, name="demo", version="1.0.0")
    sign_capsule(signed.root, key["private"])
    _evil_branch(tmp_path, store, "999.0.0")
    res = qlcapsule_cli("verify", str(signed.root), "--key", key["public"])
    assert res.exit_code == 0, res.output
    # a newer version on main counts only when its own signature verifies against the same keys:
    # unsigned, or signed by another key, it is no reason to call 1.0.0 a rollback
    other = keygen("ed25519", tmp_path / "other.key")
    newer = write_capsule(tmp_path / "newer", GENUINE, name="demo", version="2.0.0")
    commit_capsule(newer.root)
    assert qlcapsule_cli("verify", str(signed.root), "--key", key["public"]).exit_code == 0
    sign_capsule(newer.root, other["private"])
    commit_capsule(newer.root)
    assert qlcapsule_cli("verify", str(signed.root), "--key", key["public"]).exit_code == 0
    sign_capsule(newer.root, key["private"])
    commit_capsule(newer.root)
    res = qlcapsule_cli("verify", str(signed.root), "--key", key["public"])
    assert res.exit_code == 1 and "rollback" in res.stderr and "2.0.0" in res.stderr, res.output


# -- log escapes what the repository says ------------------------------------------------


@pytest.mark.parametrize("field", ["GIT_AUTHOR_NAME", "MESSAGE"])
def test_log_escapes_control_characters_from_the_repository(
    tmp_path: Path, store: Path, genuine: str, field: str, qlcapsule_cli: Any
) -> None:
    hostile = "x\x1b]0;pwned\x07\x1b[2J\rfake\x9b31m\x7f"
    _evil_branch(tmp_path, store, "1.0.1", **{field: hostile})
    for args in (["--all"], ["--branch", "evil"]):
        res = qlcapsule_cli("log", "demo", *args, "--store", str(store))
        assert res.exit_code == 0, res.output
        for raw in ("\x1b", "\r", "\x07", "\x9b", "\x7f"):
            assert raw not in res.stdout
        assert "\\x1b]0;pwned\\x07" in res.stdout


# -- finding 4: checkout writes exactly what the lock vouches for -------------------------


def _raw_tree(repo: Any, files: dict[str, bytes]) -> Any:
    """Trees written byte by byte (libgit2's TreeBuilder refuses a ``.git`` entry; an attacker's git need not)."""
    direct = {p: d for p, d in files.items() if "/" not in p}
    nested: dict[str, dict[str, bytes]] = {}
    for p, d in files.items():
        if "/" in p:
            head, _, rest = p.partition("/")
            nested.setdefault(head, {})[rest] = d
    entries = [("100644", n, repo.create_blob(d)) for n, d in direct.items()]
    entries += [("40000", n, _raw_tree(repo, sub)) for n, sub in nested.items()]
    data = b"".join(
        f"{mode} {name}".encode() + b"\0" + bytes.fromhex(str(oid))
        for mode, name, oid in sorted(entries, key=lambda e: e[1] + ("/" if e[0] == "40000" else ""))
    )
    return repo.odb.write(pygit2.enums.ObjectType.TREE, data)


def _crafted_branch(store: Path, extra: dict[str, bytes], *, locked: bool, version: str = "1.0.1") -> str:
    """A commit on refs/capsules/demo/heads/evil (as a fetch would write it) whose tree holds ``extra``
    besides a valid capsule; with ``locked`` its capsule.lock lists them too (digest and trailers consistent)."""
    import hashlib

    from qlcapsule.format.lock import build_lock, render_lock
    from qlcapsule.format.tree import FileEntry
    from qlcapsule.store.versions import version_message

    repo = pygit2.Repository(str(store))
    files = {"capsule.yaml": f"name: demo\nversion: {version}\n".encode(), "app.txt": b"crafted\n", **extra}
    listed = files if locked else {p: d for p, d in files.items() if p not in extra}
    lock = build_lock(
        "demo", version, [FileEntry(p, hashlib.sha256(d).hexdigest(), len(d), "644") for p, d in listed.items()]
    )
    tree = _raw_tree(repo, {**files, "capsule.lock": render_lock(lock)})
    sig = pygit2.Signature("mallory", "m@x")
    main = repo.references["refs/capsules/demo/heads/main"].target
    commit = repo.create_commit(None, sig, sig, version_message("demo", version, lock.digest, None), tree, [main])
    repo.references.create("refs/capsules/demo/heads/evil", commit, force=True)
    return str(commit)


HOSTILE = {".git/config": b"[core]\n\tfsmonitor = touch /tmp/pwned\n", "__pycache__/app.cpython-311.pyc": b"\x00evil"}


@pytest.mark.parametrize("locked", [False, True], ids=["not-in-lock", "in-a-crafted-lock"])
@pytest.mark.parametrize("rev", [["evil"], ["1.0.1", "--branch", "evil"]], ids=["branch", "version-on-branch"])
def test_checkout_never_writes_git_config_or_pyc(
    tmp_path: Path, store: Path, genuine: str, locked: bool, rev: list[str], qlcapsule_cli: Any
) -> None:
    _crafted_branch(store, HOSTILE, locked=locked)
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    res = qlcapsule_cli("checkout", "demo", *rev, str(out), "--store", str(store))
    assert res.exit_code == 1, res.output
    assert "verified" not in res.stdout and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert ".git" in res.stderr or "__pycache__" in res.stderr, res.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written
    written = [p for p in tmp_path.rglob("*") if store not in p.parents]
    assert not [p for p in written if p.name == "config" or p.suffix == ".pyc"]


@pytest.mark.parametrize("path", ["extra.txt", ".qlcapsule/merge.json"])
def test_checkout_refuses_any_unlocked_tree_entry(
    tmp_path: Path, store: Path, genuine: str, path: str, qlcapsule_cli: Any
) -> None:
    _crafted_branch(store, {path: b"x\n"}, locked=False)
    res = qlcapsule_cli("checkout", "demo", "evil", str(tmp_path / "out"), "--store", str(store))
    assert res.exit_code == 1 and path in res.stderr and "verified" not in res.stdout, res.output
    assert not (tmp_path / "out").exists()


def test_checkout_says_what_it_verified(tmp_path: Path, store: Path, genuine: str, qlcapsule_cli: Any) -> None:
    res = qlcapsule_cli("checkout", "demo", "1.0.0", str(tmp_path / "out"), "--store", str(store))
    assert res.exit_code == 0, res.output
    assert "verified against capsule.lock; unsigned" in res.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["app.txt", "capsule.lock", "capsule.yaml"]


# -- signatures: with the operator's keys, a version must verify ---------------------------


@pytest.fixture
def keypair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("keys")
    return {n: keygen("ed25519", d / f"{n}.key") for n in ("good", "evil")}


def _signed_version(
    root: Path, store: Path, version: str, key: str, files: dict[str, str], branch: str = "main"
) -> str:
    cap = write_capsule(root, files, name="demo", version=version)
    sign_capsule(cap.root, key)
    return commit_capsule(cap.root, store=store, branch=branch).commit


def test_with_keys_a_version_that_does_not_verify_is_skipped(
    tmp_path: Path, store: Path, keypair: dict[str, Any], qlcapsule_cli: Any
) -> None:
    """Someone with push access to main commits an unsigned-by-us 1.0.0 on top: --key skips it, loudly."""
    good = _signed_version(tmp_path / "g", store, "1.0.0", keypair["good"]["private"], GENUINE)
    bad = _signed_version(tmp_path / "b", store, "1.0.0", keypair["evil"]["private"], EVIL)
    assert bad != good
    out = tmp_path / "out"
    res = qlcapsule_cli(
        "checkout", "demo", "1.0.0", str(out), "--key", keypair["good"]["public"], "--store", str(store), "--json"
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)["result"]
    assert data["commit"] == good and data["signature"]["status"] == "verified"
    assert f"skipping commit {bad[:12]}" in res.stderr, res.stderr
    assert (out / "app.txt").read_text() == "genuine\n"
    # without keys: the newest on main, and the output says the signature was not checked
    res = qlcapsule_cli("checkout", "demo", "1.0.0", str(tmp_path / "o2"), "--store", str(store))
    assert res.exit_code == 0 and bad[:12] in res.stdout and "NOT checked" in res.stdout, res.output
    # tag with the key pins the verified one
    res = qlcapsule_cli("tag", "demo", "1.0.0", "--key", keypair["good"]["public"], "--store", str(store), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["result"]["commit"] == good, res.output


def test_with_keys_nothing_verifying_is_refused(
    tmp_path: Path, store: Path, keypair: dict[str, Any], qlcapsule_cli: Any
) -> None:
    _signed_version(tmp_path / "b", store, "1.0.0", keypair["evil"]["private"], EVIL)
    out = tmp_path / "out"
    for cmd in (
        ["checkout", "demo", "1.0.0", str(out)],
        ["checkout", "demo", "main", str(out)],
        ["tag", "demo", "1.0.0"],
    ):
        res = qlcapsule_cli(*cmd, "--key", keypair["good"]["public"], "--store", str(store))
        assert res.exit_code == 1, res.output
        assert res.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in res.stderr
        assert not out.exists()
    assert "refs/capsules/demo/tags/1.0.0" not in pygit2.Repository(str(store)).listall_references()
    res = qlcapsule_cli(
        "checkout", "demo", "main", str(out), "--key", str(tmp_path / "missing.pub"), "--store", str(store)
    )
    assert res.exit_code == 2 and "missing.pub" in res.stderr, res.output


def test_latest_version_with_keys_counts_only_verified_versions(
    tmp_path: Path, store: Path, keypair: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from qlcapsule.store.merge import trusted_versions
    from qlcapsule.store.versions import latest_version

    _signed_version(tmp_path / "g", store, "1.0.0", keypair["good"]["private"], GENUINE)
    _signed_version(tmp_path / "b", store, "5.0.0", keypair["evil"]["private"], EVIL)
    monkeypatch.setenv("QLCAPSULE_STORE", str(store))
    assert latest_version(tmp_path, "demo") == "5.0.0"
    accept = trusted_versions(open_store(store=store), "demo", keys=[keypair["good"]["public"]])
    assert latest_version(tmp_path, "demo", accept=accept) == "1.0.0"


# -- finding 12: merge.json in a capsule directory does not choose parents ------------------


def test_a_planted_merge_json_does_not_make_a_merge_commit(
    tmp_path: Path, store: Path, genuine: str, qlcapsule_cli: Any
) -> None:
    evil = _evil_branch(tmp_path, store, "1.0.1")
    cap = write_capsule(tmp_path / "pr", {"app.txt": "next\n"}, name="demo", version="1.1.0")
    (cap.root / ".qlcapsule").mkdir()
    state = {"capsule": "demo", "branch": "main", "ours": genuine, "theirs": evil, "from": "evil", "conflicts": []}
    (cap.root / ".qlcapsule/merge.json").write_text(json.dumps(state))
    Capsule.load(cap.root).verify_integrity()  # merge.json is outside the lock: the capsule is "clean"
    res = qlcapsule_cli("commit", str(cap.root), "--store", str(store))
    assert res.exit_code == 2, res.output
    assert "merge.json" in res.stderr and "not written by 'qlcapsule merge'" in res.stderr
    repo = pygit2.Repository(str(store))
    assert str(repo.references["refs/capsules/demo/heads/main"].target) == genuine  # nothing committed
    (cap.root / ".qlcapsule/merge.json").unlink()
    res = qlcapsule_cli("commit", str(cap.root), "--store", str(store), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["result"]["parents"] == [genuine], res.output


def test_a_merge_json_copied_from_a_real_merge_elsewhere_is_not_believed(
    tmp_path: Path, store: Path, genuine: str, qlcapsule_cli: Any
) -> None:
    """A real merge's merge.json (another store) shipped in an archive: this store never recorded it."""
    from qlcapsule.store.versions import merge_record_path

    evil = _evil_branch(tmp_path, store, "1.0.1")
    cap = write_capsule(tmp_path / "pr", {"app.txt": "next\n"}, name="demo", version="1.1.0")
    state = {"capsule": "demo", "branch": "main", "ours": genuine, "theirs": evil, "from": "evil", "conflicts": []}
    (cap.root / ".qlcapsule").mkdir()
    (cap.root / ".qlcapsule/merge.json").write_text(json.dumps(state))
    # the record names only this exact merge: one for another capsule/branch/head does not vouch for it
    other = merge_record_path(open_store(store=store), {**state, "branch": "evil"})
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps({**state, "branch": "evil"}))
    res = qlcapsule_cli("commit", str(cap.root), "--store", str(store))
    assert res.exit_code == 2 and "not written by 'qlcapsule merge'" in res.stderr, res.output
    assert str(pygit2.Repository(str(store)).references["refs/capsules/demo/heads/main"].target) == genuine


def test_a_branch_named_like_a_commit_prefix_is_ambiguous(
    tmp_path: Path, store: Path, genuine: str, qlcapsule_cli: Any
) -> None:
    evil_store = tmp_path / "evil.git"
    cap = write_capsule(tmp_path / "evil", EVIL, name="demo", version="1.0.1")
    commit_capsule(cap.root, store=evil_store, branch=genuine[:8])
    _fetch_evil(store, evil_store, branch=genuine[:8])
    res = qlcapsule_cli("checkout", "demo", genuine[:8], str(tmp_path / "out"), "--store", str(store))
    assert res.exit_code == 2 and "both a branch and a commit id" in res.stderr, res.output
    res = qlcapsule_cli("checkout", "demo", genuine, str(tmp_path / "out"), "--store", str(store), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["result"]["commit"] == genuine, res.output
