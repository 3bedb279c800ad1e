"""The customer's tracking link (`GET /v1/track/{token}`): what it shows in each state of the job, its ETA,
when it closes, its headers and its rate limit; and the purge of old ping history."""

from __future__ import annotations

import math
import types
from datetime import UTC, datetime, timedelta

import anyio.to_thread
import httpx
import msgspec
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.db.engine import make_engine, make_sessionmaker
from backend.queue import Runtime
from backend.settings import Settings, TrackingSettings
from backend.tasks import make_queue
from backend.tracking.services import purge_pings
from tests.api.jobs_helpers import SITE, get_job, north, parse, post_job, technician
from tests.helpers import new_org

EARTH_RADIUS_M = 6_371_008.8
CITY_SPEED_MPS = 30 / 3.6


def metres_between(a: dict, b: dict) -> float:
    lat1, lat2 = math.radians(a["lat"]), math.radians(b["lat"])
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin(math.radians(b["lon"] - a["lon"]) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def expected_eta_s(position: dict, speed_mps: float) -> float:
    return metres_between(position, SITE) * 1.3 / speed_mps


async def track(client: AsyncTestClient, token: str, headers: dict | None = None) -> dict:
    response = await client.get(f"/v1/track/{token}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def assigned_job(client: AsyncTestClient, org: dict, uid: str = "ana", km: float = 1.0) -> tuple[dict, dict]:
    """A job assigned to `uid` ("Ana Maria Albrecht"), who is `km` north of the site: (job, auth)."""
    technician_id, auth = await technician(client, org, uid, km=km, name="Ana Maria Albrecht")
    job = await post_job(client, org, auto=False)
    response = await client.post(f"/v1/jobs/{job['id']}/assign", json={"technician_id": technician_id}, headers=org)
    assert response.status_code == 200, response.text
    return job, auth


async def step(client: AsyncTestClient, auth: dict, job_id: str, action: str, body: dict | None = None) -> None:
    response = await client.post(f"/v1/jobs/{job_id}/{action}", json=body, headers=auth)
    assert response.status_code == 200, response.text


async def send_pings(client: AsyncTestClient, auth: dict, *pings: dict) -> None:
    response = await client.post("/v1/me/locations", json={"pings": list(pings)}, headers=auth)
    assert response.status_code == 202, response.text


def ping(position: dict, at: datetime | None = None, **extra) -> dict:
    return {**position, "recorded_at": (at or datetime.now(UTC)).isoformat(), **extra}


def assert_hidden(view: dict) -> None:
    assert view["technician_location"] is None
    assert view["eta_s"] is None
    assert view["eta_at"] is None


# --- what the customer sees, state by state -------------------------------------------------------------


async def test_before_assignment_the_link_shows_the_status_and_window_and_nobody(client: AsyncTestClient) -> None:
    org = await new_org(client)
    await technician(client, org, "ana", km=1)  # nearby and pinging, but nobody's technician yet
    draft = await post_job(client, org, auto=False)
    offered = await post_job(client, org)

    view = await track(client, draft["tracking_token"])
    assert set(view) >= {"status", "window", "technician", "eta_s", "eta_at", "technician_location"}
    assert view["status"] == "open"
    assert parse(view["window"]["start"]) == parse(draft["window"]["start"])
    assert parse(view["window"]["end"]) == parse(draft["window"]["end"])
    assert view["technician"] is None
    assert_hidden(view)

    view = await track(client, offered["tracking_token"])
    assert view["status"] == "offering"
    assert view["technician"] is None
    assert_hidden(view)


async def test_once_assigned_the_link_names_the_technician_by_first_name_only(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org)
    await send_pings(client, auth, ping(north(0.8)))  # pinging while assigned: still not shown

    view = await track(client, job["tracking_token"])

    assert view["status"] == "assigned"
    assert view["technician"] == {"first_name": "Ana"}
    assert "Albrecht" not in str(view)
    assert_hidden(view)


async def test_en_route_the_link_shows_the_latest_position_and_an_eta_that_follows_each_ping(
    client: AsyncTestClient,
) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org, km=3)
    await step(client, auth, job["id"], "en-route")
    first_ping = ping(north(3), speed_mps=12.0)
    await send_pings(client, auth, first_ping)

    before = datetime.now(UTC)
    view = await track(client, job["tracking_token"])

    assert view["status"] == "en_route"
    assert view["technician"] == {"first_name": "Ana"}
    location = view["technician_location"]
    assert (location["lat"], location["lon"]) == pytest.approx((north(3)["lat"], north(3)["lon"]))
    assert parse(location["recorded_at"]) == parse(first_ping["recorded_at"])
    assert isinstance(view["eta_s"], int)
    assert view["eta_s"] == pytest.approx(expected_eta_s(north(3), 12.0), abs=1)  # ~325 s
    eta_at = parse(view["eta_at"])
    assert (
        before + timedelta(seconds=view["eta_s"] - 2)
        <= eta_at
        <= datetime.now(UTC) + timedelta(seconds=view["eta_s"] + 2)
    )

    closer = ping(north(1), speed_mps=12.0)
    await send_pings(client, auth, closer)
    view = await track(client, job["tracking_token"])

    assert (view["technician_location"]["lat"], view["technician_location"]["lon"]) == pytest.approx(
        (north(1)["lat"], north(1)["lon"])
    )
    assert view["eta_s"] == pytest.approx(expected_eta_s(north(1), 12.0), abs=1)  # ~108 s


async def test_a_technician_standing_still_is_expected_at_city_speed(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org, km=2)
    await step(client, auth, job["id"], "en-route")

    await send_pings(client, auth, ping(north(2), speed_mps=0.2))  # at a red light

    view = await track(client, job["tracking_token"])
    assert view["eta_s"] == pytest.approx(expected_eta_s(north(2), CITY_SPEED_MPS), abs=1)  # ~312 s


async def test_without_a_reported_speed_the_last_two_pings_give_it(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org, km=3)
    await step(client, auth, job["id"], "en-route")
    now = datetime.now(UTC)

    # 600 m in 30 s: 20 m/s, with no speed_mps in either ping.
    await send_pings(
        client, auth, ping(north(2.6), now + timedelta(seconds=1)), ping(north(2.0), now + timedelta(seconds=31))
    )

    view = await track(client, job["tracking_token"])
    assert view["eta_s"] == pytest.approx(expected_eta_s(north(2.0), 20.0), abs=2)  # ~130 s, not city speed's ~312


async def test_en_route_without_any_known_position_shows_no_eta(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org)
    await step(client, auth, job["id"], "en-route")
    db.execute("UPDATE technicians SET location = NULL, location_recorded_at = NULL, speed_mps = NULL")

    view = await track(client, job["tracking_token"])

    assert view["status"] == "en_route"
    assert view["technician"] == {"first_name": "Ana"}
    assert_hidden(view)


async def test_on_site_the_link_shows_the_position_and_an_eta_of_zero(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org)
    await step(client, auth, job["id"], "en-route")
    await send_pings(client, auth, ping(north(0.05)))
    await step(client, auth, job["id"], "check-in", {**north(0.05), "accuracy_m": 8})

    view = await track(client, job["tracking_token"])

    assert view["status"] == "on_site"
    assert view["technician_location"]["lat"] == pytest.approx(north(0.05)["lat"])
    assert view["eta_s"] == 0
    assert abs((parse(view["eta_at"]) - datetime.now(UTC)).total_seconds()) < 5


async def test_after_completion_the_position_is_gone_and_the_link_closes_after_24_h(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org)
    await step(client, auth, job["id"], "en-route")
    await step(client, auth, job["id"], "check-in", {**SITE, "accuracy_m": 8})
    await step(client, auth, job["id"], "complete", {"notes": "done"})
    await send_pings(client, auth, ping(north(0.2)))  # still on duty, driving off: not the customer's business

    view = await track(client, job["tracking_token"])
    assert view["status"] == "completed"
    assert view["technician"] == {"first_name": "Ana"}
    assert_hidden(view)

    db.execute("UPDATE jobs SET completed_at = now() - interval '23 hours 59 minutes' WHERE id = %s", (job["id"],))
    assert (await client.get(f"/v1/track/{job['tracking_token']}")).status_code == 200
    db.execute("UPDATE jobs SET completed_at = now() - interval '24 hours 1 minute' WHERE id = %s", (job["id"],))
    response = await client.get(f"/v1/track/{job['tracking_token']}")
    assert response.status_code == 404
    assert response.headers["referrer-policy"] == "no-referrer"
    # The organisation still has the job, of course.
    assert (await get_job(client, org, job["id"]))["status"] == "completed"


async def test_a_cancelled_job_shows_nobody_and_closes_after_24_h(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org)
    await step(client, auth, job["id"], "en-route")
    response = await client.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "fixed itself"}, headers=org)
    assert response.status_code == 200, response.text

    view = await track(client, job["tracking_token"])
    assert view["status"] == "cancelled"
    assert view["technician"] is None
    assert_hidden(view)

    cancelled_at = db.execute("SELECT cancelled_at FROM jobs WHERE id = %s", (job["id"],)).fetchone()[0]
    assert abs((datetime.now(UTC) - cancelled_at).total_seconds()) < 30
    db.execute("UPDATE jobs SET cancelled_at = now() - interval '25 hours' WHERE id = %s", (job["id"],))
    assert (await client.get(f"/v1/track/{job['tracking_token']}")).status_code == 404


async def test_an_unknown_link_is_404_and_a_real_one_is_unguessable(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job = await post_job(client, org, auto=False)

    response = await client.get("/v1/track/not-a-real-token")
    assert response.status_code == 404
    assert response.json()["status_code"] == 404
    assert (await client.get(f"/v1/track/{job['tracking_token'][:-1]}")).status_code == 404
    assert len(job["tracking_token"]) >= 43  # 256 bits, URL-safe base64


async def test_the_link_needs_no_credential_and_keeps_its_token_private(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job = await post_job(client, org, auto=False)

    response = await client.get(f"/v1/track/{job['tracking_token']}")

    assert response.status_code == 200
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    # The other routes are not affected by the link's headers.
    assert "referrer-policy" not in (await client.get("/v1/jobs", headers=org)).headers


# --- rate limit -------------------------------------------------------------------------------------------


async def get_from(client: AsyncTestClient, ip: str, path: str) -> httpx.Response:
    """A GET from client address `ip`, on the application's own event loop."""

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as http:
            return await http.get(path)

    return await anyio.to_thread.run_sync(client.blocking_portal.call, run)


async def test_the_link_is_rate_limited_per_client_address_at_60_a_minute(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job = await post_job(client, org, auto=False)
    link = f"/v1/track/{job['tracking_token']}"

    # Guessing tokens and reading the real one count alike.
    for i in range(60):
        response = await get_from(client, "203.0.113.7", link if i % 2 else f"/v1/track/guess-{i}")
        assert response.status_code in (200, 404), response.text
    limited = await get_from(client, "203.0.113.7", link)

    assert limited.status_code == 429, limited.text
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["referrer-policy"] == "no-referrer"
    assert limited.json()["status_code"] == 429
    # Another address is not limited, nor are the other routes for this one.
    assert (await get_from(client, "198.51.100.2", link)).status_code == 200
    assert (await get_from(client, "203.0.113.7", "/healthz")).status_code == 200


async def test_the_rate_limit_is_configurable(settings: Settings) -> None:
    tighter = msgspec.structs.replace(settings, tracking=TrackingSettings(rate_limit_per_minute=3))
    async with AsyncTestClient(create_app(tighter)) as client:
        statuses = [(await client.get("/v1/track/whatever")).status_code for _ in range(4)]
    assert statuses == [404, 404, 404, 429]


# --- retention --------------------------------------------------------------------------------------------


@pytest.fixture
async def sessionmaker(settings: Settings):
    engine = make_engine(settings.database)
    yield make_sessionmaker(engine)
    await engine.dispose()


# No app runs in these tests: its queue worker's own hourly purge must not race the one under test.
def new_technician(db: psycopg.Connection) -> str:
    """A technician whose latest position is on their row (as the ping recorder leaves it)."""
    return db.execute(
        "INSERT INTO technicians (id, firebase_uid, name, on_duty, location, location_recorded_at) "
        "VALUES (gen_random_uuid(), 'ana', 'Ana', true, ST_SetSRID(ST_MakePoint(13.4, 52.5), 4326)::geography, now()) RETURNING id"
    ).fetchone()[0]


def insert_pings(db: psycopg.Connection, technician_id: str, received: list[datetime]) -> None:
    for at in received:
        db.execute(
            "INSERT INTO location_pings (technician_id, recorded_at, received_at, location) "
            "VALUES (%s, %s, %s, ST_SetSRID(ST_MakePoint(13.4, 52.5), 4326)::geography)",
            (technician_id, at, at),
        )


def ping_ages_days(db: psycopg.Connection, now: datetime) -> list[int]:
    rows = db.execute("SELECT received_at FROM location_pings ORDER BY received_at").fetchall()
    return [(now - r[0]).days for r in rows]


async def test_ping_history_older_than_the_retention_is_purged_in_batches(db: psycopg.Connection, sessionmaker) -> None:
    technician_id = new_technician(db)
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    ages = [90, 45, 31, 30.5, 29.9, 10, 0]
    insert_pings(db, technician_id, [now - timedelta(days=d) for d in ages])

    purged = await purge_pings(sessionmaker, now, timedelta(days=30), batch_size=2)

    assert purged == 4
    assert ping_ages_days(db, now) == [29, 10, 0]
    # The latest position is not history: matching and the tracking link still have it.
    assert db.execute("SELECT location IS NOT NULL FROM technicians WHERE id = %s", (technician_id,)).fetchone()[0]
    assert await purge_pings(sessionmaker, now, timedelta(days=30)) == 0


async def test_the_hourly_queue_task_purges_with_the_configured_retention(
    db: psycopg.Connection, sessionmaker, settings: Settings
) -> None:
    technician_id = new_technician(db)
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    insert_pings(db, technician_id, [now - timedelta(days=d) for d in (12, 8, 1)])
    queue = make_queue(settings.database.url)
    [periodic] = [p for p in queue.periodic_registry.periodic_tasks.values() if p.task.name == "purge_pings"]
    assert periodic.cron == "17 * * * *"

    runtime = Runtime(sessionmaker=sessionmaker, sender=None, tracking=TrackingSettings(ping_retention_days=7))
    context = types.SimpleNamespace(additional_context={"runtime": runtime})
    await periodic.task.func(context, timestamp=int(now.timestamp()))

    assert ping_ages_days(db, now) == [1]
