"""Progress on a terminal, silence in CI.

Shown only when stderr is a TTY, ``CI`` is unset and the work is large enough
to notice; rich is imported only then, so short commands stay fast.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

THRESHOLD = 64 << 20  # bytes: below this, a bar would only flicker


def wanted() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI") and not os.environ.get("QLCAPSULE_NO_PROGRESS")


@contextmanager
def bytes_progress(label: str, total: int | Callable[[], int]) -> Iterator[Callable[[int], None] | None]:
    """Yield a thread-safe ``advance(nbytes)`` callback, or None when no bar is shown.

    ``total`` may be a callable, evaluated only when a bar could be shown (so
    CI never pays for sizing the work).
    """
    if not wanted():
        yield None
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
