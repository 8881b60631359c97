"""Delivery throughput: one large artifact to moto's S3 server and to a local directory.

Rows (best of N, wall time of the whole command, CLI start-up included):

- ``deliver s3 <size>``: ``qlcapsule deliver --artifact`` to moto (multipart with
  per-part SHA-256, HeadObject checksum check, presigned URL) vs. boto3's
  ``upload_file`` (s3transfer: 8 MiB parts on 10 threads, no read-back) to the same server.
- ``deliver local <size>``: ``qlcapsule deliver`` to a directory (copy, fsync,
  re-hash, link) vs. ``cp``.

No speed target is set by the issue; the figures show what the end-to-end checks cost.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import best_of  # type: ignore[import-not-found]  # noqa: E402

MiB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("qlcapsule")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "qlcapsule"]


def run(workdir: Path, quick: bool = False) -> list[dict[str, Any]]:
    size = (16 if quick else 100) * MiB
    repeat = 1 if quick else 3
    label = f"{size // MiB} MB"
    workdir.mkdir(parents=True, exist_ok=True)
    big = workdir / "artifact.bin"
    with big.open("wb") as f:
        block = os.urandom(MiB)
        for i in range(size // MiB):
            f.write(block[i:] + block[:i])
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(workdir / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "none"),
    }
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    rows: list[dict[str, Any]] = []
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench-secret",
        )
        s3.create_bucket(Bucket="bench")
        capsule = workdir / "capsule"
        capsule.mkdir(exist_ok=True)
        (capsule / "capsule.yaml").write_text("name: bench\nversion: 1.0.0\n")
        # targets that carry credentials (s3) or write outside the working directory are the
        # operator's (docs/security.md): they live in a targets file, not in capsule.yaml
        targets = workdir / "targets.yaml"
        targets.write_text(
            "targets:\n"
            f"  s3:\n    provider: s3\n    options: {{bucket: bench, endpoint_url: '{url}', prefix: ours/}}\n"
            f"  dir:\n    provider: local\n    options: {{path: '{workdir / 'out'}', overwrite: true}}\n"
        )
        env["QLCAPSULE_TARGETS_FILE"] = str(targets)
        subprocess.run([*_cli(), "seal", str(capsule)], check=True, env=env, stdout=subprocess.DEVNULL)

        def clear() -> None:
            for key in ("ours/artifact.bin", "anchor/artifact.bin"):
                s3.delete_object(Bucket="bench", Key=key)
            shutil.rmtree(workdir / "out", ignore_errors=True)
            (workdir / "out").mkdir()
            shutil.rmtree(workdir / "cp", ignore_errors=True)
            (workdir / "cp").mkdir()

        deliver = [*_cli(), "deliver", str(capsule), "--artifact", str(big)]
        ours = best_of(
            lambda: subprocess.run([*deliver, "-t", "s3"], check=True, env=env, stdout=subprocess.DEVNULL),
            repeat,
            clear,
        )
        anchor_code = (
            "import boto3,sys;c=boto3.client('s3',endpoint_url=sys.argv[1]);"
            "c.upload_file(sys.argv[2],'bench','anchor/artifact.bin')"
        )
        anchor = best_of(
            lambda: subprocess.run([sys.executable, "-c", anchor_code, url, str(big)], check=True, env=env),
            repeat,
            clear,
        )
        rows.append(
            {
                "name": f"deliver s3 {label} (moto)",
                "ours_s": round(ours, 3),
                "anchor": "boto3 upload_file (s3transfer, 10 threads)",
                "anchor_s": round(anchor, 3),
                "ratio": round(ours / anchor, 2),
                "target": "none (report)",
                "throughput_mb_s": round(size / MiB / ours, 1),
            }
        )
        ours = best_of(
            lambda: subprocess.run([*deliver, "-t", "dir"], check=True, env=env, stdout=subprocess.DEVNULL),
            repeat,
            clear,
        )
        anchor = best_of(lambda: subprocess.run(["cp", str(big), str(workdir / "cp")], check=True), repeat, clear)
        rows.append(
            {
                "name": f"deliver local {label}",
                "ours_s": round(ours, 3),
                "anchor": "cp",
                "anchor_s": round(anchor, 3),
                "ratio": round(ours / anchor, 2),
                "target": "none (report)",
                "throughput_mb_s": round(size / MiB / ours, 1),
            }
        )
    finally:
        os.killpg(moto.pid, signal.SIGKILL)
        moto.wait()
    return rows


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(run(Path(d), quick="--quick" in sys.argv), indent=2))
