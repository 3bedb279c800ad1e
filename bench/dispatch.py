"""`make bench-dispatch`: from `POST /v1/jobs` to the first offer arriving at FCM.

One granian process serves the app (with its in-process queue worker) on 127.0.0.1; pushes go through the
real firebase-admin SDK to a fake FCM server running in this process, which notes when each job's first
`job_offer` arrives. 200 ASAP jobs are posted one after another near 1,000 on-duty technicians with
registered phones; each job offers itself to its 10 best candidates. The time measured is what a
dispatcher would see: from sending the POST to the first phone's push leaving for FCM.

The database is `truckroll_bench_dispatch`, next to the development one (or on DATABASE_URL's server).
Last line: `dispatch: p50_ms=<x> p99_ms=<x>`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from backend.settings import REPO_ROOT, libpq_url
from bench.common import bench_database

JOBS = int(os.environ.get("BENCH_JOBS", "200"))
TECHNICIANS = 1000
CENTRE = (52.52, 13.405)
DATABASE = "truckroll_bench_dispatch"
PROJECT = "truckroll-bench"
GOAL_P99_MS = 250


def prepare() -> tuple[str, str]:
    """A migrated database with one organisation and its on-duty technicians; returns (url, api key)."""
    from backend.auth import hash_api_key
    from backend.orgs.services import new_api_key

    url = bench_database(DATABASE)
    key = new_api_key()
    org = uuid.uuid4()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("TRUNCATE organizations, technicians, jobs, procrastinate_jobs CASCADE")
        conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'bench dispatch')", (org,))
        conn.execute(
            "INSERT INTO api_keys (id, org_id, prefix, key_hash) VALUES (%s, %s, %s, %s)",
            (uuid.uuid4(), org, key[:12], hash_api_key(key)),
        )
        conn.execute(
            """
            WITH t AS (
                INSERT INTO technicians (id, firebase_uid, name, on_duty, location, location_recorded_at, speed_mps)
                SELECT gen_random_uuid(), 'dispatch-' || g, 'Bench Technician', true,
                       ST_SetSRID(ST_MakePoint(%(lon)s + (random() * 2 - 1) * 0.15, %(lat)s + (random() * 2 - 1) * 0.1), 4326)::geography,
                       now(), 0
                FROM generate_series(1, %(n)s) g RETURNING id, location
            ), m AS (
                INSERT INTO pool_memberships (org_id, technician_id, tier, skills, service_radius_km, home)
                SELECT %(org)s, id, 'approved', '{hvac}', 40, location FROM t RETURNING technician_id
            )
            INSERT INTO devices (token, technician_id, platform) SELECT 'device-' || technician_id, technician_id, 'android' FROM m
            """,
            {"lat": CENTRE[0], "lon": CENTRE[1], "n": TECHNICIANS, "org": org},
        )
        conn.execute("VACUUM ANALYZE")
    return url, key


class FakeFcm:
    """A minimal FCM HTTP v1 endpoint that notes when each job's first offer arrives."""

    def __init__(self) -> None:
        self.first_offer: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Event] = {}
        self.received = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = json.loads(await reader.readexactly(length)) if length else {}
                now = time.perf_counter()
                self.received += 1
                data = body.get("message", {}).get("data", {})
                if data.get("type") == "job_offer":
                    job_id = data["job_id"]
                    if job_id not in self.first_offer:
                        self.first_offer[job_id] = now
                        self.waiters.setdefault(job_id, asyncio.Event()).set()
                reply = json.dumps({"name": f"projects/{PROJECT}/messages/{self.received}"}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(reply)).encode()
                    + b"\r\n\r\n"
                    + reply
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError):
            pass
        finally:
            writer.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run(url: str, key: str) -> list[float]:
    fcm = FakeFcm()
    server = await asyncio.start_server(fcm.handle, "127.0.0.1", 0)
    fcm_port = server.sockets[0].getsockname()[1]
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TRUCKROLL_PUSH": "fcm",
        "TRUCKROLL_FCM_ENDPOINT": f"http://127.0.0.1:{fcm_port}",
        "TRUCKROLL_FIREBASE_PROJECT_ID": PROJECT,
        "TRUCKROLL_WORKER": "inprocess",
        "FIREBASE_AUTH_EMULATOR_HOST": os.environ.get("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099"),
    }
    app = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--factory",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "backend.app:app_from_env",
        ],
        env=env,
        cwd=REPO_ROOT,
    )
    latencies: list[float] = []
    post_ms: list[float] = []
    rng = random.Random(5)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as client:
            for _ in range(100):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise SystemExit("bench-dispatch: the server did not start")
            for i in range(JOBS + 10):
                now = datetime.now(UTC)
                body = {
                    "title": f"Bench job {i}",
                    "skills": ["hvac"],
                    "location": {
                        "lat": CENTRE[0] + rng.uniform(-0.05, 0.05),
                        "lon": CENTRE[1] + rng.uniform(-0.08, 0.08),
                    },
                    "window": {"start": now.isoformat(), "end": (now + timedelta(hours=3)).isoformat()},
                    "customer": {"name": "Bench Customer"},
                }
                t0 = time.perf_counter()
                response = await client.post("/v1/jobs", json=body)
                post_ms.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 201:
                    raise SystemExit(f"bench-dispatch: POST /v1/jobs answered {response.status_code}: {response.text}")
                job = response.json()
                if len(job["offers"]) != 10:
                    raise SystemExit(f"bench-dispatch: expected 10 offers, got {len(job['offers'])}")
                event = fcm.waiters.setdefault(job["id"], asyncio.Event())
                await asyncio.wait_for(event.wait(), timeout=10)
                if i >= 10:  # the first ten warm the server up
                    latencies.append((fcm.first_offer[job["id"]] - t0) * 1000)
                if (i + 1) % 50 == 0:
                    print(f"bench-dispatch: {i + 1 - 10}/{JOBS} jobs", flush=True)
    finally:
        app.send_signal(signal.SIGINT)
        try:
            app.wait(timeout=15)
        except subprocess.TimeoutExpired:
            app.kill()
        server.close()
    post_ms.sort()
    print(
        f"bench-dispatch: the POST alone (matching, offers, queued pushes, commit): p50 {post_ms[len(post_ms) // 2]:.1f} ms"
    )
    return latencies


def main() -> None:
    url, key = prepare()
    latencies = sorted(asyncio.run(run(url, key)))
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    print(
        f"bench-dispatch: {len(latencies)} jobs × 10 offers; POST → first offer at FCM: p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms (goal p99 ≤ {GOAL_P99_MS} ms)"
    )
    print(f"dispatch: p50_ms={p50:.1f} p99_ms={p99:.1f}")


if __name__ == "__main__":
    main()
