"""The s3 deliverer against moto's real S3 server on 127.0.0.1 (plus a fault-injecting proxy)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_cloud import CANARY_AWS_SECRET, HERE, S3Bucket, artifact, sha256_url, write_target_capsule

MiB = 1024 * 1024


def _opts(bucket: S3Bucket, endpoint: str | None = None, **more: object) -> dict[str, object]:
    return {"bucket": bucket.name, "endpoint_url": endpoint or bucket.endpoint, "attempts": 3, **more}


def _open_uploads(bucket: S3Bucket) -> list[dict]:
    return bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads", [])  # type: ignore[attr-defined]


def _keys(bucket: S3Bucket) -> list[str]:
    return [o["Key"] for o in bucket.client.list_objects_v2(Bucket=bucket.name).get("Contents", [])]  # type: ignore[attr-defined]


def _deliver(cli, root: Path, *files: Path, target: str = "s3", verbose: bool = False):
    args = (["-vv"] if verbose else []) + ["deliver", str(root), "--target", target, "--json"]
    for f in files:
        args += ["--artifact", str(f)]
    return cli(*args)


def test_put_checksum_and_presigned_url(tmp_path: Path, s3_bucket: S3Bucket, qlcapsule_cli) -> None:
    root = write_target_capsule(tmp_path / "c", "s3", "s3", _opts(s3_bucket))
    f = artifact(tmp_path / "demo.tar.gz", 300_000)
    res = _deliver(qlcapsule_cli, root, f, verbose=True)
    assert res.exit_code == 0, res.output
    (receipt,) = json.loads(res.stdout)["result"]["receipts"]
    want = hashlib.sha256(f.read_bytes()).hexdigest()
    assert receipt["sha256"] == want and receipt["size"] == 300_000
    assert receipt["location"] == f"s3://{s3_bucket.name}/demo/1.0.0/demo.tar.gz"
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in receipt["url"] and "X-Amz-Expires=3600" in receipt["url"]
    assert sha256_url(receipt["url"]) == want
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="demo/1.0.0/demo.tar.gz", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(want)).decode()
    assert CANARY_AWS_SECRET not in res.output


def test_multipart_upload_is_checked_and_leaves_no_open_upload(
    tmp_path: Path, s3_bucket: S3Bucket, qlcapsule_cli
) -> None:
    opts = _opts(s3_bucket, multipart_threshold=5 * MiB, part_size=5 * MiB, url_expires_in="7d")
    root = write_target_capsule(tmp_path / "c", "s3", "s3", opts)
    f = artifact(tmp_path / "big.bin", 12 * MiB + 17)
    res = _deliver(qlcapsule_cli, root, f)
    assert res.exit_code == 0, res.output
    (receipt,) = json.loads(res.stdout)["result"]["receipts"]
    assert receipt["extra"]["url_expires_in"] == 7 * 24 * 3600
    assert sha256_url(receipt["url"]) == hashlib.sha256(f.read_bytes()).hexdigest() == receipt["sha256"]
    assert _open_uploads(s3_bucket) == []


def test_existing_object_is_never_overwritten_unless_asked(tmp_path: Path, s3_bucket: S3Bucket, qlcapsule_cli) -> None:
    root = write_target_capsule(tmp_path / "c", "s3", "s3", _opts(s3_bucket, prefix=""))
    f = tmp_path / "a.txt"
    f.write_bytes(b"first")
    assert _deliver(qlcapsule_cli, root, f).exit_code == 0
    again = _deliver(qlcapsule_cli, root, f)  # same bytes: already delivered, nothing rewritten
    assert again.exit_code == 0 and json.loads(again.stdout)["result"]["receipts"][0]["extra"]["existing"] is True
    f.write_bytes(b"second")
    res = _deliver(qlcapsule_cli, root, f)
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines() == [
        f"error: s3://{s3_bucket.name}/a.txt: exists with different content; set 'overwrite: true' to replace it"
    ]
    body = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key="a.txt")["Body"].read()
    assert body == b"first"
    root2 = write_target_capsule(tmp_path / "c2", "s3", "s3", _opts(s3_bucket, prefix="", overwrite=True))
    assert _deliver(qlcapsule_cli, root2, f).exit_code == 0
    assert s3_bucket.client.get_object(Bucket=s3_bucket.name, Key="a.txt")["Body"].read() == b"second"


def test_dry_run_checks_bucket_and_uploads_nothing(tmp_path: Path, s3_bucket: S3Bucket, qlcapsule_cli) -> None:
    root = write_target_capsule(tmp_path / "c", "s3", "s3", _opts(s3_bucket))
    f = artifact(tmp_path / "x.bin", 1000)
    res = qlcapsule_cli("deliver", str(root), "--target", "s3", "--artifact", str(f), "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["result"]["receipts"][0]["extra"] == {"dry_run": True}
    assert _keys(s3_bucket) == []
    missing = write_target_capsule(tmp_path / "m", "s3", "s3", {**_opts(s3_bucket), "bucket": "no-such-bucket"})
    res = qlcapsule_cli("deliver", str(missing), "--target", "s3", "--artifact", str(f), "--dry-run")
    assert res.exit_code == 2 and res.stderr.strip() == "error: s3: bucket 'no-such-bucket': not found"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"bucket": "Bad_Bucket"},
            "targets.s3.options: bucket: 'Bad_Bucket' is not a valid S3 bucket name",
        ),
        ({"bucket": "ok-bucket", "url_expires_in": "8d"}, "url_expires_in: '8d' is more than 7 days"),
        ({"bucket": "ok-bucket", "acl": "public-read"}, "targets.s3.options: acl: unknown key"),
        ({"bucket": "ok-bucket", "part_size": 1024}, "part_size: Input should be greater than or equal to 5242880"),
    ],
)
def test_bad_options_are_one_line_before_any_network(tmp_path: Path, qlcapsule_cli, options, message) -> None:
    # endpoint on a closed port: a bad option must be reported without trying to connect
    root = write_target_capsule(tmp_path / "c", "s3", "s3", {"endpoint_url": "http://127.0.0.1:9", **options})
    res = qlcapsule_cli("deliver", str(root), "--target", "s3", "--dry-run")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_missing_credentials_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env, qlcapsule_cli
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    root = write_target_capsule(
        tmp_path / "c", "s3", "s3", {"bucket": "ok-bucket", "endpoint_url": "http://127.0.0.1:9"}
    )
    res = qlcapsule_cli("deliver", str(root), "--target", "s3", "--dry-run")
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        "error: s3: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
    )


def test_503s_mid_multipart_are_retried_and_succeed_once(
    tmp_path: Path, s3_bucket: S3Bucket, fault_proxy, qlcapsule_cli
) -> None:
    proxy = fault_proxy(s3_bucket.endpoint)
    proxy.fail(503, method="PUT", match=r"partNumber=2", times=2)
    proxy.fail(500, method="POST", match=r"uploadId=", times=1)  # CompleteMultipartUpload
    opts = _opts(s3_bucket, endpoint=proxy.url, multipart_threshold=5 * MiB, part_size=5 * MiB, attempts=4)
    root = write_target_capsule(tmp_path / "c", "s3", "s3", opts)
    f = artifact(tmp_path / "big.bin", 11 * MiB)
    res = _deliver(qlcapsule_cli, root, f, verbose=True)
    assert res.exit_code == 0, res.output
    assert [s.status for s in proxy.seen("PUT", r"partNumber=2")] == [503, 503, 200]
    assert len([s for s in proxy.seen("POST", r"uploadId=") if s.status == 200]) == 1
    assert res.stderr.count("event=retry") == 3, res.stderr
    assert _keys(s3_bucket) == ["demo/1.0.0/big.bin"] and _open_uploads(s3_bucket) == []
    assert (
        sha256_url(json.loads(res.stdout)["result"]["receipts"][0]["url"]) == hashlib.sha256(f.read_bytes()).hexdigest()
    )


def test_persistent_500s_leave_nothing_then_retry_succeeds_once(
    tmp_path: Path, s3_bucket: S3Bucket, fault_proxy, qlcapsule_cli
) -> None:
    proxy = fault_proxy(s3_bucket.endpoint)
    proxy.fail(500, method="PUT", match=r"partNumber=2", times=-1)
    opts = _opts(s3_bucket, endpoint=proxy.url, multipart_threshold=5 * MiB, part_size=5 * MiB, attempts=2)
    root = write_target_capsule(tmp_path / "c", "s3", "s3", opts)
    f = artifact(tmp_path / "big.bin", 11 * MiB)
    res = _deliver(qlcapsule_cli, root, f)
    assert res.exit_code == 3
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: s3 UploadPart 2: ") and "500" in line
    assert _keys(s3_bucket) == [] and _open_uploads(s3_bucket) == []
    assert len(proxy.seen("DELETE", r"uploadId=")) == 1  # the upload was aborted
    proxy.clear()
    res = _deliver(qlcapsule_cli, root, f)
    assert res.exit_code == 0, res.output
    assert len(proxy.seen("POST", r"uploadId=")) == 1  # completed exactly once
    assert _keys(s3_bucket) == ["demo/1.0.0/big.bin"] and _open_uploads(s3_bucket) == []


def test_server_killed_mid_upload_then_next_delivery_cleans_up(tmp_path: Path, s3_bucket: S3Bucket, aws_env) -> None:
    """The proxy process the client talks to is SIGKILLed while it holds part 2 (a crashed server).

    The abort cannot reach it, so moto still has the open upload; the next delivery
    of the same key aborts that stale upload and completes exactly once.
    """

    def start_proxy(port: int = 0, hang: str | None = None) -> tuple[subprocess.Popen[str], int]:
        argv = [sys.executable, str(HERE / "faultproxy.py"), "--upstream", s3_bucket.endpoint, "--port", str(port)]
        if hang:
            argv += ["--hang", hang]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert p.stdout is not None
        first = p.stdout.readline().split()
        assert first[0] == "PORT", first
        return p, int(first[1])

    def stop_proxy(p: subprocess.Popen[str]) -> None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        if p.stdout is not None:
            p.stdout.close()

    proxy, port = start_proxy(hang=r"PUT .*partNumber=2")
    opts = _opts(s3_bucket, endpoint=f"http://127.0.0.1:{port}", multipart_threshold=5 * MiB, part_size=5 * MiB)
    root = write_target_capsule(tmp_path / "c", "s3", "s3", {**opts, "attempts": 2, "timeout": 20})
    f = artifact(tmp_path / "big.bin", 11 * MiB)
    cmd = [sys.executable, "-m", "qlcapsule", "-vv", "deliver", str(root), "--target", "s3", "--artifact", str(f)]
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert proxy.stdout is not None
        assert proxy.stdout.readline().startswith("HANG PUT"), "the proxy never saw part 2"
        stop_proxy(proxy)
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 3, err
    assert err.strip().splitlines()[-1].startswith("error: s3 UploadPart ")  # part 1 or 2, whichever was in flight
    assert "could not abort multipart upload" in err
    assert CANARY_AWS_SECRET not in out + err
    assert _keys(s3_bucket) == []  # no partial object
    assert len(_open_uploads(s3_bucket)) == 1  # the crash left it; the next run must clean it

    proxy2, _ = start_proxy(port=port)
    try:
        res = subprocess.run(cmd[:3] + cmd[4:] + ["--json"], capture_output=True, text=True, timeout=60)
    finally:
        stop_proxy(proxy2)
    assert res.returncode == 0, res.stderr
    assert _keys(s3_bucket) == ["demo/1.0.0/big.bin"] and _open_uploads(s3_bucket) == []
    assert json.loads(res.stdout)["result"]["receipts"][0]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()


def test_a_capsule_defined_s3_target_is_refused(tmp_path: Path, aws_env, qlcapsule_cli, monkeypatch) -> None:
    """AWS keys and the session token never go to an endpoint a pull request's capsule.yaml names."""
    from faultproxy import Recorder
    from operator_targets import assert_capsule_target_refused

    monkeypatch.setenv("AWS_SESSION_TOKEN", CANARY_AWS_SECRET + "-session")
    far = Recorder(403)
    try:
        root = tmp_path / "c"
        root.mkdir()
        (root / "app.py").write_text("print('hello')\n", encoding="utf-8")
        opts = {"bucket": "releases", "endpoint_url": far.url}
        (root / "capsule.yaml").write_text(
            f"name: demo\nversion: 1.0.0\ntargets:\n  s3:\n    provider: s3\n    options: {json.dumps(opts)}\n",
            encoding="utf-8",
        )
        from qlcapsule import Capsule

        Capsule.load(root).seal()
        assert_capsule_target_refused(qlcapsule_cli, root, "s3", far, (CANARY_AWS_SECRET, "AKIATESTQLCAPSULE"))
    finally:
        far.stop()
