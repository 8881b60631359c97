"""The azure deliverer against Azurite (the Azure Blob emulator, from npm) on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fixtures_cloud import (
    AZURITE_KEY,
    AzureContainer,
    artifact,
    azurite_connection_string,
    sha256_url,
    write_target_capsule,
)

KiB = 1024


def _deliver(cli, root: Path, *files: Path, verbose: bool = False):
    args = (["-vv"] if verbose else []) + ["deliver", str(root), "--target", "az", "--json"]
    for f in files:
        args += ["--artifact", str(f)]
    return cli(*args)


def _blobs(c: AzureContainer) -> list[str]:
    return [b.name for b in c.client.list_blobs()]  # type: ignore[attr-defined]


def test_put_blob_md5_checked_and_sas_url(tmp_path: Path, azure_container: AzureContainer, qlcapsule_cli) -> None:
    root = write_target_capsule(tmp_path / "c", "az", "azure", {"container": azure_container.name})
    f = artifact(tmp_path / "demo.tar.gz", 200_000)
    res = _deliver(qlcapsule_cli, root, f, verbose=True)
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout)["result"]["receipts"]
    want = hashlib.sha256(f.read_bytes()).hexdigest()
    assert r["sha256"] == want and r["location"] == f"azure://{azure_container.name}/demo/1.0.0/demo.tar.gz"
    assert "sig=" in r["url"] and "sp=r" in r["url"]
    assert sha256_url(r["url"]) == want
    props = azure_container.client.get_blob_client("demo/1.0.0/demo.tar.gz").get_blob_properties()  # type: ignore[attr-defined]
    assert bytes(props.content_settings.content_md5) == hashlib.md5(f.read_bytes()).digest()
    assert AZURITE_KEY not in res.output
    # the SAS is verified by Azurite: a tampered signature is refused
    bad = r["url"].replace("sig=", "sig=AAAA")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad, timeout=10)
    e.value.close()  # an HTTPError holds the response and its socket
    assert e.value.code == 403


def test_block_upload_is_read_back(tmp_path: Path, azure_container: AzureContainer, qlcapsule_cli) -> None:
    opts = {
        "container": azure_container.name,
        "block_threshold": 256 * KiB,
        "block_size": 128 * KiB,
        "url_expires_in": "2h",
    }
    root = write_target_capsule(tmp_path / "c", "az", "azure", opts)
    f = artifact(tmp_path / "big.bin", 700 * KiB + 3)
    res = _deliver(qlcapsule_cli, root, f)
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout)["result"]["receipts"]
    assert r["extra"]["url_expires_in"] == 7200
    assert sha256_url(r["url"]) == hashlib.sha256(f.read_bytes()).hexdigest() == r["sha256"]
    blocks = azure_container.client.get_blob_client("demo/1.0.0/big.bin").get_block_list("committed")  # type: ignore[attr-defined]
    assert len(blocks[0]) == 6


def test_existing_blob_is_not_overwritten(tmp_path: Path, azure_container: AzureContainer, qlcapsule_cli) -> None:
    root = write_target_capsule(tmp_path / "c", "az", "azure", {"container": azure_container.name, "prefix": ""})
    f = tmp_path / "a.txt"
    f.write_bytes(b"first")
    assert _deliver(qlcapsule_cli, root, f).exit_code == 0
    assert json.loads(_deliver(qlcapsule_cli, root, f).stdout)["result"]["receipts"][0]["extra"]["existing"] is True
    f.write_bytes(b"other")
    res = _deliver(qlcapsule_cli, root, f)
    assert res.exit_code == 1
    assert res.stderr.strip() == (
        f"error: azure://{azure_container.name}/a.txt: exists with different content; set 'overwrite: true' to replace it"
    )
    data = azure_container.client.download_blob("a.txt").readall()  # type: ignore[attr-defined]
    assert data == b"first"


def test_dry_run_and_credentials(tmp_path: Path, azure_container: AzureContainer, qlcapsule_cli, monkeypatch) -> None:
    root = write_target_capsule(tmp_path / "c", "az", "azure", {"container": azure_container.name})
    f = artifact(tmp_path / "x.bin", 100)
    res = qlcapsule_cli("deliver", str(root), "--target", "az", "--artifact", str(f), "--dry-run")
    assert res.exit_code == 0, res.output
    assert _blobs(azure_container) == []
    gone = write_target_capsule(tmp_path / "g", "az", "azure", {"container": "no-such-container"})
    res = qlcapsule_cli("deliver", str(gone), "--target", "az", "--dry-run")
    assert res.exit_code == 2 and res.stderr.strip() == "error: azure: container 'no-such-container': not found"
    wrong_key = azure_container.connection_string.replace(AZURITE_KEY, "d3Jvbmcta2V5LXdyb25nLWtleS0xMjM0NTY3ODkwYWJj")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong_key)
    res = qlcapsule_cli("-vv", "deliver", str(root), "--target", "az", "--dry-run")
    assert res.exit_code == 2 and res.stderr.strip().splitlines()[-1].startswith("error: azure: container")
    assert "access denied" in res.stderr and "d3Jvbmcta2V5" not in res.output
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    res = qlcapsule_cli("deliver", str(root), "--target", "az", "--dry-run")
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        "error: missing credential: environment variable AZURE_STORAGE_CONNECTION_STRING is not set "
        "(Azure Storage connection string)"
    )


def test_500s_on_blocks_retried_then_persistent_failure_leaves_no_blob(
    tmp_path: Path, azure_container: AzureContainer, azurite, fault_proxy, qlcapsule_cli, monkeypatch
) -> None:
    proxy = fault_proxy(azurite.url)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection_string(proxy.url))
    opts = {"container": azure_container.name, "block_threshold": 256 * KiB, "block_size": 128 * KiB, "attempts": 3}
    root = write_target_capsule(tmp_path / "c", "az", "azure", opts)
    f = artifact(tmp_path / "big.bin", 600 * KiB)
    proxy.fail(500, method="PUT", match=r"comp=block&", times=-1)
    res = _deliver(qlcapsule_cli, root, f)
    assert res.exit_code == 3
    assert res.stderr.strip().startswith("error: azure PutBlock 0: HTTP 500")
    assert _blobs(azure_container) == []  # staged blocks are not a blob
    proxy.clear()
    proxy.fail(503, method="PUT", match=r"comp=block&", times=2)
    proxy.fail(500, method="PUT", match=r"comp=blocklist", times=1)
    res = _deliver(qlcapsule_cli, root, f)
    assert res.exit_code == 0, res.output
    assert [s.status for s in proxy.seen("PUT", "comp=blocklist")] == [500, 201]
    assert _blobs(azure_container) == ["demo/1.0.0/big.bin"]
    assert (
        sha256_url(json.loads(res.stdout)["result"]["receipts"][0]["url"]) == hashlib.sha256(f.read_bytes()).hexdigest()
    )
