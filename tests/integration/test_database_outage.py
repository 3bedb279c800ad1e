"""A database that stops answering or stops: requests that need it are answered 503 with `Retry-After` within
2 s, never hang; `/healthz` answers at once all along; once the database is back, service (the queue worker
included) resumes by itself within 5 s (API.md, "Operating it").

"Stops answering" is real: every process of a throwaway cluster is stopped with SIGSTOP, as a stalled disk or
a network partition would leave it. The server still accepts connections into its listen backlog and never
answers them, and the connections already open wait forever for their replies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import anyio
import httpx
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.db.migrate import upgrade
from backend.settings import Settings, load_settings
from infra.postgis import LocalCluster
from tests.api.jobs_helpers import has_push, in_app_loop, post_job, pushes_when, technician
from tests.fakes.fcm import FakeFcmServer
from tests.helpers import ADMIN_TOKEN, PROJECT_ID, new_org

ANSWER_WITHIN_S = 2.0
RECOVER_WITHIN_S = 5.0
# Should a request hang after all, the database is resumed after this long, so that the test fails on its
# timing assertion rather than hanging for good.
SAFETY_RESUME_S = 15.0


@pytest.fixture(scope="module")
def outage_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster of this module's own: the session's must never be frozen under the other tests."""
    cluster = LocalCluster(tmp_path_factory.mktemp("outage"), fast=True, throwaway=True).ensure()
    try:
        upgrade(cluster.url())
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def outage_settings(outage_cluster: LocalCluster, fcm: FakeFcmServer) -> Settings:
    return load_settings(
        {
            "TRUCKROLL_ENV": "test",
            "DATABASE_URL": outage_cluster.url(),
            "TRUCKROLL_PUSH": "fcm",
            "TRUCKROLL_FCM_ENDPOINT": fcm.url,
            "TRUCKROLL_ADMIN_TOKEN": ADMIN_TOKEN,
            "TRUCKROLL_FIREBASE_PROJECT_ID": PROJECT_ID,
            "FIREBASE_AUTH_EMULATOR_HOST": os.environ["FIREBASE_AUTH_EMULATOR_HOST"],
        }
    )


@contextlib.contextmanager
def frozen(cluster: LocalCluster) -> Iterator[None]:
    """Every process of the cluster stopped (SIGSTOP) for the duration, then resumed (SIGCONT)."""
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    os.kill(postmaster, signal.SIGSTOP)  # first: a stopped postmaster forks no new backend
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    processes = [postmaster, *map(int, children)]

    def resume() -> None:
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    safety = threading.Timer(SAFETY_RESUME_S, resume)
    safety.start()
    try:
        for pid in processes[1:]:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        safety.cancel()
        resume()


async def timed(request) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def assert_unavailable(request) -> float:
    response, elapsed = await timed(request)
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert elapsed <= ANSWER_WITHIN_S, f"answered after {elapsed:.2f} s"
    return elapsed


async def recovery_time(client: AsyncTestClient, org: dict, resumed_at: float) -> float:
    """Seconds from `resumed_at` until a request that needs the database is served again."""
    while (await client.get("/v1/technicians", headers=org)).status_code != 200:
        assert time.monotonic() - resumed_at <= RECOVER_WITHIN_S, "service did not resume by itself"
        await anyio.sleep(0.05)
    return time.monotonic() - resumed_at


async def assert_during_outage(client: AsyncTestClient, org: dict, tech: dict) -> list[float]:
    health, elapsed = await timed(client.get("/healthz"))
    assert health.status_code == 200 and elapsed < 0.5
    times = [
        await assert_unavailable(client.get("/v1/technicians", headers=org)),  # an API key: looked up in the DB
        await assert_unavailable(client.get("/v1/me", headers=tech)),
        await assert_unavailable(  # through the ping recorder's connection
            client.post(
                "/v1/me/locations",
                json={"pings": [{"lat": 52.5, "lon": 13.4, "recorded_at": datetime.now(UTC).isoformat()}]},
                headers=tech,
            )
        ),
    ]
    ready, elapsed = await timed(client.get("/readyz"))
    assert ready.status_code == 503 and ready.json()["database"] == "unavailable" and elapsed <= ANSWER_WITHIN_S
    assert int(ready.headers["retry-after"]) > 0

    # Requests at the same moment each get their answer in time, more of them than the pool has connections
    # (10 + 10 overflow): none queues behind another's wait for longer than the deadline allows.
    async def together(http: httpx.AsyncClient) -> list[tuple[int, float]]:
        results: list[tuple[int, float]] = []

        async def one() -> None:
            response, elapsed = await timed(http.get("/v1/technicians", headers=org))
            results.append((response.status_code, elapsed))

        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(one)
        return results

    concurrent = await in_app_loop(client, together)
    assert [status for status, _ in concurrent] == [503] * 30
    assert max(elapsed for _, elapsed in concurrent) <= ANSWER_WITHIN_S
    return times + [elapsed for _, elapsed in concurrent]


async def test_a_frozen_then_a_stopped_database_answer_503_quickly_and_service_resumes_by_itself(
    outage_cluster: LocalCluster, outage_settings: Settings, fcm: FakeFcmServer
) -> None:
    async with AsyncTestClient(create_app(outage_settings)) as client:
        org = await new_org(client)
        _, tech = await technician(client, org, "ana")
        assert (await client.get("/readyz")).json() == {"database": "ok", "migrations": "head"}

        with frozen(outage_cluster):
            frozen_times = await assert_during_outage(client, org, tech)
            resumed_at = time.monotonic()
        frozen_recovery = await recovery_time(client, org, resumed_at)
        # The queue worker is back too: a new job's offer reaches the technician's phone.
        job = await post_job(client, org)
        await pushes_when(fcm, has_push("tok-ana", "job_offer", job_id=job["id"]), within=RECOVER_WITHIN_S)

        outage_cluster.stop()
        try:
            stopped_times = await assert_during_outage(client, org, tech)
        finally:
            outage_cluster.ensure()
        stopped_recovery = await recovery_time(client, org, time.monotonic())
        job = await post_job(client, org)
        await pushes_when(fcm, has_push("tok-ana", "job_offer", job_id=job["id"]), within=RECOVER_WITHIN_S)
        assert (await client.get("/readyz")).status_code == 200

    print(
        f"\nfrozen: 503 in {min(frozen_times):.2f}-{max(frozen_times):.2f} s, served again {frozen_recovery:.2f} s"
        f" after SIGCONT; stopped: 503 in {min(stopped_times):.3f}-{max(stopped_times):.3f} s, served again"
        f" {stopped_recovery:.2f} s after the restart"
    )
