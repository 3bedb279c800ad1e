"""`truckroll simulate` as an end-to-end test: a short run against the app in-process, over real HTTP
semantics (httpx over ASGI on the app's own loop), checked against the database."""

from __future__ import annotations

import time

import httpx
import psycopg
from litestar.testing import AsyncTestClient

from backend.auth import emulator_id_token
from simulator import Options, Summary, run_simulation
from tests.api.jobs_helpers import in_app_loop
from tests.helpers import PROJECT_ID, new_org


async def test_simulation_posts_fills_and_completes_jobs(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client, "Simulated Dispatch")
    api_key = org["Authorization"].removeprefix("Bearer ")
    options = Options(
        api_key=api_key,
        id_token=lambda uid: emulator_id_token(uid, PROJECT_ID),
        technicians=5,
        jobs_per_minute=30,  # one every ~2 s
        duration_s=20,
        seed=3,
        city_radius_km=4,
        speed_up=300,
        decision_delay_s=(0.2, 1.0),
        decline_rate=0.2,
        poll_s=(0.5, 1.0),
        ping_every_s=1.0,
        on_site_s=(0.3, 1.0),
        report_every_s=5,
        report=None,
    )

    async def simulate(http: httpx.AsyncClient) -> Summary:
        return await run_simulation(http, options)

    started = time.monotonic()
    summary = await in_app_loop(client, simulate)
    assert time.monotonic() - started < 45

    assert summary.technicians == 5
    assert summary.posted >= 1
    assert summary.filled >= 1
    assert summary.completed >= 1, summary
    assert summary.errors == 0, summary
    assert summary.median_time_to_fill_s is not None
    assert summary.eta_errors_s, "the customer's link showed an ETA when a technician set off"

    org_id = db.execute("SELECT id FROM organizations WHERE name = 'Simulated Dispatch'").fetchone()[0]
    jobs = dict(db.execute("SELECT id::text, status FROM jobs WHERE org_id = %s", (org_id,)).fetchall())
    assert sorted(jobs) == sorted(summary.job_ids)
    assert summary.posted == len(jobs)
    completed = {j for j, s in jobs.items() if s == "completed"}
    assert completed == summary.completed_ids
    filled = {j for j, s in jobs.items() if s in ("assigned", "en_route", "on_site", "completed")}
    assert filled == summary.filled_ids
    unfilled = {j for j, s in jobs.items() if s == "unfilled"}
    # The queue worker may still close a wave after the last look (dispatch runs in the background).
    assert summary.unfilled_ids <= unfilled

    for job_id in completed:
        events = [r[0] for r in db.execute("SELECT type FROM job_events WHERE job_id = %s", (job_id,)).fetchall()]
        assert {"en_route", "checked_in", "completed"} <= set(events), events

    technicians = db.execute("SELECT firebase_uid FROM technicians ORDER BY firebase_uid").fetchall()
    assert [t[0] for t in technicians] == [f"sim-3-{i}" for i in range(5)]
