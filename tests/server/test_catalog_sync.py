"""``catalog sync``: a version store indexed through the publish API, incrementally and safely from several
runs at once, by path and by git URL (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from catalog_fixtures import Key, Serve, Ship
from click.testing import CliRunner

from qlcapsule.cli import main
from qlcapsule_server.sync import sync


def test_sync_indexes_new_versions_only(serve: Serve, ship: Ship, release_key: Key, tmp_path: Path) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    store = str(tmp_path / "store.git")
    for version in ("1.0.0", "1.1.0"):
        ship("orders", version, key=release_key)
    ship("billing", key=release_key)

    first = sync(server.url, token, store)
    assert (first.refs, first.published, first.unchanged, first.refused) == (2, 3, 0, [])
    again = sync(server.url, token, store)
    assert (again.published, again.unchanged) == (0, 0)  # nothing walked: every head is where it was

    ship("orders", "1.2.0", key=release_key)
    third = sync(server.url, token, store)
    assert (third.published, third.unchanged) == (1, 0)

    status, versions = server.call("/api/v1/capsules/orders/versions", token)
    assert status == 200 and [v["version"] for v in versions["items"]][0] == "1.2.0"
    newest, older = versions["items"][0], versions["items"][1]
    assert newest["branches"] == ["main"] and newest["parents"] == [older["commit"]]
    assert newest["signature"]["status"] == "verified"
    _, capsules = server.call("/api/v1/capsules", token)
    assert {c["name"]: c["repositories"] for c in capsules["items"]} == {
        "billing": [str(Path(store).resolve())],
        "orders": [str(Path(store).resolve())],
    }


def test_concurrent_syncs_index_each_version_once(serve: Serve, ship: Ship, release_key: Key, tmp_path: Path) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        ship("orders", version, key=release_key)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: sync(server.url, token, str(tmp_path / "store.git")), range(4)))
    assert sum(r.published for r in results) == 3
    assert all(r.refused == [] for r in results)
    _, versions = server.call("/api/v1/capsules/orders/versions", token)
    assert versions["total"] == 3


def test_sync_from_a_git_url_and_refused_versions(
    serve: Serve, ship: Ship, release_key: Key, other_key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    server = serve(trust_file=str(release_key.trust))
    monkeypatch.setenv("CATALOG_TOKEN", server.token("publish"))
    ship("orders", key=release_key)
    ship("billing", key=other_key)  # the server does not trust this key
    url = (tmp_path / "store.git").as_uri()
    result = CliRunner().invoke(
        main, ["catalog", "sync", "--url", server.url, "--token-env", "CATALOG_TOKEN", url, "--json"]
    )
    assert result.exit_code == 1, result.output
    answer = json.loads(result.stdout)
    assert answer["command"] == "catalog sync" and answer["exit_code"] == 1
    report = answer["result"]
    assert report["repository"] == url and report["published"] == 1
    (refused,) = report["refused"]
    assert refused.startswith("billing@1.0.0 (") and "untrusted" in refused
    assert list((tmp_path / "cache" / "qlcapsule" / "sync").glob("*.git"))  # the mirror of the URL


def test_sync_of_something_that_is_not_a_store(serve: Serve, tmp_path: Path) -> None:
    server = serve()
    from qlcapsule import StoreError

    with pytest.raises(StoreError, match=r"not a git repository \(a version store: a bare repository or a work tree\)"):
        sync(server.url, server.token("publish"), str(tmp_path))


def test_a_run_publishes_at_most_max_commits_and_the_next_goes_on(
    serve: Serve, ship: Ship, release_key: Key, tmp_path: Path
) -> None:
    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    store = str(tmp_path / "store.git")
    ship("billing", key=release_key)
    orders = [ship("orders", v, key=release_key)["capsules"][0]["commit"] for v in ("1.0.0", "1.1.0", "1.2.0")]

    first = sync(server.url, token, store, max_commits=2)  # billing's one commit, then orders' oldest
    assert (first.published, first.refused) == (2, [])
    left = "the rest is left for the next run (at most 2 commits per run)"
    assert first.skipped == [f"refs/capsules/orders/heads/main: indexed up to {orders[0][:12]}; {left}"]
    _, state = server.call(f"/api/v1/sync?repository={Path(store).resolve()}", token)
    assert state["refs"]["refs/capsules/orders/heads/main"] == orders[0]
    second = sync(server.url, token, store, max_commits=1)
    assert (second.published, second.skipped) == (1, [second.skipped[0]])
    assert second.skipped[0].startswith(f"refs/capsules/orders/heads/main: indexed up to {orders[1][:12]}")
    third = sync(server.url, token, store, max_commits=1)
    assert (third.published, third.skipped) == (1, [])
    assert sync(server.url, token, store, max_commits=0).published == 0  # every head is where it was
    _, versions = server.call("/api/v1/capsules/orders/versions", token)
    assert [v["version"] for v in versions["items"]] == ["1.2.0", "1.1.0", "1.0.0"]


def test_a_hostile_commit_or_ref_is_skipped_and_the_rest_indexed(
    serve: Serve, ship: Ship, release_key: Key, tmp_path: Path
) -> None:
    import pygit2

    server = serve(trust_file=str(release_key.trust))
    token = server.token("publish", "read")
    store = tmp_path / "store.git"
    ship("orders", key=release_key)
    repo = pygit2.Repository(str(store))
    head = repo.references["refs/capsules/orders/heads/main"]
    old = repo[head.target]
    builder = repo.TreeBuilder(old.tree)  # capsule.lock as a symlink to a file outside the repository
    builder.insert("capsule.lock", repo.create_blob(b"/etc/passwd"), pygit2.GIT_FILEMODE_LINK)
    crafted = repo.create_commit(None, old.author, old.committer, old.message, builder.write(), [old.id])
    head.set_target(crafted)
    repo.references.create("refs/heads/private", crafted)
    repo.references.create("refs/capsules/orders/heads/alias", "refs/heads/private")

    result = sync(server.url, token, str(store))
    assert (result.refs, result.published, result.refused) == (1, 1, [])
    assert result.skipped == [
        "refs/capsules/orders/heads/alias: a symbolic ref (it names another ref, which is not followed)",
        f"{str(crafted)[:12]}: capsule.lock is not a regular file",
    ]
