"""Organisation: engagement from worked hours, co-employment guardrails at offer time, reliability.

Work is inserted as completed jobs with their check-in and completion times, so that the history (and, in
the service-level tests, `now`) is set by the test rather than waited for.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from backend.compliance import engagement
from backend.db.engine import make_engine, make_sessionmaker
from backend.settings import Settings
from tests.api.jobs_helpers import (
    SITE,
    count,
    get_job,
    has_push,
    job_when,
    offers_by_technician,
    post_job,
    pushes,
    pushes_when,
    technician,
)
from tests.api.test_workflow import check_in, complete
from tests.helpers import new_org, onboard

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# A Wednesday noon, far from the app's own clock: the service-level tests pass it as `now`.
NOW = datetime(2031, 3, 5, 12, tzinfo=UTC)


@pytest.fixture
async def sessionmaker(settings: Settings):
    engine = make_engine(settings.database)
    yield make_sessionmaker(engine)
    await engine.dispose()


def org_of(db: psycopg.Connection, technician_id: str) -> uuid.UUID:
    return db.execute("SELECT org_id FROM pool_memberships WHERE technician_id = %s", (technician_id,)).fetchone()[0]


def worked(
    db: psycopg.Connection, org_id, technician_id: str, start: datetime, end: datetime, status: str = "completed"
) -> None:
    """A job of `org_id` done on site: checked in at `start`, completed at `end` (then approved, or sent back)."""
    db.execute(
        "INSERT INTO jobs (id, org_id, status, title, location, window_start, window_end, estimated_hours, customer,"
        " dispatch, tracking_token, technician_id, checked_in_at, completed_at) VALUES (gen_random_uuid(), %s,"
        " %s, 'done', ST_GeogFromText('SRID=4326;POINT(13.405 52.52)'), %s, %s, 1, '{}', '{}', %s, %s, %s, %s)",
        (org_id, status, start, end, uuid.uuid4().hex, technician_id, start, end),
    )


async def figures(sessionmaker, org_id, technician_id: str, now: datetime = NOW) -> engagement.Engagement:
    async with sessionmaker() as session:
        return await engagement.engagement(org_id, uuid.UUID(technician_id), now=now, session=session)


async def set_policy(client: AsyncTestClient, org: dict, **body) -> dict:
    response = await client.put("/v1/org/engagement-policy", json=body, headers=org)
    assert response.status_code == 200, response.text
    return response.json()


async def alerts(client: AsyncTestClient, org: dict) -> list[dict]:
    response = await client.get("/v1/compliance/alerts", headers=org)
    assert response.status_code == 200, response.text
    return response.json()["items"]


# --- the figures ------------------------------------------------------------------------------------------


async def test_engagement_counts_this_organisations_hours_of_the_last_seven_days(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org, other = await new_org(client), await new_org(client, "Other Co")
    org_id = org_of(db, (await onboard(client, org, "zed"))["id"])
    ana = (await onboard(client, org, "ana"))["id"]
    await onboard(client, other, "ana")
    other_id = db.execute(
        "SELECT org_id FROM pool_memberships WHERE technician_id = %s AND org_id <> %s", (ana, org_id)
    ).fetchone()[0]
    now = datetime.now(UTC)
    worked(db, org_id, ana, now - 8 * DAY, now - 6 * DAY, "approved")  # only its last 24 h fall in the week
    worked(db, org_id, ana, now - 3 * HOUR, now - 1 * HOUR, "incomplete")  # sent back, but the hours were worked
    worked(db, org_id, ana, now - 20 * DAY, now - 20 * DAY + 5 * HOUR)  # outside the week, but a job
    worked(db, other_id, ana, now - 2 * DAY, now - DAY)  # another organisation's work is not ours

    response = await client.get(f"/v1/technicians/{ana}/engagement", headers=org)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["hours_last_7d"] == pytest.approx(26, abs=0.01)
    assert body["jobs_completed"] == 3
    assert body["tenure_months"] == 0  # 20 days of engagement
    theirs = (await client.get(f"/v1/technicians/{ana}/engagement", headers=other)).json()
    assert theirs["hours_last_7d"] == pytest.approx(24, abs=0.01)
    assert theirs["jobs_completed"] == 1

    stranger = (await onboard(client, other, "ben"))["id"]
    response = await client.get(f"/v1/technicians/{stranger}/engagement", headers=org)
    assert response.status_code == 404


async def test_a_gap_of_30_days_keeps_the_engagement_and_31_days_ends_it(
    client: AsyncTestClient, db: psycopg.Connection, sessionmaker
) -> None:
    org = await new_org(client)
    ana, ben = (await onboard(client, org, "ana"))["id"], (await onboard(client, org, "ben"))["id"]
    org_id = org_of(db, ana)
    first_start = NOW - 200 * DAY
    first_end = first_start + 4 * HOUR
    for who, gap in ((ana, 30 * DAY), (ben, 31 * DAY)):
        worked(db, org_id, who, first_start, first_end)
        worked(db, org_id, who, first_end + gap, first_end + gap + 4 * HOUR)
        # Then every 20 days up to now.
        start = first_end + gap + 20 * DAY
        while start < NOW - DAY:
            worked(db, org_id, who, start, start + 4 * HOUR)
            start += 20 * DAY

    assert (await figures(sessionmaker, org_id, ana)).tenure_months == 6  # since 200 days ago
    assert (await figures(sessionmaker, org_id, ben)).tenure_months == 5  # since 169 days ago

    # More than 30 days after the last work, the engagement is over; at exactly 30 it is not.
    last_end = db.execute("SELECT max(completed_at) FROM jobs WHERE technician_id = %s", (ana,)).fetchone()[0]
    assert (await figures(sessionmaker, org_id, ana, last_end + 30 * DAY)).tenure_months > 0
    assert (await figures(sessionmaker, org_id, ana, last_end + 30 * DAY + timedelta(seconds=1))).tenure_months == 0


async def test_consecutive_weeks_run_back_from_this_week_or_last(
    client: AsyncTestClient, db: psycopg.Connection, sessionmaker
) -> None:
    org = await new_org(client)
    ana = (await onboard(client, org, "ana"))["id"]
    org_id = org_of(db, ana)
    monday = datetime(2031, 3, 3, tzinfo=UTC)  # NOW's week
    assert (await figures(sessionmaker, org_id, ana)).consecutive_weeks == 0
    # The three weeks before this one, and one five weeks back (after a gap).
    for weeks_back in (1, 2, 3, 5):
        start = monday - weeks_back * 7 * DAY + 2 * DAY
        worked(db, org_id, ana, start, start + 3 * HOUR)
    # This week has no work yet: the run ending last week counts.
    assert (await figures(sessionmaker, org_id, ana)).consecutive_weeks == 3
    # Work from Monday 00:00 is this week's.
    worked(db, org_id, ana, monday, monday + HOUR)
    assert (await figures(sessionmaker, org_id, ana)).consecutive_weeks == 4
    # Next Monday, with nothing that week yet, the run still stands; a week later it is gone.
    assert (await figures(sessionmaker, org_id, ana, monday + 7 * DAY + HOUR)).consecutive_weeks == 4
    assert (await figures(sessionmaker, org_id, ana, monday + 14 * DAY + HOUR)).consecutive_weeks == 0


# --- the policy and its guardrails ------------------------------------------------------------------------


async def test_the_policy_is_validated_and_read_back(client: AsyncTestClient) -> None:
    org = await new_org(client)
    assert (await client.get("/v1/org/engagement-policy", headers=org)).json() == {
        "max_hours_per_week": None,
        "max_consecutive_weeks": None,
        "max_tenure_months": None,
        "mode": "warn",
    }
    for body, field in (
        ({"max_hours_per_week": 0, "mode": "block"}, "max_hours_per_week"),
        ({"max_hours_per_week": 200, "mode": "block"}, "max_hours_per_week"),
        ({"max_consecutive_weeks": 2.5, "mode": "warn"}, "max_consecutive_weeks"),
        ({"max_tenure_months": 12, "mode": "loud"}, "mode"),
        ({"max_tenure_months": 12}, "mode"),
        ({"max_tenure_months": 12, "mode": "warn", "max_days": 3}, "max_days"),
    ):
        response = await client.put("/v1/org/engagement-policy", json=body, headers=org)
        assert response.status_code == 400, (body, response.text)
        assert field in response.text
    policy = await set_policy(client, org, max_hours_per_week=40, max_tenure_months=18, mode="block")
    assert policy == {"max_hours_per_week": 40, "max_consecutive_weeks": None, "max_tenure_months": 18, "mode": "block"}
    assert (await client.get("/v1/org/engagement-policy", headers=org)).json() == policy


async def test_block_withholds_an_offer_that_would_take_a_technician_just_over_the_weekly_hours(
    client: AsyncTestClient, db: psycopg.Connection, fcm
) -> None:
    org = await new_org(client)
    ana, _ = await technician(client, org, "ana", km=1)
    ben, _ = await technician(client, org, "ben", km=5)
    org_id = org_of(db, ana)
    now = datetime.now(UTC)
    worked(db, org_id, ana, now - 3 * DAY, now - 3 * DAY + 37 * HOUR)  # 37 h this week
    await set_policy(client, org, max_hours_per_week=40, mode="block")

    # 37 + 3 = 40: at the limit, not over it. Ana is offered the job.
    at_limit = await post_job(client, org, estimated_hours=3)
    job = await job_when(client, org, at_limit["id"], lambda j: len(j["offers"]) == 2)
    assert set(offers_by_technician(job)) == {ana, ben}
    assert await alerts(client, org) == []

    # 37 + 3.5 = 40.5: over. Ana is left out with the reason, Ben alone is offered it.
    over = await post_job(client, org, estimated_hours=3.5)
    job = await job_when(client, org, over["id"], lambda j: len(j["offers"]) >= 1)
    assert set(offers_by_technician(job)) == {ben}
    explained = (await client.get(f"/v1/jobs/{over['id']}/candidates?explain=true", headers=org)).json()
    reasons = {e["technician_id"]: e["reasons"] for e in explained["excluded"]}
    assert "engagement_limit:hours_per_week" in reasons[ana]
    [alert] = await alerts(client, org)
    assert alert["technician_id"] == ana
    assert alert["kind"] == "hours_per_week"
    assert alert["value"] == pytest.approx(40.5, abs=0.01)
    assert alert["limit"] == 40
    assert alert["job_id"] == over["id"]

    # Another job the same week: withheld again, but alerted once per technician, limit and week.
    again = await post_job(client, org, estimated_hours=4)
    await job_when(client, org, again["id"], lambda j: len(j["offers"]) >= 1)
    assert len(await alerts(client, org)) == 1
    assert count(db, "SELECT count(*) FROM compliance_alerts WHERE technician_id = %s", ana) == 1

    # The guardrail is the organisation's concern: no phone hears of it.
    await pushes_when(fcm, has_push("tok-ben", "job_offer", job_id=again["id"]))
    assert {d["type"] for _, d in pushes(fcm)} == {"job_offer"}
    assert [d["job_id"] for t, d in pushes(fcm) if t == "tok-ana"] == [at_limit["id"]]

    # Nor can a dispatcher assign around it; the refusal is alerted (once this week already).
    response = await client.post(f"/v1/jobs/{again['id']}/cancel", json={}, headers=org)
    assert response.status_code == 200
    direct = await post_job(client, org, auto=False, estimated_hours=5)
    response = await client.post(f"/v1/jobs/{direct['id']}/assign", json={"technician_id": ana}, headers=org)
    assert response.status_code == 409, response.text
    assert "engagement_limit:hours_per_week" in response.json()["extra"]["reasons"]


async def test_warn_keeps_the_candidate_with_a_warning_and_raises_an_alert(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    ana, _ = await technician(client, org, "ana", km=1)
    ben, _ = await technician(client, org, "ben", km=5)
    org_id = org_of(db, ana)
    # Worked in each of the last three weeks (and this one): a fourth or fifth week in a row.
    monday = (datetime.now(UTC) - timedelta(days=datetime.now(UTC).weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    for weeks_back in (1, 2, 3):
        start = monday - weeks_back * 7 * DAY + HOUR
        worked(db, org_id, ana, start, start + 2 * HOUR)
    await set_policy(client, org, max_consecutive_weeks=3, mode="warn")

    posted = await post_job(client, org, auto=False)
    body = (await client.get(f"/v1/jobs/{posted['id']}/candidates", headers=org)).json()
    by_id = {c["technician_id"]: c for c in body["items"]}
    assert by_id[ana]["warnings"] == ["engagement_limit:consecutive_weeks"]
    assert by_id[ben]["warnings"] == []
    assert by_id[ana]["rank"] == 1  # its place is kept
    assert await alerts(client, org) == []  # reading candidates offers nothing, alerts nothing

    response = await client.post(f"/v1/jobs/{posted['id']}/dispatch", headers=org)
    assert response.status_code == 200, response.text
    job = await get_job(client, org, posted["id"])
    assert set(offers_by_technician(job)) == {ana, ben}
    [alert] = await alerts(client, org)
    assert (alert["technician_id"], alert["kind"], alert["value"], alert["limit"]) == (
        ana,
        "consecutive_weeks",
        4,
        3,
    )

    # A dispatcher may assign in warn mode; the alert is not repeated within the week.
    direct = await post_job(client, org, auto=False)
    response = await client.post(f"/v1/jobs/{direct['id']}/assign", json={"technician_id": ana}, headers=org)
    assert response.status_code == 200, response.text
    assert len(await alerts(client, org)) == 1


# --- reliability ------------------------------------------------------------------------------------------


async def test_reliability_follows_what_the_technician_did_and_feeds_the_ranking(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    ana, ana_auth = await technician(client, org, "ana", km=1)
    tech = (await client.get(f"/v1/technicians/{ana}", headers=org)).json()
    assert tech["reliability"] == {
        "score": None,
        "on_time_rate": None,
        "completion_rate": None,
        "backout_rate": None,
        "acceptance_rate": None,
        "jobs": 0,
    }

    # Declines one offer, accepts the next, arrives after the window has ended, completes it.
    declined = await post_job(client, org)
    job = await job_when(client, org, declined["id"], lambda j: len(j["offers"]) == 1)
    offer = job["offers"][0]["id"]
    assert (await client.post(f"/v1/offers/{offer}/decline", json={}, headers=ana_auth)).status_code == 200
    taken = await post_job(client, org)
    job = await job_when(client, org, taken["id"], lambda j: len(j["offers"]) == 1)
    response = await client.post(f"/v1/offers/{job['offers'][0]['id']}/accept", headers=ana_auth)
    assert response.status_code == 200, response.text
    db.execute(
        "UPDATE jobs SET window_start = now() - interval '3 hours', window_end = now() - interval '1 hour'"
        " WHERE id = %s",
        (taken["id"],),
    )
    assert (await check_in(client, ana_auth, taken["id"], SITE)).status_code == 200
    assert (await complete(client, ana_auth, taken["id"])).status_code == 200

    reliability = (await client.get(f"/v1/technicians/{ana}", headers=org)).json()["reliability"]
    assert reliability["acceptance_rate"] == 0.5
    assert reliability["on_time_rate"] == 0.0
    assert reliability["completion_rate"] == 1.0
    assert reliability["backout_rate"] == 0.0
    assert reliability["jobs"] == 1
    # 0.35 × 1/3 (late once) + 0.25 × 2/3 (done once) + 0.25 × (1 − 1/3) + 0.15 × 2/4 (one of two offers)
    assert reliability["score"] == pytest.approx(0.35 / 3 + 0.25 * 2 / 3 + 0.25 * 2 / 3 + 0.15 * 0.5, abs=1e-4)

    # The ranking reads the same figure: it is the candidate's reliability component.
    fresh = await post_job(client, org, auto=False)
    [candidate] = (await client.get(f"/v1/jobs/{fresh['id']}/candidates", headers=org)).json()["items"]
    assert candidate["components"]["reliability"] == pytest.approx(0.2 * reliability["score"], abs=1e-4)

    # Backing out of an assigned job counts too.
    response = await client.post(f"/v1/jobs/{fresh['id']}/assign", json={"technician_id": ana}, headers=org)
    assert response.status_code == 200, response.text
    response = await client.post(
        f"/v1/jobs/{fresh['id']}/back-out", json={"reason": "van broke down"}, headers=ana_auth
    )
    assert response.status_code == 200, response.text
    reliability = (await client.get(f"/v1/technicians/{ana}", headers=org)).json()["reliability"]
    assert reliability["backout_rate"] == 0.5
    assert reliability["completion_rate"] == 0.5
