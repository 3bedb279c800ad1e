"""Helpers for the job, dispatch and accept-race tests: technicians ready to be offered work, job bodies,
bounded waits for the queue worker (wave deadlines, pushes) and truly concurrent requests."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx
import psycopg
from litestar.testing import AsyncTestClient

from tests.fakes.fcm import FakeFcmServer
from tests.helpers import onboard, technician_auth

T = TypeVar("T")

# The job site; technicians are placed `km` north of it (one degree of latitude is ~111.2 km).
SITE = {"lat": 52.52, "lon": 13.405}
KM_LAT = 1 / 111.195


def north(km: float, of: dict = SITE) -> dict:
    return {"lat": of["lat"] + km * KM_LAT, "lon": of["lon"]}


def at(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def wave(max_offers: int = 10, offer_ttl_s: int = 600, tiers=("preferred", "approved"), radius_km: float = 50) -> dict:
    return {"tiers": list(tiers), "radius_km": radius_km, "max_offers": max_offers, "offer_ttl_s": offer_ttl_s}


def job_body(*, start_in_min: float = 30, hours: float = 2, waves: list[dict] | None = None, auto: bool = True, **over):
    """An ASAP job by default (its window starts in 30 min) at SITE, needing `hvac`."""
    body: dict[str, Any] = {
        "title": "Boiler does not start",
        "skills": ["hvac"],
        "location": dict(SITE),
        "address": "Alexanderplatz 1, Berlin",
        "window": {"start": at(start_in_min), "end": at(start_in_min + hours * 60)},
        "customer": {"name": "Dora Customer", "phone": "+49 30 1234567"},
        "pay": {"amount": 120.0, "currency": "EUR"},
    }
    if waves is not None or not auto:
        body["dispatch"] = {"waves": waves or [wave()], "auto": auto}
    body.update(over)
    return body


async def post_job(client: AsyncTestClient, org: dict, **kwargs) -> dict:
    response = await client.post("/v1/jobs", json=job_body(**kwargs), headers=org)
    assert response.status_code == 201, response.text
    return response.json()


async def get_job(client: AsyncTestClient, org: dict, job_id: str) -> dict:
    response = await client.get(f"/v1/jobs/{job_id}", headers=org)
    assert response.status_code == 200, response.text
    return response.json()


async def technician(
    client: AsyncTestClient,
    org: dict,
    uid: str,
    *,
    km: float | None = 1.0,
    on_duty: bool = True,
    device: bool = True,
    **overrides,
) -> tuple[str, dict]:
    """Onboard `uid`; on duty with a fresh ping `km` north of SITE (km=None: no ping) and a device `tok-<uid>`.
    Returns (technician id, technician auth headers)."""
    overrides.setdefault("skills", ["hvac", "electrical"])
    overrides.setdefault("name", f"Tech {uid}")
    tech = await onboard(client, org, uid, **overrides)
    auth = technician_auth(uid)
    if on_duty or km is not None:
        response = await client.put("/v1/me/duty", json={"on_duty": True}, headers=auth)
        assert response.status_code == 200, response.text
    if km is not None:
        position = north(km)
        ping = {**position, "recorded_at": datetime.now(UTC).isoformat()}
        response = await client.post("/v1/me/locations", json={"pings": [ping]}, headers=auth)
        assert response.status_code == 202, response.text
    if not on_duty:
        response = await client.put("/v1/me/duty", json={"on_duty": False}, headers=auth)
        assert response.status_code == 200, response.text
    if device:
        response = await client.post(
            "/v1/me/devices", json={"token": f"tok-{uid}", "platform": "android"}, headers=auth
        )
        assert response.status_code == 201, response.text
    return tech["id"], auth


async def eventually(check: Callable[[], Awaitable[T | None]], *, within: float = 10.0, what: str = "") -> T:
    """Poll `check` until it returns something truthy (bounded); AssertionError on timeout."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or check}")
        await anyio.sleep(0.1)


async def job_when(
    client: AsyncTestClient, org: dict, job_id: str, predicate: Callable[[dict], bool], *, within: float = 10.0
) -> dict:
    async def check() -> dict | None:
        job = await get_job(client, org, job_id)
        return job if predicate(job) else None

    return await eventually(check, within=within, what=f"job {job_id} to reach a state")


def pushes(fcm: FakeFcmServer) -> list[tuple[str, dict]]:
    """(token, data) of every push the fake FCM received."""
    return [(r.message["token"], r.message.get("data", {})) for r in fcm.requests]


async def pushes_when(
    fcm: FakeFcmServer, predicate: Callable[[list[tuple[str, dict]]], bool], *, within: float = 10.0
) -> list[tuple[str, dict]]:
    async def check():
        seen = pushes(fcm)
        return seen if predicate(seen) else None

    return await eventually(check, within=within, what="pushes")


def has_push(token: str, type_: str, **data) -> Callable[[list[tuple[str, dict]]], bool]:
    def predicate(seen: list[tuple[str, dict]]) -> bool:
        return any(
            t == token and d.get("type") == type_ and all(d.get(k) == v for k, v in data.items()) for t, d in seen
        )

    return predicate


def offers_by_technician(job: dict) -> dict[str, dict]:
    return {o["technician_id"]: o for o in job["offers"]}


def event_types(job: dict) -> list[str]:
    return [e["type"] for e in job["events"]]


async def sleep_until(moment: datetime, *, extra_s: float = 0.0, at_most_s: float = 10.0) -> None:
    """Sleep until `extra_s` after `moment` (bounded by `at_most_s`)."""
    seconds = (moment - datetime.now(UTC)).total_seconds() + extra_s
    await anyio.sleep(min(max(seconds, 0.0), at_most_s))


def count(db: psycopg.Connection, sql: str, *params) -> int:
    return db.execute(sql, params).fetchone()[0]


async def in_app_loop(client: AsyncTestClient, fn: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run `fn` on the application's own event loop with an HTTP client whose requests really run
    concurrently (AsyncTestClient hands each request to its portal synchronously, one at a time)."""

    async def run() -> T:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local", timeout=60) as http:
            return await fn(http)

    return await anyio.to_thread.run_sync(client.blocking_portal.call, run)
