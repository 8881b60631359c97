"""Progress of long work on stderr: a bar on a terminal, a quiet line now and then elsewhere.

- On a terminal (stderr a TTY, ``CI`` unset), work of at least :data:`THRESHOLD`
  bytes gets a rich bar; rich is imported only then, so short commands stay fast.
- Elsewhere (CI logs, stderr into a file) nothing is printed for work that ends
  within :data:`INTERVAL` seconds; longer work prints one line per interval
  (``exporting orders@1.0.0 as tar.gz: 512.0 MiB of 1.9 GiB (26%)``), and a CI
  log shows that it is moving without filling up. The work is not sized for
  these lines unless its total is already known, so CI never pays for a walk.
- ``QLCAPSULE_NO_PROGRESS`` (any value) prints neither; ``QLCAPSULE_PROGRESS_INTERVAL``
  sets the seconds between lines (default 5).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

THRESHOLD = 64 << 20  # bytes: below this, a bar would only flicker
INTERVAL = 5.0  # seconds between lines when there is no terminal
ENV_OFF = "QLCAPSULE_NO_PROGRESS"
ENV_INTERVAL = "QLCAPSULE_PROGRESS_INTERVAL"


def wanted() -> bool:
    """True when a bar may be shown: stderr is a terminal, not CI, progress not switched off."""
    return sys.stderr.isatty() and not os.environ.get("CI") and not os.environ.get(ENV_OFF)


def _interval() -> float:
    raw = os.environ.get(ENV_INTERVAL, "").strip()
    try:
        return max(0.0, float(raw)) if raw else INTERVAL
    except ValueError:
        return INTERVAL


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns at GiB


@contextmanager
def bytes_progress(label: str, total: int | Callable[[], int]) -> Iterator[Callable[[int], None] | None]:
    """Yield a thread-safe ``advance(nbytes)`` callback, or None when nothing will be shown.

    ``total`` may be a callable, evaluated only when a bar could be shown.
    """
    if os.environ.get(ENV_OFF):
        yield None
        return
    if not wanted():
        with _lines(label, total if isinstance(total, int) else None) as advance:
            yield advance
        return
    if callable(total):
        total = total()
    if total < THRESHOLD:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415 -- start-up: rich loads only when a progress bar is shown

    lock = threading.Lock()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task(label, total=total)

        def advance(n: int) -> None:
            with lock:
                bar.advance(task, n)

        yield advance


@contextmanager
def _lines(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """``advance`` that writes ``label: done [of total (pct)]`` to stderr once every interval, never sooner."""
    lock = threading.Lock()
    every = _interval()
    state = {"done": 0, "next": time.monotonic() + every}

    def advance(n: int) -> None:
        with lock:
            state["done"] += n
            now = time.monotonic()
            if now < state["next"]:
                return
            state["next"] = now + every
            done = state["done"]
            of = f" of {_size(total)} ({min(100, done * 100 // total)}%)" if total else ""
            sys.stderr.write(f"{label}: {_size(done)}{of}\n")
            sys.stderr.flush()

    yield advance
