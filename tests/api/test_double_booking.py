"""A technician holds one job at a time: accepting (or being assigned) a job whose window overlaps an active
job of theirs is refused with 409 `busy`, one after the other and at the same moment; and a technician who is no
longer active in the pool cannot accept what was offered before."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from litestar.testing import AsyncTestClient

from tests.api.jobs_helpers import in_app_loop, post_job, technician, wave
from tests.helpers import new_org


async def accept(client, auth: dict, offer_id: str) -> httpx.Response:
    return await client.post(f"/v1/offers/{offer_id}/accept", headers=auth)


def offer_of(job: dict, technician_id: str) -> str:
    [offer] = [o["id"] for o in job["offers"] if o["technician_id"] == technician_id]
    return offer


BASE = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)


def window(start_h: float, end_h: float) -> dict:
    return {"start": (BASE + timedelta(hours=start_h)).isoformat(), "end": (BASE + timedelta(hours=end_h)).isoformat()}


async def two_offers(client, org: dict, ana: str, *, second: tuple[float, float] = (1, 3)) -> tuple[dict, dict]:
    """Two later jobs offered to Ana: 0..2 h after BASE, and a second one at `second` (hours after BASE)."""
    first = await post_job(client, org, waves=[wave()], window=window(0, 2))
    other = await post_job(client, org, waves=[wave()], window=window(*second), title="Second")
    assert offer_of(first, ana) and offer_of(other, ana)
    return first, other


async def test_accepting_a_job_that_overlaps_one_already_accepted_is_409_busy(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    ana, auth = await technician(client, org, "ana")
    first, second = await two_offers(client, org, ana)

    assert (await accept(client, auth, offer_of(first, ana))).status_code == 200
    refused = await accept(client, auth, offer_of(second, ana))

    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"].startswith("busy")
    assert refused.json()["extra"]["reasons"] == ["busy"]
    status = db.execute("SELECT status, technician_id FROM jobs WHERE id = %s", (second["id"],)).fetchone()
    assert status == ("offering", None)


async def test_a_job_that_starts_when_the_other_ends_is_not_an_overlap(client: AsyncTestClient) -> None:
    org = await new_org(client)
    ana, auth = await technician(client, org, "ana")
    first, touching = await two_offers(client, org, ana, second=(2, 4))  # starts as the first ends
    _, overlapping = await two_offers(client, org, ana, second=(2 - 1 / 3600, 4))  # one second earlier

    assert (await accept(client, auth, offer_of(first, ana))).status_code == 200
    assert (await accept(client, auth, offer_of(overlapping, ana))).status_code == 409
    assert (await accept(client, auth, offer_of(touching, ana))).status_code == 200


async def test_two_overlapping_offers_accepted_at_the_same_moment_give_one_job(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    ana, auth = await technician(client, org, "ana")
    for _ in range(3):
        first, second = await two_offers(client, org, ana)

        async def race(http: httpx.AsyncClient, first=first, second=second) -> list[httpx.Response]:
            return await asyncio.gather(
                http.post(f"/v1/offers/{offer_of(first, ana)}/accept", headers=auth),
                http.post(f"/v1/offers/{offer_of(second, ana)}/accept", headers=auth),
            )

        responses = await in_app_loop(client, race)

        assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
        held = db.execute(
            "SELECT count(*) FROM jobs WHERE technician_id = %s AND id IN (%s, %s)", (ana, first["id"], second["id"])
        ).fetchone()[0]
        assert held == 1
        # Free Ana for the next round.
        db.execute("UPDATE jobs SET status = 'cancelled' WHERE technician_id = %s", (ana,))


async def test_a_technician_deactivated_after_the_offer_cannot_accept_it(client: AsyncTestClient) -> None:
    org = await new_org(client)
    ana, auth = await technician(client, org, "ana")
    job = await post_job(client, org, waves=[wave()])
    offer_id = offer_of(job, ana)

    deactivated = await client.patch(f"/v1/technicians/{ana}", json={"active": False}, headers=org)
    assert deactivated.status_code == 200, deactivated.text
    refused = await accept(client, auth, offer_id)

    assert refused.status_code == 409, refused.text
    seen = (await client.get(f"/v1/jobs/{job['id']}", headers=org)).json()
    # Ana was the wave's only offeree: with her offer withdrawn and no wave left, the job is unfilled.
    assert seen["status"] == "unfilled" and seen["technician"] is None
    # Deactivating withdrew the pending offer: it is no longer among the technician's offers.
    assert [o["status"] for o in seen["offers"] if o["technician_id"] == ana] == ["withdrawn"]
    assert (await client.get("/v1/me/offers", headers=auth)).json()["items"] == []
