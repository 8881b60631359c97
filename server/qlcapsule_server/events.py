"""Live delivery status: the event hub behind ``GET /api/v1/events`` (Server-Sent Events) and the webhooks.

An event is a row of the delivery timeline (``delivery_events``); its id is the SSE ``id``, so a client that
reconnects with ``Last-Event-ID`` gets what it missed from the database, then the live stream. Each server
process runs one poller that reads new rows (``id >`` the last seen) and fans them out to its subscribers, so
any number of processes on one database see every event whichever process recorded it, with one query per
interval per process, not per subscriber.

On PostgreSQL the recording transaction also sends ``NOTIFY qlcapsule_events`` (delivered on commit), and each
process keeps one connection that LISTENs and wakes its poller at once: events cross processes without waiting
for the interval, which stays (longer) as the fallback should a notification be lost with a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from .db import transaction
from .logs import log
from .models import CapsuleRow, DeliveryEventRow, DeliveryRow, VersionRow

#: seconds between two reads of new events (SQLite; PostgreSQL's notifications wake the reader sooner)
POLL_INTERVAL = 0.2
PG_POLL_INTERVAL = 2.0
#: the PostgreSQL notification channel a recorded delivery status is announced on
CHANNEL = "qlcapsule_events"
#: seconds between two keep-alive comments on an idle stream
KEEPALIVE = 15.0
#: events replayed at most for one Last-Event-ID
MAX_REPLAY = 1000


@dataclass(frozen=True)
class Filter:
    capsule: str | None = None
    target: str | None = None
    status: str | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        return all(
            want is None or event[key] == want
            for key, want in (("capsule", self.capsule), ("target", self.target), ("status", self.status))
        )


def read_events(session: Session, after: int, limit: int = 500) -> list[dict[str, Any]]:
    """Timeline rows with ``id > after``, oldest first, with their capsule, version and target."""
    rows = session.execute(
        select(
            DeliveryEventRow,
            DeliveryRow.target,
            DeliveryRow.provider,
            VersionRow.version,
            CapsuleRow.name,
        )
        .join(DeliveryRow, DeliveryRow.id == DeliveryEventRow.delivery_id)
        .join(VersionRow, VersionRow.id == DeliveryRow.version_id)
        .join(CapsuleRow, CapsuleRow.id == VersionRow.capsule_id)
        .where(DeliveryEventRow.id > after)
        .order_by(DeliveryEventRow.id)
        .limit(limit)
    ).all()
    return [
        {
            "id": e.id,
            "capsule": name,
            "version": version,
            "target": target,
            "provider": provider,
            "url": e.url,  # the URL this step reported (the delivery's latest is in the deliveries API)
            "status": e.status,
            "detail": e.detail,
            "bytes": e.bytes,
            "at": e.at.isoformat(),
        }
        for e, target, provider, version, name in rows
    ]


def last_event_id(session: Session) -> int:
    return int(session.scalar(select(DeliveryEventRow.id).order_by(DeliveryEventRow.id.desc()).limit(1)) or 0)


class Hub:
    """One poller per process; subscribers get every new event through their own queue."""

    def __init__(self, sessions: sessionmaker[Session], interval: float | None = None) -> None:
        self.sessions = sessions
        engine = sessions.kw["bind"]
        #: the psycopg URL to LISTEN on (PostgreSQL only)
        self._listen_url = (
            engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            if engine.dialect.name == "postgresql"
            else None
        )
        self.interval = interval or (PG_POLL_INTERVAL if self._listen_url else POLL_INTERVAL)
        #: True while the LISTEN connection is up
        self.listening = False
        self.subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        #: subscriptions ever made (a gauge of open ones is len(subscribers))
        self.subscriptions = 0
        #: called (in the event loop, must not block) with each batch of new events: the webhooks
        self.listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        self.closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._listener: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the newest event read (None: not read yet)
        self._last: int | None = None

    def _read(self) -> list[dict[str, Any]]:

        with transaction(self.sessions) as session:
            if self._last is None:  # the first read: from now on, what happens next
                self._last = last_event_id(session)
                return []
            return read_events(session, self._last)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._poll())
        if self._listen_url:
            self._listener = threading.Thread(target=self._listen, name="qlcapsule-events-listen", daemon=True)
            self._listener.start()

    def _listen(self) -> None:
        """LISTEN on the channel (a thread with its own connection); each notification wakes the poller."""
        import psycopg  # noqa: PLC0415 -- extra: psycopg ([server]) loads only for PostgreSQL's LISTEN

        assert self._listen_url is not None and self._loop is not None
        while not self.closing.is_set():
            try:
                with psycopg.connect(self._listen_url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    while not self.closing.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._loop.call_soon_threadsafe(self._wake.set)
            except psycopg.Error as exc:  # the poller still reads every interval; reconnect and carry on
                self.listening = False
                log("events.listen_failed", 30, error=type(exc).__name__)
                self.closing_wait(1.0)
        self.listening = False

    def closing_wait(self, seconds: float) -> None:
        """Sleep in a thread, waking early on shutdown."""
        deadline = time.monotonic() + seconds
        while not self.closing.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)

    async def _poll(self) -> None:

        failing = False
        while not self.closing.is_set():
            events: list[dict[str, Any]] = []
            try:
                events = await run_in_threadpool(self._read)
                failing = False
            except SQLAlchemyError as exc:  # not migrated yet, or unreachable: /readyz says so; retry
                if not failing:
                    log("events.unavailable", 30, error=type(getattr(exc, "orig", None) or exc).__name__)
                failing = True
            if events:
                self._last = events[-1]["id"]
                for queue in list(self.subscribers):
                    for event in events:
                        queue.put_nowait(event)
                for listener in self.listeners:
                    listener(events)
            if len(events) < 500:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
                self._wake.clear()

    def close(self) -> None:
        """End every stream (shutdown): each subscriber gets None and its response finishes."""
        self.closing.set()
        self._wake.set()
        for queue in list(self.subscribers):
            queue.put_nowait(None)

    def close_soon(self) -> None:
        """``close`` from a signal handler or another thread (the server's SIGTERM): open streams end at
        once instead of holding the graceful shutdown until its timeout."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.close)

    async def stop(self) -> None:
        self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            await run_in_threadpool(self._listener.join, 5)

    async def stream(self, wanted: Filter, after: int | None) -> AsyncIterator[str]:
        """The SSE text of a subscription: the replay after ``after`` (Last-Event-ID), then live events."""

        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.subscribers.add(queue)
        self.subscriptions += 1
        try:
            yield "retry: 2000\n\n"
            sent = after or 0
            if after is not None:
                for event in await run_in_threadpool(self._replay, after):
                    sent = event["id"]
                    if wanted.matches(event):
                        yield _sse(event)
            while not self.closing.is_set():
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item is None:
                    break
                if item["id"] > sent and wanted.matches(item):
                    sent = item["id"]
                    yield _sse(item)
        finally:
            self.subscribers.discard(queue)

    def _replay(self, after: int) -> list[dict[str, Any]]:

        with transaction(self.sessions) as session:
            return read_events(session, after, MAX_REPLAY)


def _sse(event: dict[str, Any]) -> str:
    return f"id: {event['id']}\nevent: delivery\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
