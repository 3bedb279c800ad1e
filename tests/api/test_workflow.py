"""On site: the assigned technician goes en route, checks in (geofenced) and completes; each step only from
the right state and only by the assigned technician, each on the job's timeline."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from tests.api.jobs_helpers import SITE, event_types, get_job, north, post_job, technician
from tests.helpers import new_org

EARTH_RADIUS_M = 6_371_008.8


def metres_north(metres: float) -> dict:
    """A point `metres` due north of the job site along the meridian (great-circle distance exactly)."""
    return {"lat": SITE["lat"] + math.degrees(metres / EARTH_RADIUS_M), "lon": SITE["lon"]}


async def assigned_job(client: AsyncTestClient, org: dict, uid: str = "ana", **job) -> tuple[dict, str, dict]:
    """A job directly assigned to a fresh technician `uid` 1 km away: (job, technician id, auth)."""
    technician_id, auth = await technician(client, org, uid, km=1, name=f"{uid.title()} Albrecht")
    posted = await post_job(client, org, auto=False, **job)
    response = await client.post(f"/v1/jobs/{posted['id']}/assign", json={"technician_id": technician_id}, headers=org)
    assert response.status_code == 200, response.text
    return posted, technician_id, auth


async def en_route(client: AsyncTestClient, auth: dict, job_id: str, **headers):
    return await client.post(f"/v1/jobs/{job_id}/en-route", headers={**auth, **headers})


async def check_in(client: AsyncTestClient, auth: dict, job_id: str, position: dict | None = None, accuracy_m=10.0):
    body = {**(position or SITE), "accuracy_m": accuracy_m}
    return await client.post(f"/v1/jobs/{job_id}/check-in", json=body, headers=auth)


async def complete(client: AsyncTestClient, auth: dict, job_id: str, notes: str | None = None):
    body = {"notes": notes} if notes is not None else None
    return await client.post(f"/v1/jobs/{job_id}/complete", json=body, headers=auth)


def events(job: dict, type_: str) -> list[dict]:
    return [e["data"] for e in job["events"] if e["type"] == type_]


# --- the way through ------------------------------------------------------------------------------------


async def test_en_route_check_in_and_complete_each_move_the_job_and_land_on_its_timeline(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    job, ana, auth = await assigned_job(client, org)

    response = await en_route(client, auth, job["id"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "en_route"
    assert response.json()["id"] == job["id"]

    response = await check_in(client, auth, job["id"], metres_north(40), accuracy_m=12)
    assert response.status_code == 200, response.text
    checked = response.json()
    assert checked["geofence"] == "verified"
    assert checked["distance_m"] == pytest.approx(40, abs=0.5)
    assert checked["radius_m"] == 150
    assert checked["job"]["status"] == "on_site"

    response = await complete(client, auth, job["id"], notes="replaced the ignition board")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"

    job = await get_job(client, org, job["id"])
    assert job["status"] == "completed"
    assert event_types(job)[-4:] == ["assigned", "en_route", "checked_in", "completed"]
    assert events(job, "en_route") == [{"technician_id": ana}]
    [checked_in] = events(job, "checked_in")
    assert checked_in["technician_id"] == ana
    assert checked_in["geofence"] == "verified"
    assert checked_in["distance_m"] == pytest.approx(40, abs=0.5)
    assert checked_in["accuracy_m"] == 12
    assert (checked_in["lat"], checked_in["lon"]) == pytest.approx((metres_north(40)["lat"], SITE["lon"]))
    assert events(job, "completed") == [{"technician_id": ana, "notes": "replaced the ignition board"}]
    assert "flagged" not in event_types(job)
    completed_at = db.execute("SELECT completed_at FROM jobs WHERE id = %s", (job["id"],)).fetchone()[0]
    assert abs((datetime.now(UTC) - completed_at).total_seconds()) < 30
    # The technician's own list shows the job done.
    mine = (await client.get("/v1/me/jobs", headers=auth)).json()["items"]
    assert [(j["id"], j["status"]) for j in mine] == [(job["id"], "completed")]


async def test_my_jobs_come_in_pages_most_recent_window_first(client: AsyncTestClient) -> None:
    org = await new_org(client)
    technician_id, auth = await technician(client, org, "ana", km=1)
    assigned = []
    for hours in (1, 5, 3):  # posted out of window order
        posted = await post_job(client, org, auto=False, start_in_min=hours * 60, hours=1)
        response = await client.post(
            f"/v1/jobs/{posted['id']}/assign", json={"technician_id": technician_id}, headers=org
        )
        assert response.status_code == 200, response.text
        assigned.append((hours, posted["id"]))
    expected = [job_id for _, job_id in sorted(assigned, reverse=True)]

    first = (await client.get("/v1/me/jobs?limit=2", headers=auth)).json()
    assert [j["id"] for j in first["items"]] == expected[:2]
    assert first["next_cursor"]
    rest = (await client.get(f"/v1/me/jobs?limit=2&cursor={first['next_cursor']}", headers=auth)).json()
    assert [j["id"] for j in rest["items"]] == expected[2:]
    assert rest["next_cursor"] is None
    assert (await client.get("/v1/me/jobs?limit=500", headers=auth)).status_code == 400


async def test_a_technician_who_forgot_en_route_can_still_check_in(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)

    response = await check_in(client, auth, job["id"])

    assert response.status_code == 200, response.text
    job = await get_job(client, org, job["id"])
    assert job["status"] == "on_site"
    assert event_types(job)[-2:] == ["assigned", "checked_in"]


async def test_complete_without_a_body_records_no_notes(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, ana, auth = await assigned_job(client, org)
    assert (await check_in(client, auth, job["id"])).status_code == 200

    response = await client.post(f"/v1/jobs/{job['id']}/complete", headers=auth)

    assert response.status_code == 200, response.text
    assert events(await get_job(client, org, job["id"]), "completed") == [{"technician_id": ana, "notes": None}]


# --- the wrong state, the wrong technician ----------------------------------------------------------------


# What each step would have made of the job: the 409 names it beside the job's current status.
WANTED = {"en_route": "en_route", "check_in": "on_site", "complete": "completed"}


def assert_conflict(response, status: str) -> None:
    assert response.status_code == 409, response.text
    body = response.json()
    assert status in body["detail"], body
    step = response.url.path.rsplit("/", 1)[-1].replace("-", "_")
    assert body["extra"] == {"status": status, "wanted": WANTED[step]}


async def test_each_step_is_refused_from_the_wrong_state_naming_the_current_one(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)
    job_id = job["id"]

    assert_conflict(await complete(client, auth, job_id), "assigned")

    assert (await en_route(client, auth, job_id)).status_code == 200
    assert_conflict(await en_route(client, auth, job_id), "en_route")
    assert_conflict(await complete(client, auth, job_id), "en_route")

    assert (await check_in(client, auth, job_id)).status_code == 200
    assert_conflict(await en_route(client, auth, job_id), "on_site")
    assert_conflict(await check_in(client, auth, job_id), "on_site")

    assert (await complete(client, auth, job_id)).status_code == 200
    for step in (en_route, check_in, complete):
        assert_conflict(await step(client, auth, job_id), "completed")

    # None of the refusals changed anything or reached the timeline.
    job = await get_job(client, org, job_id)
    assert job["status"] == "completed"
    assert event_types(job)[-4:] == ["assigned", "en_route", "checked_in", "completed"]
    assert event_types(job).count("checked_in") == 1


async def test_a_cancelled_job_refuses_every_step(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)
    assert (await en_route(client, auth, job["id"])).status_code == 200
    assert (await client.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "fixed itself"}, headers=org)).is_success

    for step in (en_route, check_in, complete):
        assert_conflict(await step(client, auth, job["id"]), "cancelled")
    assert (await get_job(client, org, job["id"]))["status"] == "cancelled"


async def test_only_the_assigned_technician_sees_the_job_others_get_404(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, _, ana_auth = await assigned_job(client, org, "ana")
    _, ben_auth = await technician(client, org, "ben", km=2)
    elsewhere = await new_org(client, "Elsewhere Ltd")
    _, cem_auth = await technician(client, elsewhere, "cem", km=2)

    for auth in (ben_auth, cem_auth):
        for step in (en_route, check_in, complete):
            response = await step(client, auth, job["id"])
            assert response.status_code == 404, (step.__name__, response.text)
    for step in (en_route, check_in, complete):
        assert (await step(client, ana_auth, str(uuid.uuid4()))).status_code == 404
    # An organisation's key is not a technician's credential.
    assert (await en_route(client, org, job["id"])).status_code == 403

    job = await get_job(client, org, job["id"])
    assert job["status"] == "assigned"
    assert event_types(job)[-1] == "assigned"


async def test_a_job_still_being_offered_is_nobodys_to_start(client: AsyncTestClient) -> None:
    org = await new_org(client)
    _, auth = await technician(client, org, "ana", km=1)
    job = await post_job(client, org)
    assert job["status"] == "offering"

    for step in (en_route, check_in, complete):
        assert (await step(client, auth, job["id"])).status_code == 404


async def test_a_technician_who_backed_out_can_no_longer_start_the_job(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)
    assert (await en_route(client, auth, job["id"])).status_code == 200
    response = await client.post(f"/v1/jobs/{job['id']}/back-out", json={"reason": "flat tyre"}, headers=auth)
    assert response.status_code == 200, response.text

    assert (await check_in(client, auth, job["id"])).status_code == 404


# --- the geofence ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metres", "accuracy_m", "expected", "radius"),
    [
        (149, 10, "verified", 150),
        (151, 10, "outside", 150),
        (400, 500, "verified", 500),  # a poor fix widens the fence to its accuracy
        (501, 500, "outside", 500),
        (0, 0, "verified", 150),
    ],
)
async def test_check_in_is_verified_within_max_150_m_and_accuracy(
    client: AsyncTestClient, metres: float, accuracy_m: float, expected: str, radius: float
) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)
    assert (await en_route(client, auth, job["id"])).status_code == 200

    response = await check_in(client, auth, job["id"], metres_north(metres), accuracy_m=accuracy_m)

    assert response.status_code == 200, response.text  # outside is recorded, never refused
    assert response.json()["geofence"] == expected
    assert response.json()["distance_m"] == pytest.approx(metres, abs=0.2)
    assert response.json()["radius_m"] == radius
    job = await get_job(client, org, job["id"])
    assert job["status"] == "on_site"
    [checked_in] = events(job, "checked_in")
    assert checked_in["geofence"] == expected
    flags = events(job, "flagged")
    if expected == "outside":
        assert flags == [
            {"reason": "check_in_outside_geofence", "distance_m": checked_in["distance_m"], "radius_m": radius}
        ]
    else:
        assert flags == []


async def test_check_in_far_away_is_flagged_with_the_distance(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)

    response = await check_in(client, auth, job["id"], north(2.0), accuracy_m=20)

    assert response.status_code == 200, response.text
    assert response.json()["geofence"] == "outside"
    assert response.json()["distance_m"] == pytest.approx(2000, rel=0.01)
    job = await get_job(client, org, job["id"])
    assert event_types(job)[-2:] == ["checked_in", "flagged"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lat": 52.52, "lon": 13.405}, "accuracy_m"),
        ({"lat": 91, "lon": 13.405, "accuracy_m": 5}, "lat"),
        ({"lat": 52.52, "lon": 13.405, "accuracy_m": -1}, "accuracy_m"),
    ],
)
async def test_check_in_validates_its_body(client: AsyncTestClient, body: dict, field: str) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)

    response = await client.post(f"/v1/jobs/{job['id']}/check-in", json=body, headers=auth)

    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    assert (await get_job(client, org, job["id"]))["status"] == "assigned"


# --- idempotency --------------------------------------------------------------------------------------------


async def test_a_replayed_step_answers_the_first_response_and_acts_once(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)

    first = await en_route(client, auth, job["id"], **{"Idempotency-Key": "go-1"})
    replay = await en_route(client, auth, job["id"], **{"Idempotency-Key": "go-1"})
    assert first.status_code == 200, first.text
    assert (replay.status_code, replay.content) == (200, first.content)  # not a 409: the same request

    keyed = {**auth, "Idempotency-Key": "arrive-1"}
    body = {**metres_north(300), "accuracy_m": 10}
    first = await client.post(f"/v1/jobs/{job['id']}/check-in", json=body, headers=keyed)
    replay = await client.post(f"/v1/jobs/{job['id']}/check-in", json=body, headers=keyed)
    assert first.json()["geofence"] == "outside"
    assert (replay.status_code, replay.content) == (first.status_code, first.content)
    other = await client.post(f"/v1/jobs/{job['id']}/check-in", json={**body, "accuracy_m": 400}, headers=keyed)
    assert other.status_code == 422

    job = await get_job(client, org, job["id"])
    assert event_types(job).count("en_route") == 1
    assert event_types(job).count("checked_in") == 1
    assert event_types(job).count("flagged") == 1


async def test_a_refused_step_is_answered_from_its_key_even_once_it_would_succeed(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)
    unkeyed = await complete(client, auth, job["id"])
    keyed = {**auth, "Idempotency-Key": "done-1"}

    first = await client.post(f"/v1/jobs/{job['id']}/complete", headers=keyed)
    assert first.status_code == 409, first.text
    assert first.content == unkeyed.content  # the stored answer is the one the app gives without a key

    assert (await check_in(client, auth, job["id"])).status_code == 200
    replay = await client.post(f"/v1/jobs/{job['id']}/complete", headers=keyed)
    assert (replay.status_code, replay.content) == (409, first.content)
    assert (await get_job(client, org, job["id"]))["status"] == "on_site"


# --- privacy: tracked only while working ----------------------------------------------------------------------


async def test_an_off_duty_technician_is_tracked_during_the_job_and_not_after(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)
    assert (await client.put("/v1/me/duty", json={"on_duty": False}, headers=auth)).status_code == 200

    def ping() -> dict:
        return {"pings": [{**north(0.5), "recorded_at": datetime.now(UTC).isoformat()}]}

    assert (await en_route(client, auth, job["id"])).status_code == 200
    assert (await client.post("/v1/me/locations", json=ping(), headers=auth)).status_code == 202
    assert (await check_in(client, auth, job["id"])).status_code == 200
    assert (await complete(client, auth, job["id"])).status_code == 200

    response = await client.post("/v1/me/locations", json=ping(), headers=auth)
    assert response.status_code == 409
    assert "off_duty" in response.json()["detail"]
