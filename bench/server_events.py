"""The catalog's events row: how long a delivery status change takes to reach every SSE subscriber.

Two ``qlcapsule serve`` processes on one PostgreSQL (bench_server.py starts them); 200 subscribers (quick: 20)
hold ``GET /api/v1/events`` open, half on each process, all in one asyncio loop here (raw HTTP/1.1 on
sockets: a thread per stream would cost more of the two cores than the server does). Each round posts one
status change to process A (``POST /api/v1/deliveries``, a new ``detail`` so it is a new event) and records,
per subscriber, the time from just before the POST until the event's ``data:`` line arrives; the row is the
p95 over every (round, subscriber). Process B's subscribers get it through PostgreSQL's NOTIFY. Target
(issue 20): p95 < 200 ms. Anchor: a bare ``GET /healthz`` round trip p95, alternating the two processes, with
the 200 streams open (the HTTP floor at the same load).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench_server import Serve, _call, _p95, _publication  # type: ignore[import-not-found]
from run import row  # type: ignore[import-not-found]

#: seconds a round waits for every subscriber before it counts the missing ones as lost
ROUND_TIMEOUT = 10.0


async def _subscribe(url: str, secret: str, arrivals: dict[str, float], ready: asyncio.Queue[None]) -> None:
    """One SSE stream: record when each event's ``detail`` arrives (the body is chunked; lines still start with
    the SSE field names because each event is sent as one chunk)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = (
        f"GET /api/v1/events HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {secret}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"GET /api/v1/events answered {status!r}")
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"retry:"):
                ready.put_nowait(None)
            elif line.startswith(b"data: "):
                arrivals.setdefault(json.loads(line[6:])["detail"], time.perf_counter())
    finally:
        writer.close()


async def _measure(
    a: Serve, b: Serve, secret: str, subscribers: int, rounds: int
) -> tuple[list[float], list[float], int]:
    loop = asyncio.get_running_loop()
    arrivals: list[dict[str, float]] = [{} for _ in range(subscribers)]
    ready: asyncio.Queue[None] = asyncio.Queue()
    tasks = [
        asyncio.create_task(_subscribe((a if i % 2 == 0 else b).url, secret, arrivals[i], ready))
        for i in range(subscribers)
    ]
    try:
        for _ in range(subscribers):
            await asyncio.wait_for(ready.get(), 60)
        await asyncio.sleep(0.5)  # every hub has read its first "newest event" before the first round
        floor = []
        for i in range(100):
            server = a if i % 2 == 0 else b
            floor.append(await loop.run_in_executor(None, _call, f"{server.url}/healthz", secret))
        latencies: list[float] = []
        lost = 0
        for r in range(rounds):
            detail = f"bench round {r}"
            body = {"capsule": "events", "version": "1.0.0", "target": "production", "provider": "s3"}
            body |= {"status": "uploading", "detail": detail}
            start = time.perf_counter()
            await loop.run_in_executor(None, _call, f"{a.url}/api/v1/deliveries", secret, body)
            deadline = start + ROUND_TIMEOUT
            while not all(detail in got for got in arrivals) and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
            for got in arrivals:
                if detail in got:
                    latencies.append(got[detail] - start)
                else:
                    lost += 1
            await asyncio.sleep(0.05)
        return latencies, floor, lost
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def events_rows(a: Serve, b: Serve, secret: str, key: Any, quick: bool) -> list[dict[str, Any]]:
    subscribers, rounds = (20, 5) if quick else (200, 30)
    _call(f"{a.url}/api/v1/publish", secret, _publication(key, "events", "1.0.0", "events = 1\n"))
    latencies, floor, lost = asyncio.run(_measure(a, b, secret, subscribers, rounds))
    p95 = _p95(latencies) if latencies else float("inf")
    return [
        row(
            f"catalog event reaches {subscribers} SSE subscribers p95, 2 processes on PostgreSQL",
            p95,
            f"GET /healthz p95, {subscribers} streams open",
            _p95(floor),
            "< 200 ms",
            ok=p95 < 0.200 and not lost,
            rounds=rounds,
            lost=lost,
            max_s=round(max(latencies), 4) if latencies else None,
        )
    ]
