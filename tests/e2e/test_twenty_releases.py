"""Twenty releases in a row with the real CLI (issue 17): ``ship`` as the loop a user runs.

A generated ``fastapi-service`` capsule is shipped again and again through the
``qlcapsule`` console script in subprocesses, to ./dist and to S3 (moto on 127.0.0.1,
behind a fault proxy that fails or hangs uploads on demand): edit and bump, edit
without a bump (refused, nothing written), unchanged re-ships (no-ops), a delivery
that fails and one killed mid-upload (both finished by the next run), ship from inside
the capsule with a key file there, ship after the pre-commit seal hook, a dry run
then the run it predicts, and ``--force``. No manual step: after every run the lock
holds no output or key file, the store's history is the versions shipped, and
``qlcapsule verify`` passes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pygit2
from fixtures_cloud import S3Bucket
from operator_targets import add_operator_target

EXE = shutil.which("qlcapsule", path=str(Path(sys.executable).parent)) or "qlcapsule"


def _tree(*dirs: Path) -> dict[str, str]:
    """Every file under ``dirs`` with the SHA-256 of its bytes (directories by name)."""
    out: dict[str, str] = {}
    for top in dirs:
        for p in sorted(top.rglob("*")) if top.exists() else ():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


class Loop:
    """The capsule being released, the places ship writes to, and checks after every run."""

    def __init__(self, work: Path, bucket: S3Bucket) -> None:
        self.work = work
        self.root = work / "orders"
        self.bucket = bucket
        self.ships = 0
        self.shipped: list[str] = []  # versions committed, newest first

    def qlcapsule(self, *args: str, cwd: Path | None = None, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [EXE, *args],
            cwd=cwd or self.work,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "CI": "1"},
        )
        assert proc.returncode == code, (
            f"qlcapsule {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
        )
        assert "Traceback" not in proc.stderr
        return proc

    def ship(self, *args: str, cwd: Path | None = None, code: int = 0) -> dict[str, Any]:
        """One release attempt; the capsule's result from --json (empty when refused before any step)."""
        self.ships += 1
        where = [] if cwd == self.root else ["orders"]
        proc = self.qlcapsule("ship", *where, "-t", "releases", "-t", "local", "--json", *args, cwd=cwd, code=code)
        data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
        capsules = (data.get("result") or {}).get("capsules") or [{}]
        result: dict[str, Any] = capsules[0]
        result["stderr"] = proc.stderr
        self.check()
        return result

    def edit(self, text: str, bump: str | None = None) -> None:
        with (self.root / "main.py").open("a") as f:
            f.write(f"# {text}\n")
        if bump:
            y = self.root / "capsule.yaml"
            y.write_text(re.sub(r"(?m)^version: .*$", f"version: {bump}", y.read_text()))

    def history(self) -> list[str]:
        repo = pygit2.Repository(str(self.work / ".qlcapsule" / "store.git"))
        head = repo.references["refs/capsules/orders/heads/main"].target
        return [c.message.split("\n", 1)[0].removeprefix("orders ") for c in repo.walk(head)]

    def s3_keys(self) -> list[str]:
        listed = self.bucket.client.list_objects_v2(Bucket=self.bucket.name)  # type: ignore[attr-defined]
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def written(self) -> dict[str, Any]:
        """Everything ship may write: the capsule (lock, signature), the store, both dist folders, S3."""
        return {"files": _tree(self.work), "s3": self.s3_keys()}

    def check(self) -> None:
        locked = [f["path"] for f in json.loads((self.root / "capsule.lock").read_text())["files"]]
        outputs = [p for p in locked if p.startswith("dist/") or p.endswith((".key", ".key.pub", ".tar.gz"))]
        assert outputs == [], f"outputs sealed into the capsule: {outputs}"
        assert self.history() == self.shipped


def test_twenty_releases_in_a_row(tmp_path: Path, monkeypatch, s3_bucket: S3Bucket, fault_proxy) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # the default store: .qlcapsule/ beside orders
    monkeypatch.delenv("QLCAPSULE_STORE", raising=False)
    monkeypatch.delenv("QLCAPSULE_SIGNING_KEY", raising=False)
    proxy = fault_proxy(s3_bucket.endpoint)
    add_operator_target(
        "releases", {"provider": "s3", "options": {"bucket": s3_bucket.name, "endpoint_url": proxy.url, "attempts": 2}}
    )
    loop = Loop(work, s3_bucket)
    loop.qlcapsule("new", "fastapi-service", "orders", "--no-input")
    s3_key = "orders/{v}/orders-{v}.tar.gz"

    # 1. the first release
    first = loop_ship(loop, "0.1.0")
    assert first["ok"] and not first["unchanged"]
    assert loop.s3_keys() == [s3_key.format(v="0.1.0")] and (work / "dist" / "orders-0.1.0.tar.gz").is_file()

    # 2. unchanged: a no-op that says so, not a byte written anywhere, nothing uploaded
    before, puts = loop.written(), len(proxy.seen("PUT"))
    again = loop.ship()
    assert again["ok"] and again["unchanged"] and loop.written() == before and len(proxy.seen("PUT")) == puts

    # 3. edit and bump
    loop.edit("one", bump="0.2.0")
    assert loop_ship(loop, "0.2.0")["ok"]

    # 4. edit without a bump: refused before anything is written, the fix named
    loop.edit("two")
    before, puts = loop.written(), len(proxy.seen("PUT"))
    refused = loop.ship(code=1)
    assert "orders@0.2.0 is already in the store" in refused["stderr"] and "bump 'version:'" in refused["stderr"]
    assert loop.written() == before and len(proxy.seen("PUT")) == puts

    # 5. the same edit, bumped
    loop.edit("two, bumped", bump="0.3.0")
    assert loop_ship(loop, "0.3.0")["ok"]

    # 6. + 7. the upload fails (after the commit); the next run finishes it
    loop.edit("three", bump="0.4.0")
    proxy.fail(500, method="PUT", times=-1)
    failed = loop_ship(loop, "0.4.0", code=3)
    assert not failed["ok"] and [s["status"] for s in failed["steps"]][-1] == "failed"
    assert s3_key.format(v="0.4.0") not in loop.s3_keys()
    proxy.clear()
    resumed = loop.ship()
    assert resumed["ok"] and resumed["steps"][3]["detail"].endswith("(unchanged)")
    assert s3_key.format(v="0.4.0") in loop.s3_keys()

    # 8. + 9. killed mid-upload (SIGKILL while the server holds the PUT); the next run finishes it
    loop.edit("four", bump="0.5.0")
    proxy.hang(method="PUT")
    proxy.on_hang.clear()
    loop.ships += 1
    proc = subprocess.Popen(
        [EXE, "ship", "orders", "-t", "releases", "-t", "local"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CI": "1"},
    )
    try:
        assert proxy.on_hang.wait(120), "the upload never started"
    finally:
        proc.kill()
        proc.wait(30)
    loop.shipped.insert(0, "0.5.0")  # committed before the delivery began
    loop.check()
    proxy.clear()
    assert not (work / "dist" / "orders-0.5.0.tar.gz").exists()
    resumed = loop.ship()
    assert resumed["ok"] and s3_key.format(v="0.5.0") in loop.s3_keys()
    assert (work / "dist" / "orders-0.5.0.tar.gz").is_file()

    # 10. + 11. after the pre-commit seal hook: the stale development signature is replaced, with a warning
    loop.edit("five", bump="0.6.0")
    loop.qlcapsule("hook", "seal", "--", "orders/main.py", code=1)
    hooked = loop_ship(loop, "0.6.0")
    assert hooked["steps"][0]["detail"].startswith("unchanged")
    assert "re-signing with the DEVELOPMENT key, which signed the last seal" in hooked["stderr"]
    assert loop.ship()["unchanged"]

    # 12. - 14. from inside the capsule, with the release key kept there: dist/ and the key stay out
    loop.qlcapsule("keygen", "--type", "ed25519", "-o", "release.key", cwd=loop.root)
    loop.edit("six", bump="0.7.0")
    inside = loop_ship(loop, "0.7.0", "--key", "release.key", cwd=loop.root)
    assert inside["ok"] and (loop.root / "dist" / "orders-0.7.0.tar.gz").is_file()
    assert loop.ship("--key", "release.key", cwd=loop.root)["unchanged"]
    loop.edit("seven", bump="0.8.0")
    assert loop_ship(loop, "0.8.0", "--key", "release.key", cwd=loop.root)["ok"]

    # 15. from outside again, no key given: the release key's signature is kept, ./dist catches up
    kept = loop.ship()
    assert kept["ok"] and kept["steps"][2]["detail"].startswith("capsule.sig already signs this seal")
    assert (work / "dist" / "orders-0.8.0.tar.gz").is_file()

    # 16. + 17. a new version without the key that signed the last: refused, then shipped with it
    loop.edit("eight", bump="0.9.0")
    before = loop.written()
    nokey = loop.ship(code=2)
    assert "not by the development key" in nokey["stderr"] and "pass --key" in nokey["stderr"]
    assert loop.written() == before
    assert loop_ship(loop, "0.9.0", "--key", "orders/release.key")["ok"]

    # 18. + 19. the dry run, then the run it predicted
    loop.edit("nine", bump="0.10.0")
    before = loop.written()
    dry = loop.ship("--dry-run", "--key", "orders/release.key")
    assert dry["ok"] and dry["dry_run"] and loop.written() == before
    real = loop_ship(loop, "0.10.0", "--key", "orders/release.key")
    assert real["ok"] and real["digest"] == dry["digest"]
    assert [a["name"] for a in real["artifacts"]] == [a["name"] for a in dry["artifacts"]]

    # 20. + 21. --force: a second build of 0.10.0, overwritten at both targets; then unchanged again
    loop.edit("ten")
    old = (work / "dist" / "orders-0.10.0.tar.gz").read_bytes()
    forced = loop_ship(loop, "0.10.0", "--force", "--key", "orders/release.key")
    assert forced["ok"] and (work / "dist" / "orders-0.10.0.tar.gz").read_bytes() != old
    assert loop.ship("--key", "orders/release.key")["unchanged"]

    assert loop.ships >= 20, loop.ships
    assert loop.history() == loop.shipped
    loop.qlcapsule("verify", "orders", "--key", "orders/release.key.pub")
    assert loop.s3_keys() == sorted(s3_key.format(v=v) for v in set(loop.shipped))


def loop_ship(loop: Loop, version: str, *args: str, cwd: Path | None = None, code: int = 0) -> dict[str, Any]:
    """A ship that commits ``version`` as a new build; the store's history must gain exactly it."""
    loop.shipped.insert(0, version)
    result = loop.ship(*args, cwd=cwd, code=code)
    if code == 0:
        loop.qlcapsule("verify", "orders")
    return result
