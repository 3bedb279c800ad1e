"""An Idempotency-Key names one request: the same key sent to another object's route is another request."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from tests.api.jobs_helpers import event_types, get_job, post_job, technician
from tests.helpers import new_org


async def test_a_key_used_on_one_jobs_en_route_is_refused_on_anothers(client: AsyncTestClient) -> None:
    org = await new_org(client)
    ana, auth = await technician(client, org, "ana", km=1)
    # Two jobs of hers, on different days (not overlapping): the same step, the same empty body, two paths.
    first_job = await post_job(client, org, auto=False, start_in_min=60)
    second_job = await post_job(client, org, auto=False, start_in_min=26 * 60)
    for job in (first_job, second_job):
        response = await client.post(f"/v1/jobs/{job['id']}/assign", json={"technician_id": ana}, headers=org)
        assert response.status_code == 200, response.text
    keyed = {**auth, "Idempotency-Key": "on-my-way"}

    first = await client.post(f"/v1/jobs/{first_job['id']}/en-route", headers=keyed)
    assert first.status_code == 200, first.text
    assert first.json()["id"] == first_job["id"]

    other = await client.post(f"/v1/jobs/{second_job['id']}/en-route", headers=keyed)

    # Not a replay of the first job's answer: the key was used with a different request.
    assert other.status_code == 422, other.text
    assert "already used with a different request" in other.text
    assert other.content != first.content
    second = await get_job(client, org, second_job["id"])
    assert second["status"] == "assigned"
    assert "en_route" not in event_types(second)
    # On its own route the key still answers what it answered first, and the first job moved once.
    replay = await client.post(f"/v1/jobs/{first_job['id']}/en-route", headers=keyed)
    assert (replay.status_code, replay.content) == (200, first.content)
    assert event_types(await get_job(client, org, first_job["id"])).count("en_route") == 1
