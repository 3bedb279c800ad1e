"""The technician's own routes (`/v1/me`): profile and memberships, duty, location pings, devices."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar

import anyio.to_thread
import httpx
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from tests.helpers import ADMIN, new_org, onboard, technician_auth

T = TypeVar("T")


async def new_org_with_id(client: AsyncTestClient, name: str) -> tuple[dict[str, str], str]:
    response = await client.post("/v1/admin/orgs", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    return {"Authorization": f"Bearer {body['api_key']}"}, body["id"]


async def on_duty_technician(client: AsyncTestClient, org: dict[str, str], uid: str) -> tuple[dict, dict[str, str]]:
    technician = await onboard(client, org, uid)
    auth = technician_auth(uid)
    response = await client.put("/v1/me/duty", json={"on_duty": True}, headers=auth)
    assert response.status_code == 200, response.text
    return technician, auth


def ping(lat: float, lon: float, at: datetime, **extra) -> dict:
    return {"lat": lat, "lon": lon, "recorded_at": at.isoformat(), **extra}


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def stored_pings(db: psycopg.Connection) -> list[tuple]:
    return db.execute(
        "SELECT technician_id::text, ST_Y(location::geometry), ST_X(location::geometry), recorded_at "
        "FROM location_pings ORDER BY recorded_at"
    ).fetchall()


def ping_count(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM location_pings").fetchone()[0]


async def in_app_loop(client: AsyncTestClient, fn: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run `fn` on the application's own event loop with an HTTP client that really runs requests
    concurrently (Litestar's AsyncTestClient hands each request to its portal synchronously, one at a time)."""

    async def run() -> T:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as http:
            return await fn(http)

    return await anyio.to_thread.run_sync(client.blocking_portal.call, run)


# --- profile and memberships --------------------------------------------------------------------------


async def test_me_lists_the_memberships_across_organisations(client: AsyncTestClient) -> None:
    acme, acme_id = await new_org_with_id(client, "Acme Field Services")
    beta, beta_id = await new_org_with_id(client, "Beta Installations")
    other, _ = await new_org_with_id(client, "Not Mine")
    technician = await onboard(client, acme, "uid-me", tier="preferred")
    await onboard(client, beta, "uid-me", tier="approved", active=False)
    await onboard(client, other, "uid-someone-else")

    response = await client.get("/v1/me", headers=technician_auth("uid-me"))

    assert response.status_code == 200, response.text
    me = response.json()
    assert me["id"] == technician["id"]
    assert me["name"] == "Ana Albrecht"
    assert sorted(me["memberships"], key=lambda m: m["org_name"]) == [
        {"org_id": acme_id, "org_name": "Acme Field Services", "tier": "preferred", "active": True},
        {"org_id": beta_id, "org_name": "Beta Installations", "tier": "approved", "active": False},
    ]

    # An organisation's PATCH shows up in the technician's own view of that membership.
    patched = await client.patch(f"/v1/technicians/{technician['id']}", json={"tier": "approved"}, headers=acme)
    assert patched.status_code == 200
    memberships = (await client.get("/v1/me", headers=technician_auth("uid-me"))).json()["memberships"]
    assert {m["org_id"]: m["tier"] for m in memberships} == {acme_id: "approved", beta_id: "approved"}


async def test_a_firebase_account_not_onboarded_anywhere_is_403(client: AsyncTestClient) -> None:
    org = await new_org(client)
    await onboard(client, org, "uid-someone-else")
    stranger = technician_auth("uid-stranger")

    for method, url, body in (
        ("GET", "/v1/me", None),
        ("PUT", "/v1/me/duty", {"on_duty": True}),
        ("POST", "/v1/me/locations", {"pings": [ping(1, 2, datetime.now(UTC))]}),
        ("POST", "/v1/me/devices", {"token": "tok-stranger", "platform": "ios"}),
    ):
        response = await client.request(method, url, json=body, headers=stranger)
        assert response.status_code == 403, (method, url, response.text)


async def test_an_account_onboarded_after_a_403_is_let_in(client: AsyncTestClient) -> None:
    auth = technician_auth("uid-late")
    assert (await client.get("/v1/me", headers=auth)).status_code == 403

    org = await new_org(client)
    technician = await onboard(client, org, "uid-late")
    response = await client.get("/v1/me", headers=auth)  # the very same ID token
    assert response.status_code == 200, response.text
    assert response.json()["id"] == technician["id"]


# --- duty -----------------------------------------------------------------------------------------------


async def test_duty_is_reflected_in_me_and_in_every_organisations_view(client: AsyncTestClient) -> None:
    acme, beta = await new_org(client, "Acme"), await new_org(client, "Beta")
    technician = await onboard(client, acme, "uid-duty")
    await onboard(client, beta, "uid-duty")
    auth = technician_auth("uid-duty")

    async def seen() -> tuple[bool, bool, bool, bool]:
        me = (await client.get("/v1/me", headers=auth)).json()
        views = [(await client.get(f"/v1/technicians/{technician['id']}", headers=o)).json() for o in (acme, beta)]
        listed = (await client.get("/v1/technicians", headers=acme)).json()["items"][0]
        return me["on_duty"], views[0]["on_duty"], views[1]["on_duty"], listed["on_duty"]

    assert await seen() == (False, False, False, False)

    response = await client.put("/v1/me/duty", json={"on_duty": True}, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["on_duty"] is True
    assert await seen() == (True, True, True, True)

    response = await client.put("/v1/me/duty", json={"on_duty": False}, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["on_duty"] is False
    assert await seen() == (False, False, False, False)


@pytest.mark.parametrize("body", [{"on_duty": "yes"}, {}, {"on_duty": True, "shift": "night"}])
async def test_an_invalid_duty_body_is_400_and_changes_nothing(client: AsyncTestClient, body: dict) -> None:
    org = await new_org(client)
    await onboard(client, org, "uid-duty")
    auth = technician_auth("uid-duty")
    response = await client.put("/v1/me/duty", json=body, headers=auth)
    assert response.status_code == 400, response.text
    assert (await client.get("/v1/me", headers=auth)).json()["on_duty"] is False


# --- location pings -------------------------------------------------------------------------------------


async def test_pings_while_off_duty_are_409_and_not_stored(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    technician = await onboard(client, org, "uid-off")
    auth = technician_auth("uid-off")
    batch = {"pings": [ping(52.5, 13.4, datetime.now(UTC) - timedelta(seconds=5))]}

    response = await client.post("/v1/me/locations", json=batch, headers=auth)
    assert response.status_code == 409, response.text
    assert "off_duty" in response.json()["detail"]
    assert ping_count(db) == 0
    assert (await client.get("/v1/me", headers=auth)).json()["last_location"] is None

    # On duty, then off again: tracking stops with the shift.
    await client.put("/v1/me/duty", json={"on_duty": True}, headers=auth)
    assert (await client.post("/v1/me/locations", json=batch, headers=auth)).status_code == 202
    await client.put("/v1/me/duty", json={"on_duty": False}, headers=auth)
    later = {"pings": [ping(48.1, 11.6, datetime.now(UTC))]}
    response = await client.post("/v1/me/locations", json=later, headers=auth)
    assert response.status_code == 409, response.text
    assert "off_duty" in response.json()["detail"]
    assert ping_count(db) == 1
    view = (await client.get(f"/v1/technicians/{technician['id']}", headers=org)).json()
    assert (view["last_location"]["lat"], view["last_location"]["lon"]) == (52.5, 13.4)


async def test_pings_on_duty_are_stored_and_the_newest_recorded_at_wins(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    technician, auth = await on_duty_technician(client, org, "uid-on")
    now = datetime.now(UTC).replace(microsecond=0)
    newest = now - timedelta(seconds=10)
    batch = [
        ping(52.50, 13.40, now - timedelta(minutes=3), accuracy_m=8.5),
        # The newest, given with a +02:00 offset and in the middle of an out-of-order batch.
        ping(52.53, 13.43, newest.astimezone(timezone(timedelta(hours=2))), speed_mps=4.2, heading_deg=90),
        ping(52.51, 13.41, now - timedelta(minutes=2)),
        ping(52.52, 13.42, now - timedelta(minutes=1)),
    ]

    response = await client.post("/v1/me/locations", json={"pings": batch}, headers=auth)

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 4}
    assert stored_pings(db) == [
        (technician["id"], 52.50, 13.40, now - timedelta(minutes=3)),
        (technician["id"], 52.51, 13.41, now - timedelta(minutes=2)),
        (technician["id"], 52.52, 13.42, now - timedelta(minutes=1)),
        (technician["id"], 52.53, 13.43, newest),
    ]
    me = (await client.get("/v1/me", headers=auth)).json()
    view = (await client.get(f"/v1/technicians/{technician['id']}", headers=org)).json()
    for last in (me["last_location"], view["last_location"]):
        assert (last["lat"], last["lon"]) == (52.53, 13.43)
        assert when(last["recorded_at"]) == newest


async def test_a_late_older_batch_goes_to_history_without_moving_the_latest_position(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    technician, auth = await on_duty_technician(client, org, "uid-late-batch")
    now = datetime.now(UTC).replace(microsecond=0)

    first = await client.post(
        "/v1/me/locations", json={"pings": [ping(40.0, -3.0, now - timedelta(minutes=1))]}, headers=auth
    )
    assert first.status_code == 202
    late = {"pings": [ping(41.0, -4.0, now - timedelta(minutes=30)), ping(41.5, -4.5, now - timedelta(minutes=20))]}
    response = await client.post("/v1/me/locations", json=late, headers=auth)

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2}
    assert ping_count(db) == 3
    view = (await client.get(f"/v1/technicians/{technician['id']}", headers=org)).json()
    assert (view["last_location"]["lat"], view["last_location"]["lon"]) == (40.0, -3.0)
    assert when(view["last_location"]["recorded_at"]) == now - timedelta(minutes=1)

    # A newer one moves it again.
    newer = {"pings": [ping(42.0, -5.0, now)]}
    assert (await client.post("/v1/me/locations", json=newer, headers=auth)).status_code == 202
    last = (await client.get("/v1/me", headers=auth)).json()["last_location"]
    assert (last["lat"], last["lon"], when(last["recorded_at"])) == (42.0, -5.0, now)


@pytest.mark.parametrize("count", [0, 101])
async def test_a_batch_of_0_or_101_pings_is_400(client: AsyncTestClient, db: psycopg.Connection, count: int) -> None:
    org = await new_org(client)
    _, auth = await on_duty_technician(client, org, "uid-batch")
    now = datetime.now(UTC)
    pings = [ping(10 + i * 0.001, 20, now - timedelta(seconds=i)) for i in range(count)]

    response = await client.post("/v1/me/locations", json={"pings": pings}, headers=auth)

    assert response.status_code == 400, response.text
    assert "pings" in response.json()["detail"]
    assert ping_count(db) == 0


async def test_a_batch_of_100_pings_is_accepted(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    _, auth = await on_duty_technician(client, org, "uid-batch")
    now = datetime.now(UTC)
    pings = [ping(10 + i * 0.001, 20, now - timedelta(seconds=i)) for i in range(100)]
    response = await client.post("/v1/me/locations", json={"pings": pings}, headers=auth)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 100}
    assert ping_count(db) == 100


async def test_a_ping_body_over_1_mb_is_413_and_not_stored(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    _, auth = await on_duty_technician(client, org, "uid-big")
    raw = json.dumps({"pings": [ping(1, 2, datetime.now(UTC))]}).encode()
    content = raw[:-1] + b" " * (1024 * 1024) + b"}"
    response = await client.post(
        "/v1/me/locations", content=content, headers={**auth, "content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert ping_count(db) == 0


@pytest.mark.parametrize(
    ("bad", "index"),
    [
        (timedelta(hours=-25), 1),
        (timedelta(minutes=3), 1),
        (timedelta(hours=-25), 0),
        (timedelta(minutes=3), 2),
    ],
    ids=["25h-old-at-1", "3min-future-at-1", "25h-old-at-0", "3min-future-at-2"],
)
async def test_a_batch_with_a_ping_out_of_the_time_window_is_422_and_none_of_it_is_stored(
    client: AsyncTestClient, db: psycopg.Connection, bad: timedelta, index: int
) -> None:
    org = await new_org(client)
    technician, auth = await on_duty_technician(client, org, "uid-window")
    now = datetime.now(UTC)
    pings = [ping(30 + i, 30, now - timedelta(seconds=30 - i)) for i in range(3)]
    pings[index] = ping(35, 35, now + bad)

    response = await client.post("/v1/me/locations", json={"pings": pings}, headers=auth)

    assert response.status_code == 422, response.text
    assert f"pings[{index}].recorded_at" in response.json()["detail"]
    assert ping_count(db) == 0
    assert (await client.get(f"/v1/technicians/{technician['id']}", headers=org)).json()["last_location"] is None


async def test_pings_just_inside_the_time_window_are_accepted(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    _, auth = await on_duty_technician(client, org, "uid-window")
    now = datetime.now(UTC)
    pings = [ping(1, 1, now - timedelta(hours=23, minutes=50)), ping(2, 2, now + timedelta(seconds=60))]
    response = await client.post("/v1/me/locations", json={"pings": pings}, headers=auth)
    assert response.status_code == 202, response.text
    assert ping_count(db) == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lat": 95}, "pings[1].lat"),
        ({"lat": -90.5}, "pings[1].lat"),
        ({"lon": 181}, "pings[1].lon"),
        ({"accuracy_m": -1}, "pings[1].accuracy_m"),
        ({"heading_deg": 360}, "pings[1].heading_deg"),
        ({"recorded_at": "2026-11-25T14:00:00"}, "pings[1].recorded_at"),
        ({"recorded_at": "yesterday"}, "pings[1].recorded_at"),
        ({"altitude_m": 3}, "altitude_m"),
    ],
    ids=[
        "lat-95",
        "lat-minus-90.5",
        "lon-181",
        "accuracy-negative",
        "heading-360",
        "no-offset",
        "not-a-time",
        "unknown",
    ],
)
async def test_an_invalid_ping_is_400_naming_the_field_and_nothing_is_stored(
    client: AsyncTestClient, db: psycopg.Connection, change: dict, field: str
) -> None:
    org = await new_org(client)
    _, auth = await on_duty_technician(client, org, "uid-invalid")
    now = datetime.now(UTC)
    pings = [ping(10, 10, now - timedelta(seconds=20)), {**ping(11, 11, now - timedelta(seconds=10)), **change}]

    response = await client.post("/v1/me/locations", json={"pings": pings}, headers=auth)

    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    assert ping_count(db) == 0


async def test_the_latest_position_is_a_geography_point_postgis_can_query(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    technician, auth = await on_duty_technician(client, org, "uid-geo")
    # The Eiffel Tower: lat 48.8584, lon 2.2945 (PostGIS stores x = lon, y = lat).
    batch = {"pings": [ping(48.8584, 2.2945, datetime.now(UTC), accuracy_m=5)]}
    assert (await client.post("/v1/me/locations", json=batch, headers=auth)).status_code == 202

    row = db.execute(
        """
        SELECT pg_typeof(location)::text, ST_SRID(location::geometry), GeometryType(location::geometry),
               ST_Y(location::geometry), ST_X(location::geometry),
               ST_DWithin(location, ST_SetSRID(ST_MakePoint(2.2945, 48.8584), 4326)::geography, 1),
               -- the Louvre is about 3.3 km away
               ST_Distance(location, ST_SetSRID(ST_MakePoint(2.3376, 48.8606), 4326)::geography)
        FROM technicians WHERE id = %s
        """,
        (technician["id"],),
    ).fetchone()
    assert row[:6] == ("geography", 4326, "POINT", 48.8584, 2.2945, True)
    assert 3000 < row[6] < 3500
    history = db.execute(
        "SELECT pg_typeof(location)::text, ST_Y(location::geometry), ST_X(location::geometry) FROM location_pings"
    ).fetchall()
    assert history == [("geography", 48.8584, 2.2945)]


async def test_20_technicians_pinging_at_once_are_all_stored(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    crew = [await on_duty_technician(client, org, f"uid-crew-{i:02d}") for i in range(20)]
    now = datetime.now(UTC).replace(microsecond=0)
    # Each technician a distinct position; half of them send the optional fields, half do not.
    positions = {t["id"]: (45 + i / 10, 7 + i / 10) for i, (t, _) in enumerate(crew)}

    async def send_all(http: httpx.AsyncClient) -> list[httpx.Response]:
        def body(i: int, technician_id: str) -> dict:
            lat, lon = positions[technician_id]
            extra = {"accuracy_m": 3.0 + i, "speed_mps": 1.5} if i % 2 else {}
            return {"pings": [ping(lat, lon, now - timedelta(seconds=i), **extra)]}

        return await asyncio.gather(
            *(http.post("/v1/me/locations", json=body(i, t["id"]), headers=auth) for i, (t, auth) in enumerate(crew))
        )

    responses = await in_app_loop(client, send_all)

    assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses]
    assert all(r.json() == {"accepted": 1} for r in responses)
    assert ping_count(db) == 20
    latest = db.execute(
        "SELECT id::text, ST_Y(location::geometry), ST_X(location::geometry) FROM technicians"
    ).fetchall()
    assert {tid: (lat, lon) for tid, lat, lon in latest} == positions
    listed = (await client.get("/v1/technicians", headers=org)).json()["items"]
    assert {t["id"]: (t["last_location"]["lat"], t["last_location"]["lon"]) for t in listed} == positions


async def test_concurrent_pings_on_and_off_duty_each_get_their_own_answer(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    on = [await on_duty_technician(client, org, f"uid-on-{i}") for i in range(6)]
    off = [(await onboard(client, org, f"uid-off-{i}"), technician_auth(f"uid-off-{i}")) for i in range(6)]
    now = datetime.now(UTC)
    mixed = [x for pair in zip(on, off, strict=True) for x in pair]

    async def send_all(http: httpx.AsyncClient) -> list[httpx.Response]:
        return await asyncio.gather(
            *(
                http.post("/v1/me/locations", json={"pings": [ping(50 + i, 8, now)]}, headers=auth)
                for i, (_, auth) in enumerate(mixed)
            )
        )

    responses = await in_app_loop(client, send_all)

    assert [r.status_code for r in responses] == [202, 409] * 6, [r.text for r in responses]
    stored = {row[0] for row in stored_pings(db)}
    assert stored == {t["id"] for t, _ in on}
    assert db.execute("SELECT count(*) FROM technicians WHERE location IS NOT NULL").fetchone()[0] == 6


# --- devices --------------------------------------------------------------------------------------------


def devices(db: psycopg.Connection) -> list[tuple]:
    return db.execute("SELECT token, technician_id::text, platform FROM devices ORDER BY token").fetchall()


async def test_registering_a_device_is_201_and_re_registering_updates_it(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    technician = await onboard(client, org, "uid-phone")
    auth = technician_auth("uid-phone")
    token = "fcm:APA91bH-abc_DEF123"

    response = await client.post("/v1/me/devices", json={"token": token, "platform": "android"}, headers=auth)
    assert response.status_code == 201, response.text
    assert response.json()["token"] == token
    assert response.json()["platform"] == "android"
    assert devices(db) == [(token, technician["id"], "android")]

    response = await client.post("/v1/me/devices", json={"token": token, "platform": "ios"}, headers=auth)
    assert response.status_code == 201, response.text
    assert devices(db) == [(token, technician["id"], "ios")]


async def test_a_token_registered_by_another_technician_moves_to_them(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    await onboard(client, org, "uid-old-owner")
    new_owner = await onboard(client, org, "uid-new-owner")
    old_auth, new_auth = technician_auth("uid-old-owner"), technician_auth("uid-new-owner")
    token = "shared-phone-token"

    assert (
        await client.post("/v1/me/devices", json={"token": token, "platform": "android"}, headers=old_auth)
    ).status_code == 201
    assert (
        await client.post("/v1/me/devices", json={"token": token, "platform": "ios"}, headers=new_auth)
    ).status_code == 201
    assert devices(db) == [(token, new_owner["id"], "ios")]

    response = await client.delete(f"/v1/me/devices/{token}", headers=old_auth)
    assert response.status_code == 404, response.text
    assert devices(db) == [(token, new_owner["id"], "ios")]

    response = await client.delete(f"/v1/me/devices/{token}", headers=new_auth)
    assert response.status_code == 204, response.text
    assert devices(db) == []


async def test_deleting_devices(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    technician = await onboard(client, org, "uid-del")
    auth = technician_auth("uid-del")
    for token in ("keep-me", "drop:me-1"):
        await client.post("/v1/me/devices", json={"token": token, "platform": "android"}, headers=auth)

    response = await client.delete("/v1/me/devices/drop:me-1", headers=auth)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert devices(db) == [("keep-me", technician["id"], "android")]

    assert (await client.delete("/v1/me/devices/drop:me-1", headers=auth)).status_code == 404
    assert (await client.delete(f"/v1/me/devices/never-{uuid.uuid4()}", headers=auth)).status_code == 404
    assert devices(db) == [("keep-me", technician["id"], "android")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"token": "tok-1", "platform": "windows"}, "platform"),
        ({"token": "", "platform": "ios"}, "token"),
        ({"token": "has/slash", "platform": "ios"}, "token"),
        ({"platform": "ios"}, "token"),
    ],
    ids=["windows", "empty-token", "slash-in-token", "no-token"],
)
async def test_an_invalid_device_is_400_and_not_stored(
    client: AsyncTestClient, db: psycopg.Connection, body: dict, field: str
) -> None:
    org = await new_org(client)
    await onboard(client, org, "uid-bad-phone")
    response = await client.post("/v1/me/devices", json=body, headers=technician_auth("uid-bad-phone"))
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    assert devices(db) == []


# --- credentials ----------------------------------------------------------------------------------------

ME_ROUTES = [
    ("GET", "/v1/me", None),
    ("PUT", "/v1/me/duty", {"on_duty": True}),
    ("POST", "/v1/me/locations", {"pings": [{"lat": 1, "lon": 2, "recorded_at": "2026-11-25T14:00:00Z"}]}),
    ("POST", "/v1/me/devices", {"token": "tok-x", "platform": "android"}),
    ("DELETE", "/v1/me/devices/tok-x", None),
]


@pytest.mark.parametrize(("method", "url", "body"), ME_ROUTES, ids=[f"{m} {u}" for m, u, _ in ME_ROUTES])
async def test_me_routes_refuse_other_credentials(
    client: AsyncTestClient, db: psycopg.Connection, method: str, url: str, body: dict | None
) -> None:
    org = await new_org(client)
    await onboard(client, org, "uid-real")

    for headers, status in (
        (org, 403),
        (ADMIN, 403),
        ({}, 401),
        ({"Authorization": "Bearer not.a.token"}, 401),
        ({"Authorization": "Bearer trk_revoked-or-invented"}, 401),
    ):
        response = await client.request(method, url, json=body, headers=headers)
        assert response.status_code == status, (headers, response.text)
    assert db.execute("SELECT on_duty FROM technicians").fetchone() == (False,)
    assert ping_count(db) == 0
    assert devices(db) == []
