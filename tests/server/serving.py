"""Waiting for a ``qlcapsule serve`` process to answer: one loop for the server tests and the catalog benches
(bench/ puts this folder on ``sys.path``, as for pg_cluster.py). Standard library only."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from typing import Any


def wait_until_answers(proc: subprocess.Popen[Any], url: str, timeout: float = 60) -> None:
    """Poll ``url`` until it answers 200. RuntimeError when ``proc`` exits first (with what it wrote on stderr,
    when that is a pipe) or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            err = proc.communicate()[1] if proc.stderr is not None else b""
            text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err or "")
            raise RuntimeError(f"qlcapsule serve exited with {proc.returncode} before answering: {text[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:  # refused, or an HTTP error such as /readyz's 503 while migrating
            if time.monotonic() > deadline:
                raise RuntimeError(f"qlcapsule serve did not answer on {url} in {timeout:.0f} s") from None
            time.sleep(0.1)
