"""The demo seed: idempotent, and its data shows a dispatcher every kind of reason, ratings, reliability and
alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from litestar.testing import AsyncTestClient

from backend.seed import CITY, seed_demo
from backend.settings import Settings
from tests.api.jobs_helpers import count


async def test_the_demo_explains_every_kind_of_reason(
    client: AsyncTestClient, settings: Settings, db: psycopg.Connection
) -> None:
    key = await seed_demo(settings, known_key=None)
    credentials = count(db, "SELECT count(*) FROM credentials")
    past = count(db, "SELECT count(*) FROM jobs")
    assert await seed_demo(settings, known_key=key) == key
    assert count(db, "SELECT count(*) FROM credentials") == credentials
    assert count(db, "SELECT count(*) FROM jobs") == past > 0
    assert count(db, "SELECT count(*) FROM technicians") == 50
    org = {"Authorization": f"Bearer {key}"}

    start = datetime.now(UTC) + timedelta(days=1)
    job = {
        "title": "Heat pump service",
        "skills": ["hvac"],
        "location": {"lat": CITY[0], "lon": CITY[1]},
        "window": {"start": start.isoformat(), "end": (start + timedelta(hours=3)).isoformat()},
        "customer": {"name": "Café Lindner"},
        "dispatch": {
            "waves": [{"tiers": ["preferred", "approved"], "radius_km": 50, "max_offers": 5, "offer_ttl_s": 120}],
            "auto": False,
        },
    }
    response = await client.post("/v1/jobs", json=job, headers=org)
    assert response.status_code == 201, response.text
    response = await client.get(f"/v1/jobs/{response.json()['id']}/candidates?explain=true&limit=50", headers=org)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["items"], "some demo technicians are in good standing"
    kinds = {reason.split(":")[0] for e in body["excluded"] for reason in e["reasons"]}
    assert {
        "missing_skill",
        "out_of_radius",
        "credential_missing",
        "credential_not_valid",
        "credential_expired",
        "engagement_limit",
    } <= kinds
    limits = {reason for e in body["excluded"] for reason in e["reasons"] if reason.startswith("engagement_limit:")}
    assert limits == {
        "engagement_limit:hours_per_week",
        "engagement_limit:consecutive_weeks",
        "engagement_limit:tenure",
    }
    # Candidates differ by rating and reliability, not only by distance.
    assert len({c["components"]["rating"] for c in body["items"]}) > 1
    assert len({c["components"]["reliability"] for c in body["items"]}) > 1

    response = await client.get("/v1/compliance/alerts", headers=org)
    assert response.status_code == 200
    assert {a["kind"] for a in response.json()["items"]} == {"credential_expiring", "credential_expired"}
    technicians = (await client.get("/v1/technicians?limit=100", headers=org)).json()["items"]
    # The demo's past reads like any other job.
    response = await client.get("/v1/jobs?status=completed&limit=200", headers=org)
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == min(past, 200)
    assert any(t["rating"] is not None for t in technicians)
    assert any(t["reliability"]["score"] is not None for t in technicians)
