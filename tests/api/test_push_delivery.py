"""Pushes that FCM defers are delivered later; nothing in the app's own sender is mocked."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from tests.api.jobs_helpers import post_job, pushes, pushes_when, technician, wave
from tests.fakes.fcm import FakeFcmServer, quota_exceeded
from tests.helpers import new_org


async def test_an_offer_push_refused_for_quota_is_retried_until_it_arrives(
    client: AsyncTestClient, fcm: FakeFcmServer
) -> None:
    org = await new_org(client)
    await technician(client, org, "quota")
    fcm.fail("tok-quota", quota_exceeded(retry_after_s=1))

    job = await post_job(client, org, waves=[wave(max_offers=1)])
    offer_pushes = lambda seen: [d for t, d in seen if t == "tok-quota" and d.get("job_id") == job["id"]]  # noqa: E731
    await pushes_when(fcm, lambda seen: len(offer_pushes(seen)) >= 1)
    fcm.recover("tok-quota")

    # FCM asked to come back in a second: the same offer is sent again, and this time accepted.
    seen = await pushes_when(fcm, lambda seen: len(offer_pushes(seen)) >= 2, within=15)
    assert {d["offer_id"] for d in offer_pushes(seen)} == {job["offers"][0]["id"]}
    assert all(d["type"] == "job_offer" for d in offer_pushes(pushes(fcm)))
