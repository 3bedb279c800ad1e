"""The demo shows closing the work: approved jobs with payables (one paid), one job sent back, a template."""

from __future__ import annotations

import psycopg
from litestar.testing import AsyncTestClient

from backend.seed import seed_demo
from backend.settings import Settings


async def test_the_demo_has_payables_an_incomplete_job_and_a_template(
    client: AsyncTestClient, settings: Settings, db: psycopg.Connection
) -> None:
    key = await seed_demo(settings, known_key=None)
    assert await seed_demo(settings, known_key=key) == key  # again: nothing doubled
    org = {"Authorization": f"Bearer {key}"}
    payables = (await client.get("/v1/payables", headers=org)).json()["items"]
    assert len(payables) == 3
    assert sorted(p["status"] for p in payables) == ["approved", "approved", "paid"]
    assert all(p["total"] == p["labour"] + p["expenses"] and p["total"] > 0 for p in payables)
    incomplete = (await client.get("/v1/jobs", params={"status": "incomplete"}, headers=org)).json()["items"]
    assert len(incomplete) == 1 and incomplete[0]["tasks"][1]["value"] is None
    templates = (await client.get("/v1/job-templates", headers=org)).json()["items"]
    assert [t["name"] for t in templates] == ["Boiler service"]
    export = await client.get("/v1/payables.csv", headers=org)
    assert len(export.text.strip().splitlines()) == 4
