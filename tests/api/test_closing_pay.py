"""Pay terms on a job: fixed, hourly and blended, exact decimals in and out, 422 naming the field."""

from __future__ import annotations

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from tests.api.jobs_helpers import get_job, job_body
from tests.helpers import new_org


async def test_hourly_pay_is_kept_exactly_and_answered_as_json_numbers(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    pay = {"type": "hourly", "currency": "EUR", "rate": 45.5, "max_hours": 8, "max_expenses": 120.05}
    response = await client.post("/v1/jobs", json=job_body(auto=False, pay=pay), headers=org)
    assert response.status_code == 201, response.text
    assert b'"rate":45.5' in response.content and b'"max_expenses":120.05' in response.content
    assert response.json()["pay"] == pay
    job = await get_job(client, org, response.json()["id"])
    assert job["pay"] == pay
    assert b'"rate":"' not in (await client.get(f"/v1/jobs/{job['id']}", headers=org)).content


async def test_the_older_amount_and_currency_still_means_fixed(client: AsyncTestClient) -> None:
    org = await new_org(client)
    response = await client.post(
        "/v1/jobs", json=job_body(auto=False, pay={"amount": 120.0, "currency": "EUR"}), headers=org
    )
    assert response.status_code == 201, response.text
    assert response.json()["pay"] == {"amount": 120.0, "currency": "EUR"}


@pytest.mark.parametrize(
    ("pay", "field"),
    [
        ({"type": "fixed", "currency": "EUR", "amount": 100, "rate": 20}, "pay.rate"),
        ({"type": "hourly", "currency": "EUR", "max_hours": 4}, "pay.rate"),
        ({"type": "blended", "currency": "EUR", "amount": 100, "rate": 20}, "pay.fixed_hours"),
        ({"type": "hourly", "currency": "EUR", "rate": 20, "fixed_hours": 1}, "pay.fixed_hours"),
        ({"currency": "EUR", "amount": 10.005}, "pay.amount"),
        ({"type": "hourly", "currency": "EUR", "rate": 12.345}, "pay.rate"),
    ],
)
async def test_pay_that_does_not_fit_its_type_is_422_naming_the_field(
    client: AsyncTestClient, pay: dict, field: str
) -> None:
    org = await new_org(client)
    response = await client.post("/v1/jobs", json=job_body(auto=False, pay=pay), headers=org)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}:")
    assert response.json()["extra"][0]["key"] == field
