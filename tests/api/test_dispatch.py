"""Dispatch: waves of offers pushed through (fake) FCM, their deadlines, declines, cancel, direct assignment,
back-outs, and what a technician sees of their offers. The app's in-process queue worker really runs the
wave deadlines and sends the pushes with the real firebase-admin SDK."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
from litestar.testing import AsyncTestClient

from tests.api.jobs_helpers import (
    count,
    event_types,
    eventually,
    get_job,
    has_push,
    job_when,
    offers_by_technician,
    parse,
    post_job,
    pushes,
    pushes_when,
    sleep_until,
    technician,
    wave,
)
from tests.fakes.fcm import FakeFcmServer, unregistered
from tests.helpers import new_org, onboard


def pending(job: dict) -> dict[str, dict]:
    return {t: o for t, o in offers_by_technician(job).items() if o["status"] == "pending"}


async def accept(client: AsyncTestClient, auth: dict, offer_id: str, **headers):
    return await client.post(f"/v1/offers/{offer_id}/accept", headers={**auth, **headers})


async def decline(client: AsyncTestClient, auth: dict, offer_id: str, reason: str | None = None):
    return await client.post(f"/v1/offers/{offer_id}/decline", json={"reason": reason}, headers=auth)


# --- offers and their pushes -----------------------------------------------------------------------------


async def test_an_asap_job_sends_each_eligible_technician_a_job_offer_push(
    client: AsyncTestClient, fcm: FakeFcmServer
) -> None:
    org = await new_org(client)
    uids = ["ana", "ben", "cem"]
    ids = {uid: (await technician(client, org, uid, km=i + 1))[0] for i, uid in enumerate(uids)}

    job = await post_job(client, org, waves=[wave(max_offers=10, offer_ttl_s=300)])

    offers = offers_by_technician(job)
    assert set(offers) == set(ids.values())
    assert {o["status"] for o in offers.values()} == {"pending"}
    await pushes_when(fcm, lambda seen: len(seen) >= 3)
    requests = {r.message["token"]: r.message for r in fcm.requests}
    assert set(requests) == {f"tok-{uid}" for uid in uids}
    for uid in uids:
        message = requests[f"tok-{uid}"]
        offer = offers[ids[uid]]
        data = message["data"]
        assert set(data) == {"type", "offer_id", "job_id", "expires_at"}
        assert all(isinstance(v, str) for v in data.values()), data
        assert data["type"] == "job_offer"
        assert data["offer_id"] == offer["id"]
        assert data["job_id"] == job["id"]
        assert parse(data["expires_at"]) == parse(offer["expires_at"])
        assert message["android"]["priority"] == "high"
        assert message["android"]["ttl"] == "300s"  # the offer's lifetime
        assert message["notification"]["title"], message  # a visible notification
    # The offer lives offer_ttl_s from posting.
    first = parse(job["events"][0]["at"])
    assert all(abs((parse(o["expires_at"]) - first).total_seconds() - 300) < 5 for o in offers.values())
    assert event_types(job) == ["posted", "wave_started"]


async def test_a_dead_device_token_is_dropped_when_fcm_answers_unregistered(
    client: AsyncTestClient, db: psycopg.Connection, fcm: FakeFcmServer
) -> None:
    org = await new_org(client)
    _, auth = await technician(client, org, "ana", km=1)
    response = await client.post("/v1/me/devices", json={"token": "tok-dead", "platform": "android"}, headers=auth)
    assert response.status_code == 201
    fcm.fail("tok-dead", unregistered())

    await post_job(client, org)

    await pushes_when(fcm, lambda seen: {t for t, _ in seen} >= {"tok-dead", "tok-ana"})

    async def dropped() -> bool:
        return count(db, "SELECT count(*) FROM devices WHERE token = 'tok-dead'") == 0

    await eventually(dropped, within=10, what="the unregistered device row to be deleted")
    assert count(db, "SELECT count(*) FROM devices WHERE token = 'tok-ana'") == 1


# --- waves -----------------------------------------------------------------------------------------------


async def test_cascade_offers_the_next_technician_when_an_offer_expires(
    client: AsyncTestClient, fcm: FakeFcmServer
) -> None:
    org = await new_org(client)
    ana, _ = await technician(client, org, "ana", km=1)
    ben, _ = await technician(client, org, "ben", km=2)
    cem, _ = await technician(client, org, "cem", km=3)

    job = await post_job(client, org, waves=[wave(max_offers=1, offer_ttl_s=1), wave(max_offers=1, offer_ttl_s=1)])
    assert list(offers_by_technician(job)) == [ana]
    first_offer = job["offers"][0]

    job = await job_when(client, org, job["id"], lambda j: ben in offers_by_technician(j))
    offers = offers_by_technician(job)
    assert offers[ana]["status"] == "expired"
    assert offers[ben]["wave"] == 2
    seen = await pushes_when(
        fcm,
        lambda s: (
            has_push("tok-ana", "offer_withdrawn", offer_id=first_offer["id"], job_id=job["id"])(s)
            and has_push("tok-ben", "job_offer", offer_id=offers[ben]["id"])(s)
        ),
    )
    assert [d["type"] for t, d in seen if t == "tok-ana"] == ["job_offer", "offer_withdrawn"]

    # Wave 2 expires too, and with no wave left the job is unfilled; the third technician was never asked.
    job = await job_when(client, org, job["id"], lambda j: j["status"] == "unfilled")
    offers = offers_by_technician(job)
    assert set(offers) == {ana, ben}
    assert cem not in offers
    assert {o["status"] for o in offers.values()} == {"expired"}
    assert event_types(job) == [
        "posted",
        "wave_started",
        "offers_expired",
        "wave_started",
        "offers_expired",
        "unfilled",
    ]
    assert not any(t == "tok-cem" for t, _ in pushes(fcm))


async def test_when_every_offer_of_a_wave_is_declined_the_next_wave_starts_at_once(
    client: AsyncTestClient, fcm: FakeFcmServer
) -> None:
    org = await new_org(client)
    ana, ana_auth = await technician(client, org, "ana", km=1)
    ben, ben_auth = await technician(client, org, "ben", km=2)
    cem, _ = await technician(client, org, "cem", km=3)

    job = await post_job(client, org, waves=[wave(max_offers=2, offer_ttl_s=600), wave(max_offers=10)])
    offers = offers_by_technician(job)
    assert set(offers) == {ana, ben}

    response = await decline(client, ana_auth, offers[ana]["id"], "too far")
    assert response.status_code == 200, response.text
    job = await get_job(client, org, job["id"])
    assert job["current_wave"] == 1  # ben has not answered yet
    assert set(pending(job)) == {ben}

    assert (await decline(client, ben_auth, offers[ben]["id"])).status_code == 200
    job = await get_job(client, org, job["id"])  # no waiting for the 600 s deadline
    assert job["status"] == "offering"
    assert job["current_wave"] == 2
    # Wave 2 may make 10 offers but only cem had none yet: nobody is asked twice.
    assert sorted((o["wave"], o["technician_id"], o["status"]) for o in job["offers"]) == sorted(
        [(1, ana, "declined"), (1, ben, "declined"), (2, cem, "pending")]
    )
    declined = [e for e in job["events"] if e["type"] == "declined"]
    assert [(e["data"]["technician_id"], e["data"]["reason"]) for e in declined] == [(ana, "too far"), (ben, None)]
    assert event_types(job)[-1] == "wave_started"
    assert job["events"][-1]["data"]["wave"] == 2
    await pushes_when(fcm, has_push("tok-cem", "job_offer", job_id=job["id"]))


async def test_tiered_dispatch_offers_preferred_first_then_everyone(client: AsyncTestClient) -> None:
    org = await new_org(client)
    preferred, preferred_auth = await technician(client, org, "pref", km=2)
    approved, _ = await technician(client, org, "appr", km=1, tier="approved")

    job = await post_job(client, org, waves=[wave(tiers=["preferred"]), wave(tiers=["preferred", "approved"])])
    assert list(offers_by_technician(job)) == [preferred]  # the closer approved member waits for wave 2

    assert (await decline(client, preferred_auth, job["offers"][0]["id"])).status_code == 200
    job = await get_job(client, org, job["id"])
    offers = offers_by_technician(job)
    assert set(offers) == {preferred, approved}
    assert offers[approved]["wave"] == 2
    assert offers[preferred]["status"] == "declined"


async def test_unfilled_job_can_be_restarted_and_an_offering_one_cannot(client: AsyncTestClient) -> None:
    org = await new_org(client)
    ana, ana_auth = await technician(client, org, "ana", km=1)

    job = await post_job(client, org, waves=[wave(max_offers=1), wave(max_offers=1)])
    assert (await decline(client, ana_auth, job["offers"][0]["id"])).status_code == 200
    job = await get_job(client, org, job["id"])
    assert job["status"] == "unfilled"  # wave 2 had nobody left to ask
    assert event_types(job)[-2:] == ["wave_empty", "unfilled"]

    # Restarting with nobody new: every wave is empty again, ana is not asked a second time.
    response = await client.post(f"/v1/jobs/{job['id']}/dispatch", headers=org)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "unfilled"
    assert [o["technician_id"] for o in response.json()["offers"]] == [ana]

    # Someone new joins: a restart offers them the job in wave 1.
    ben, _ = await technician(client, org, "ben", km=2)
    response = await client.post(f"/v1/jobs/{job['id']}/dispatch", headers=org)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "offering"
    assert pending(job)[ben]["wave"] == 1
    assert "dispatch_started" in event_types(job)

    again = await client.post(f"/v1/jobs/{job['id']}/dispatch", headers=org)
    assert again.status_code == 409, again.text
    assert len((await get_job(client, org, job["id"]))["offers"]) == 2


async def test_a_restarted_wave_keeps_its_own_deadline(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    _, ana_auth = await technician(client, org, "ana", km=1)
    job = await post_job(client, org, waves=[wave(max_offers=1, offer_ttl_s=6)])
    first_deadline = parse(job["offers"][0]["expires_at"])
    assert (await decline(client, ana_auth, job["offers"][0]["id"])).status_code == 200
    assert (await get_job(client, org, job["id"]))["status"] == "unfilled"

    # Restart 3 s into the first run's 6 s wave, so that the two deadlines are 3 s apart.
    await sleep_until(first_deadline, extra_s=-3)
    ben, ben_auth = await technician(client, org, "ben", km=2)
    restarted = await client.post(f"/v1/jobs/{job['id']}/dispatch", headers=org)
    assert restarted.status_code == 200, restarted.text
    offer = pending(restarted.json())[ben]
    second_deadline = parse(offer["expires_at"])
    assert second_deadline > first_deadline

    # The first run's deadline comes and its close_wave runs (done, the queue forgets it), wave 1 again...
    async def first_deadline_done() -> bool:
        return not count(
            db,
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'close_wave' AND args->>'job_id' = %s "
            "AND scheduled_at < %s",
            job["id"],
            second_deadline,
        )

    await eventually(first_deadline_done, within=10, what="the first run's deadline to be closed")
    # ... and leaves ben's offer of the new wave 1 alone: it is still there to accept.
    assert datetime.now(UTC) < second_deadline, "too slow to tell: ben's own deadline passed meanwhile"
    assert offers_by_technician(await get_job(client, org, job["id"]))[ben]["status"] == "pending"
    response = await accept(client, ben_auth, offer["id"])
    assert response.status_code == 200, response.text


# --- cancel and direct assignment ---------------------------------------------------------------------


async def test_cancel_withdraws_pending_offers_and_tells_the_phones(
    client: AsyncTestClient, fcm: FakeFcmServer
) -> None:
    org = await new_org(client)
    ana, ana_auth = await technician(client, org, "ana", km=1)
    ben, _ = await technician(client, org, "ben", km=2)
    job = await post_job(client, org)
    offers = offers_by_technician(job)
    await pushes_when(fcm, lambda seen: len(seen) >= 2)

    response = await client.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "customer fixed it"}, headers=org)

    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "cancelled"
    assert {o["status"] for o in job["offers"]} == {"withdrawn"}
    assert job["events"][-1]["type"] == "cancelled"
    assert job["events"][-1]["data"]["reason"] == "customer fixed it"
    await pushes_when(
        fcm,
        lambda s: (
            has_push("tok-ana", "offer_withdrawn", offer_id=offers[ana]["id"], job_id=job["id"])(s)
            and has_push("tok-ben", "offer_withdrawn", offer_id=offers[ben]["id"], job_id=job["id"])(s)
        ),
    )
    withdrawn = [d for _, d in pushes(fcm) if d["type"] == "offer_withdrawn"]
    assert all(set(d) == {"type", "offer_id", "job_id"} for d in withdrawn)

    again = await client.post(f"/v1/jobs/{job['id']}/cancel", json={}, headers=org)
    assert again.status_code == 409, again.text
    # A withdrawn offer cannot be accepted.
    late = await accept(client, ana_auth, offers[ana]["id"])
    assert late.status_code == 409, late.text
    assert (await get_job(client, org, job["id"]))["technician"] is None


async def test_direct_assignment_of_eligible_ineligible_and_unknown_technicians(
    client: AsyncTestClient, fcm: FakeFcmServer
) -> None:
    org, other_org = await new_org(client, "Acme"), await new_org(client, "Beta")
    ana, _ = await technician(client, org, "ana", km=1)
    ben, _ = await technician(client, org, "ben", km=2)
    unskilled, _ = await technician(client, org, "unskilled", km=1, skills=["electrical"])
    stranger = (await onboard(client, other_org, "stranger"))["id"]
    job = await post_job(client, org)
    offers = offers_by_technician(job)
    assert set(offers) == {ana, ben}

    refused = await client.post(f"/v1/jobs/{job['id']}/assign", json={"technician_id": unskilled}, headers=org)
    assert refused.status_code == 409, refused.text
    assert refused.json()["extra"]["reasons"] == ["missing_skill:hvac"]
    for unknown in (stranger, str(uuid.uuid4())):
        response = await client.post(f"/v1/jobs/{job['id']}/assign", json={"technician_id": unknown}, headers=org)
        assert response.status_code == 404, response.text
    assert (await get_job(client, org, job["id"]))["status"] == "offering"

    response = await client.post(f"/v1/jobs/{job['id']}/assign", json={"technician_id": ben}, headers=org)

    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "assigned"
    assert job["technician"] == {"id": ben, "name": "Tech ben"}
    assert offers_by_technician(job)[ana]["status"] == "withdrawn"
    assert not pending(job)
    assigned = [e for e in job["events"] if e["type"] == "assigned"]
    assert [e["data"]["technician_id"] for e in assigned] == [ben]
    await pushes_when(
        fcm,
        lambda s: (
            has_push("tok-ben", "job_assigned", job_id=job["id"])(s)
            and has_push("tok-ana", "offer_withdrawn", offer_id=offers[ana]["id"])(s)
        ),
    )
    assert not any(d["type"] == "job_assigned" for t, d in pushes(fcm) if t != "tok-ben")

    again = await client.post(f"/v1/jobs/{job['id']}/assign", json={"technician_id": ana}, headers=org)
    assert again.status_code == 409, again.text


# --- back-out -----------------------------------------------------------------------------------------


async def test_backing_out_resumes_with_the_next_wave_and_never_reoffers(client: AsyncTestClient) -> None:
    org = await new_org(client)
    ana, ana_auth = await technician(client, org, "ana", km=1)
    ben, ben_auth = await technician(client, org, "ben", km=2)
    job = await post_job(client, org, waves=[wave(max_offers=1), wave(max_offers=1), wave(max_offers=5)])
    offer = job["offers"][0]
    assert offer["technician_id"] == ana

    accepted = await accept(client, ana_auth, offer["id"])
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "assigned"
    assert (await get_job(client, org, job["id"]))["technician"]["id"] == ana

    # Only the assigned technician may back out.
    stranger = await client.post(f"/v1/jobs/{job['id']}/back-out", json={"reason": "not mine"}, headers=ben_auth)
    assert stranger.status_code == 404, stranger.text

    response = await client.post(f"/v1/jobs/{job['id']}/back-out", json={"reason": "van broke down"}, headers=ana_auth)

    assert response.status_code == 200, response.text
    job = await get_job(client, org, job["id"])
    assert job["status"] == "offering"
    assert job["technician"] is None
    assert job["current_wave"] == 2
    offers = offers_by_technician(job)
    assert offers[ana]["status"] == "accepted"
    assert (offers[ben]["wave"], offers[ben]["status"]) == (2, "pending")
    backed = [e for e in job["events"] if e["type"] == "backed_out"]
    assert [(e["data"]["technician_id"], e["data"]["reason"]) for e in backed] == [(ana, "van broke down")]
    assert (await client.get("/v1/me/offers", headers=ana_auth)).json()["items"] == []

    # ben declines: wave 3 could offer 5, but the only one left is ana, who backed out: unfilled.
    assert (await decline(client, ben_auth, offers[ben]["id"])).status_code == 200
    job = await get_job(client, org, job["id"])
    assert job["status"] == "unfilled"
    assert len(job["offers"]) == 2


async def test_backing_out_of_a_direct_assignment_never_reoffers_to_them(client: AsyncTestClient) -> None:
    org = await new_org(client)
    ana, ana_auth = await technician(client, org, "ana", km=1)
    ben, _ = await technician(client, org, "ben", km=2)
    job = await post_job(client, org, auto=False)
    assigned = await client.post(f"/v1/jobs/{job['id']}/assign", json={"technician_id": ana}, headers=org)
    assert assigned.status_code == 200, assigned.text

    response = await client.post(f"/v1/jobs/{job['id']}/back-out", json={"reason": "sick"}, headers=ana_auth)
    assert response.status_code == 200, response.text

    job = await get_job(client, org, job["id"])
    assert job["status"] == "offering"
    assert offers_by_technician(job)[ben]["status"] == "pending"
    # The direct assignment stays on record as Ana's accepted offer outside the waves; she gets no new one.
    assert offers_by_technician(job)[ana]["status"] == "accepted"
    assert offers_by_technician(job)[ana]["wave"] == 0
    assert (await client.get("/v1/me/offers", headers=ana_auth)).json()["items"] == []


# --- accepting and declining --------------------------------------------------------------------------


async def test_offer_answers_that_cannot_win(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    ana, ana_auth = await technician(client, org, "ana", km=1)
    ben, ben_auth = await technician(client, org, "ben", km=2)
    job = await post_job(client, org)
    offers = offers_by_technician(job)

    # Someone else's offer: 404, and nothing changes.
    assert (await accept(client, ana_auth, offers[ben]["id"])).status_code == 404
    assert (await decline(client, ana_auth, offers[ben]["id"])).status_code == 404
    assert (await accept(client, ana_auth, str(uuid.uuid4()))).status_code == 404
    # An organisation key is not a technician's credential.
    assert (await accept(client, org, offers[ana]["id"])).status_code == 403

    # Declined, then accepted: 409.
    assert (await decline(client, ben_auth, offers[ben]["id"])).status_code == 200
    late = await accept(client, ben_auth, offers[ben]["id"])
    assert late.status_code == 409, late.text
    assert (await decline(client, ben_auth, offers[ben]["id"])).status_code == 409

    # The winner's accept is idempotent with a key: the replay answers the same bytes.
    first = await accept(client, ana_auth, offers[ana]["id"], **{"Idempotency-Key": "accept-1"})
    replay = await accept(client, ana_auth, offers[ana]["id"], **{"Idempotency-Key": "accept-1"})
    assert first.status_code == 200, first.text
    assert (replay.status_code, replay.content) == (first.status_code, first.content)
    job = await get_job(client, org, job["id"])
    assert job["status"] == "assigned"
    assert job["technician"]["id"] == ana
    assert event_types(job)[-2:] == ["accepted", "assigned"]
    assert count(db, "SELECT count(*) FROM offers WHERE status = 'accepted'") == 1


async def test_my_offers_lists_pending_offers_and_an_expired_one_cannot_be_accepted(
    client: AsyncTestClient,
) -> None:
    org = await new_org(client)
    _, auth = await technician(client, org, "ana", km=1)
    short = await post_job(client, org, title="Short-lived", waves=[wave(offer_ttl_s=2)])
    long = await post_job(client, org, title="Long-lived", waves=[wave(offer_ttl_s=600)])
    short_offer, long_offer = short["offers"][0], long["offers"][0]

    listed = await client.get("/v1/me/offers", headers=auth)
    assert listed.status_code == 200, listed.text
    items = {item["id"]: item for item in listed.json()["items"]}
    assert set(items) == {short_offer["id"], long_offer["id"]}
    item = items[long_offer["id"]]
    assert item["job"]["id"] == long["id"]
    assert item["job"]["title"] == "Long-lived"
    assert item["job"]["skills"] == ["hvac"]
    assert item["job"]["location"] == long["location"]
    assert item["job"]["window"] == long["window"]
    assert item["job"]["address"] == long["address"]
    assert item["job"]["pay"] == {"amount": 120.0, "currency": "EUR"}
    assert abs(item["distance_m"] - 1000) < 15
    assert parse(item["expires_at"]) == parse(long_offer["expires_at"])
    assert "customer" not in item["job"]

    # Once the short offer's time is up it is no longer listed, and accepting it is a conflict: the moment
    # is the event waited for (the queue's close_wave, run later, need not have expired it yet).
    await sleep_until(parse(short_offer["expires_at"]), extra_s=0.05)
    listed = (await client.get("/v1/me/offers", headers=auth)).json()["items"]
    assert [i["id"] for i in listed] == [long_offer["id"]]
    expired = await accept(client, auth, short_offer["id"])
    assert expired.status_code == 409, expired.text
    short_job = await job_when(client, org, short["id"], lambda j: j["status"] == "unfilled")
    assert short_job["offers"][0]["status"] == "expired"
    assert short_job["technician"] is None
    assert (await accept(client, auth, short_offer["id"])).status_code == 409
