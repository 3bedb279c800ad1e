"""Exactly one accept per job wins, however many technicians accept at the same moment.

The 50 accepts run concurrently on the application's own event loop (httpx over ASGI), so each request
holds its own database session and connection from the app's pool, as in production."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from tests.api.jobs_helpers import SITE, get_job, in_app_loop, job_body, north, pushes_when, wave
from tests.fakes.fcm import FakeFcmServer
from tests.helpers import new_org, technician_auth, technician_body

TECHNICIANS = 50
ROUNDS = 3


async def onboard_pool(client: AsyncTestClient, org: dict) -> dict[str, str]:
    """50 technicians based within 5 km of the site, each with a device; returns uid -> technician id."""

    async def setup(http: httpx.AsyncClient) -> dict[str, str]:
        async def one(i: int) -> tuple[str, str]:
            uid = f"racer-{i:02d}"
            body = technician_body(uid, name=f"Racer {i}", skills=["hvac"], home=north(i * 0.1, SITE))
            response = await http.post("/v1/technicians", json=body, headers=org)
            assert response.status_code == 201, response.text
            device = await http.post(
                "/v1/me/devices", json={"token": f"tok-{uid}", "platform": "android"}, headers=technician_auth(uid)
            )
            assert device.status_code == 201, device.text
            return uid, response.json()["id"]

        return dict(await asyncio.gather(*(one(i) for i in range(TECHNICIANS))))

    return await in_app_loop(client, setup)


async def accept_all_at_once(client: AsyncTestClient, offers: dict[str, str]) -> dict[str, httpx.Response]:
    """uid -> offer id; every accept waits at a gate, then all are released together."""

    async def race(http: httpx.AsyncClient) -> dict[str, httpx.Response]:
        gate = asyncio.Event()

        async def one(uid: str, offer_id: str) -> httpx.Response:
            headers = technician_auth(uid)
            await gate.wait()
            return await http.post(f"/v1/offers/{offer_id}/accept", headers=headers)

        tasks = {uid: asyncio.create_task(one(uid, offer_id)) for uid, offer_id in offers.items()}
        await asyncio.sleep(0.05)  # every task is parked at the gate
        gate.set()
        await asyncio.gather(*tasks.values())
        return {uid: task.result() for uid, task in tasks.items()}

    return await in_app_loop(client, race)


async def test_exactly_one_of_fifty_simultaneous_accepts_wins(
    client: AsyncTestClient, db: psycopg.Connection, fcm: FakeFcmServer
) -> None:
    org = await new_org(client)
    ids = await onboard_pool(client, org)
    uid_of = {technician_id: uid for uid, technician_id in ids.items()}
    winners: list[str] = []

    for round_ in range(ROUNDS):
        # Later jobs (measured from home, duty ignored) with disjoint windows: last round's winner is not busy.
        start = 180 + round_ * 120
        body = job_body(start_in_min=start, hours=1, title=f"Race {round_}", waves=[wave(max_offers=50)])
        response = await client.post("/v1/jobs", json=body, headers=org)
        assert response.status_code == 201, response.text
        job = response.json()
        offers = {uid_of[o["technician_id"]]: o["id"] for o in job["offers"]}
        assert len(offers) == TECHNICIANS, f"round {round_}: {len(offers)} offers"

        responses = await accept_all_at_once(client, offers)

        statuses = Counter(r.status_code for r in responses.values())
        assert statuses == {200: 1, 409: TECHNICIANS - 1}, (
            f"round {round_}: {statuses}; e.g. "
            + "; ".join(r.text[:200] for r in responses.values() if r.status_code not in (200, 409))[:600]
        )
        (winner,) = [uid for uid, r in responses.items() if r.status_code == 200]
        winners.append(winner)
        assert responses[winner].json()["status"] == "assigned"
        assert responses[winner].json()["id"] == job["id"]

        # One assignment, one accepted offer, every other offer withdrawn.
        row = db.execute("SELECT status, technician_id::text FROM jobs WHERE id = %s", (job["id"],)).fetchone()
        assert row == ("assigned", ids[winner])
        by_status = dict(
            db.execute("SELECT status, count(*) FROM offers WHERE job_id = %s GROUP BY status", (job["id"],)).fetchall()
        )
        assert by_status == {"accepted": 1, "withdrawn": TECHNICIANS - 1}
        accepted = db.execute(
            "SELECT technician_id::text FROM offers WHERE job_id = %s AND status = 'accepted'", (job["id"],)
        ).fetchone()[0]
        assert accepted == ids[winner]
        seen = await get_job(client, org, job["id"])
        assert seen["technician"]["id"] == ids[winner]
        assert [e["type"] for e in seen["events"]].count("accepted") == 1

        # Every other offeree's phone is told the offer is gone; the winner's is not.
        losers = {f"tok-{uid}": offer_id for uid, offer_id in offers.items() if uid != winner}

        def all_told(pushes: list[tuple[str, dict]], losers=losers, job_id=job["id"]) -> bool:
            told = {
                t
                for t, d in pushes
                if d.get("type") == "offer_withdrawn" and d.get("job_id") == job_id and losers.get(t) == d["offer_id"]
            }
            return told == set(losers)

        seen_pushes = await pushes_when(fcm, all_told, within=20)
        assert not any(
            t == f"tok-{winner}" and d.get("type") == "offer_withdrawn" and d.get("job_id") == job["id"]
            for t, d in seen_pushes
        )

    assert len(winners) == ROUNDS


# --- the connection pool under concurrency ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        None,
        "squeezed-1",
    ],
    ids=["no-key", "idempotency-key"],
)
async def test_a_post_completes_with_a_single_free_pool_connection(client: AsyncTestClient, key: str | None) -> None:
    """Each request should need one pooled connection at a time. Hold all but one of the app's pool
    connections and post a job: it must complete (3 s bound) instead of waiting for a second connection."""
    org = await new_org(client)
    body = job_body(auto=False)
    headers = {**org, **({"Idempotency-Key": key} if key else {})}

    async def squeeze(http: httpx.AsyncClient) -> tuple[bool, int]:
        engine = client.app.state.engine
        capacity = engine.pool.size() + engine.pool._max_overflow
        held = []
        try:
            for _ in range(capacity - 1):
                connection = await engine.connect()
                await connection.exec_driver_sql("SELECT 1")
                held.append(connection)
            request = asyncio.ensure_future(http.post("/v1/jobs", json=body, headers=headers))
            done, _ = await asyncio.wait({request}, timeout=3)
        finally:
            for connection in held:
                await connection.close()
        response = await request  # with the pool free again it finishes either way
        return bool(done), response.status_code

    finished_in_time, status = await in_app_loop(client, squeeze)
    assert status == 201
    assert finished_in_time, "the request waited for a second pooled connection"
