"""`make bench-webhooks`: webhook deliveries from the queue to a local receiver.

Two `truckroll worker` processes deliver to one endpoint, a receiver in this process on 127.0.0.1 that answers 200
at once. Events are recorded as services record them (`backend.webhooks.events.emit`, one transaction each, here a
`payable.paid`), so each is a webhook_events row, a delivery and a queue job.

1. Throughput: EVENTS events are queued while the workers are stopped; then the workers start, and deliveries/s is
   counted from the first delivery received to the last.
2. Latency: with the workers running, events are committed at RATE per second for SECONDS; for each, the time from
   its transaction's commit (returned) to the receiver's answering 200 to it.

The database is `truckroll_bench_webhooks`, next to the development one (or on DATABASE_URL's server).
Last line: `webhooks: deliveries_s=<x> p99_ms=<x>` (goals: ≥ 500 deliveries/s, p99 ≤ 250 ms).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

from backend.db.engine import make_engine, make_sessionmaker
from backend.settings import REPO_ROOT, DatabaseSettings, libpq_url
from backend.webhooks import delivery, events
from bench.common import bench_database

DATABASE = "truckroll_bench_webhooks"
EVENTS = int(os.environ.get("BENCH_WEBHOOK_EVENTS", "5000"))
RATE = int(os.environ.get("BENCH_WEBHOOK_RATE", "100"))
SECONDS = int(os.environ.get("BENCH_WEBHOOK_SECONDS", "10"))
ENDPOINTS = int(os.environ.get("BENCH_WEBHOOK_ENDPOINTS", "1"))
"""Endpoints (paths of the one receiver) each event goes to; more than one lifts the per-endpoint limit's cap."""
WORKERS = 2
GOAL_DELIVERIES_S = 500
GOAL_P99_MS = 250


class Receiver:
    """A minimal HTTP/1.1 endpoint (keep-alive) that notes when it answered each `webhook-id`."""

    def __init__(self) -> None:
        self.answered: dict[str, float] = {}
        self.requests = 0
        self.first: float | None = None
        self.last: float | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, event_id = 0, ""
                path = head.split(b" ", 2)[1].decode()
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"webhook-id":
                        event_id = value.strip().decode()
                if length:
                    await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                now = time.perf_counter()
                self.requests += 1
                self.answered.setdefault(f"{event_id} {path}", now)
                self.first = self.first or now
                self.last = now
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError):
            pass
        finally:
            writer.close()


def prepare(url: str, receiver_url: str) -> uuid.UUID:
    org = uuid.uuid4()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("TRUNCATE organizations, procrastinate_jobs, procrastinate_workers CASCADE")
        conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'bench webhooks')", (org,))
        for n in range(ENDPOINTS):
            endpoint = uuid.uuid4()
            conn.execute(
                "INSERT INTO webhook_endpoints (id, org_id, url, events, secret, created_at) "
                "VALUES (%s, %s, %s, '{*}', %s, now())",
                (endpoint, org, f"{receiver_url}/{n}", "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
            )
            conn.execute(
                "INSERT INTO webhook_slots (endpoint_id, slot) SELECT %s, generate_series(0, %s - 1)",
                (endpoint, delivery.SLOTS_PER_ENDPOINT),
            )
        conn.execute("VACUUM ANALYZE")
    return org


def payable(i: int) -> dict:
    return {"payable": {"id": str(uuid.uuid4()), "total": "123.45", "currency": "EUR", "reference": f"bench-{i}"}}


async def emit_one(sessions, org: uuid.UUID, i: int) -> tuple[uuid.UUID, float]:
    """One event in its own transaction; its id and when the commit returned."""
    event_id = uuid.uuid4()
    async with sessions() as session:
        await events.emit(session, org, "payable.paid", payable(i), event_id=event_id)
        await session.commit()
    return event_id, time.perf_counter()


def start_workers(url: str, logs: Path) -> list[subprocess.Popen]:
    env = {**os.environ, "DATABASE_URL": url, "TRUCKROLL_ENV": "development", "TRUCKROLL_PUSH": "log"}
    started = []
    for n in range(WORKERS):
        with (logs / f"bench-webhooks-worker-{n + 1}.log").open("wb") as out:
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "backend.cli", "worker"],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    return started


def stop(workers: list[subprocess.Popen]) -> None:
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in workers:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


async def wait_until(check, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench-webhooks: {what} did not happen within {within:.0f} s")
        await asyncio.sleep(0.05)


async def main() -> None:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = bench_database(DATABASE)
    org = prepare(url, f"http://127.0.0.1:{port}/hooks")
    engine = make_engine(DatabaseSettings(url=url, pool_size=20))
    sessions = make_sessionmaker(engine)
    logs = REPO_ROOT / ".truckroll"
    logs.mkdir(exist_ok=True)
    workers: list[subprocess.Popen] = []
    try:
        # 1. Throughput: a backlog, then the workers.
        loaded = time.perf_counter()
        for start in range(0, EVENTS, 100):
            await asyncio.gather(*(emit_one(sessions, org, i) for i in range(start, min(start + 100, EVENTS))))
        print(f"bench-webhooks: {EVENTS} events queued in {time.perf_counter() - loaded:.1f} s", flush=True)
        workers = start_workers(url, logs)
        total = EVENTS * ENDPOINTS
        await wait_until(lambda: len(receiver.answered) >= total, 600, f"delivering {total} deliveries")
        deliveries_s = (total - 1) / (receiver.last - receiver.first)
        print(
            f"bench-webhooks: {total} deliveries ({EVENTS} events to {ENDPOINTS} endpoint(s)) in "
            f"{receiver.last - receiver.first:.2f} s by {WORKERS} workers ({receiver.requests - total} repeated); "
            f"{deliveries_s:.0f}/s",
            flush=True,
        )

        # 2. Latency at RATE events/s.
        committed: dict[str, float] = {}
        interval = 1 / RATE
        begun = time.perf_counter()
        tasks = []
        for i in range(RATE * SECONDS):
            due = begun + i * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(emit_one(sessions, org, EVENTS + i)))
        for event_id, at in await asyncio.gather(*tasks):
            committed[str(event_id)] = at
        paths = [f"/hooks/{n}" for n in range(ENDPOINTS)]
        keys = {f"{e} {p}": at for e, at in committed.items() for p in paths}
        await wait_until(lambda: all(k in receiver.answered for k in keys), 120, "the paced events' delivery")
        latencies = sorted((receiver.answered[k] - at) * 1000 for k, at in keys.items())
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(
            f"bench-webhooks: {len(latencies)} events at {RATE}/s: commit → 200 p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"max {latencies[-1]:.1f} ms (goals: ≥ {GOAL_DELIVERIES_S} deliveries/s, p99 ≤ {GOAL_P99_MS} ms)",
            flush=True,
        )
        print(f"webhooks: deliveries_s={deliveries_s:.0f} p99_ms={p99:.1f}", flush=True)
    finally:
        stop(workers)
        server.close()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
