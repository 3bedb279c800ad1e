"""Webhooks (API.md, "Webhooks"): registration, the events a job's life and a declined offer send, Standard Webhooks
signatures checked with the `standardwebhooks` package as a receiver would, retries (Retry-After, the 4xx rule),
redelivery, the per-endpoint limit, disabling after 3 days of failures, and tenant isolation. A real local HTTP
receiver takes the deliveries; the app's in-process queue worker sends them."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from litestar.testing import AsyncTestClient
from standardwebhooks import Webhook

from backend.app import create_app
from backend.compliance.services import raise_credential_alerts
from backend.db.engine import make_engine, make_sessionmaker
from backend.settings import load_settings
from backend.webhooks import delivery
from tests.api.jobs_helpers import eventually, post_job, technician, wave
from tests.fakes.receiver import Receiver
from tests.helpers import ADMIN_TOKEN, PROJECT_ID, new_org


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


async def register(client: AsyncTestClient, org: dict, url: str, events=("*",), **extra) -> dict:
    response = await client.post("/v1/webhooks", json={"url": url, "events": list(events), **extra}, headers=org)
    assert response.status_code == 201, response.text
    return response.json()


def verified(secret: str, received) -> dict:
    """The payload, checked as a receiver checks it (raises on a bad signature)."""
    return Webhook(secret).verify(received.body, received.headers)


async def deliveries(client: AsyncTestClient, org: dict, webhook_id: str) -> list[dict]:
    response = await client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=org)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def delivery_when(client, org, webhook_id, predicate, within: float = 15.0) -> dict:
    async def check():
        items = await deliveries(client, org, webhook_id)
        return next((d for d in items if predicate(d)), None)

    return await eventually(check, within=within, what="a delivery")


async def test_register_list_delete(client: AsyncTestClient, receiver: Receiver) -> None:
    org = await new_org(client)
    created = await register(client, org, receiver.url(), events=["job.created", "job.assigned"], description="ERP")
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
    assert created["events"] == ["job.created", "job.assigned"] and created["enabled"] is True
    listed = (await client.get("/v1/webhooks", headers=org)).json()
    assert [w["id"] for w in listed["items"]] == [created["id"]] and listed["next_cursor"] is None
    assert "secret" not in listed["items"][0]
    assert (await client.delete(f"/v1/webhooks/{created['id']}", headers=org)).status_code == 204
    assert (await client.get(f"/v1/webhooks/{created['id']}", headers=org)).status_code == 404
    assert (await client.get("/v1/webhooks", headers=org)).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
        ({"url": "not a url", "events": ["*"]}, "url"),
        ({"url": "https://user:pw@example.com/", "events": ["*"]}, "url"),
        ({"url": "https://example.com/", "events": ["job.exploded"]}, "events"),
        ({"url": "https://example.com/", "events": ["*", "job.created"]}, "events"),
    ],
)
async def test_refused_registrations_name_the_field(client: AsyncTestClient, body: dict, field: str) -> None:
    org = await new_org(client)
    response = await client.post("/v1/webhooks", json=body, headers=org)
    assert response.status_code in (400, 422), response.text
    assert field in response.json()["detail"]


async def test_production_refuses_private_and_plain_http(migrated: str, db: psycopg.Connection) -> None:
    settings = load_settings(
        {
            "TRUCKROLL_ENV": "test",
            "TRUCKROLL_WEBHOOK_ALLOW_PRIVATE": "0",
            "DATABASE_URL": migrated,
            "TRUCKROLL_ADMIN_TOKEN": ADMIN_TOKEN,
            "TRUCKROLL_FIREBASE_PROJECT_ID": PROJECT_ID,
            "TRUCKROLL_WORKER": "external",
            "FIREBASE_AUTH_EMULATOR_HOST": os.environ["FIREBASE_AUTH_EMULATOR_HOST"],
        }
    )
    assert (
        load_settings(
            {
                "TRUCKROLL_ENV": "production",
                "DATABASE_URL": migrated,
                "TRUCKROLL_ADMIN_TOKEN": "x" * 40,
                "TRUCKROLL_FIREBASE_PROJECT_ID": "p",
                "TRUCKROLL_PUSH": "log",
            }
        ).webhooks.allow_private
        is False
    )
    async with AsyncTestClient(create_app(settings)) as client:
        org = await new_org(client)
        for url in (
            "http://example.com/hook",
            "https://127.0.0.1/hook",
            "https://localhost/hook",
            "https://2130706433/hook",
            "https://0177.0.0.1/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "https://[::ffff:10.0.0.1]/hook",
            "https://10.1.2.3/hook",
            "https://[fd00::1]/hook",
            "https://224.0.0.1/hook",
            "https://0.0.0.0/hook",
        ):
            response = await client.post("/v1/webhooks", json={"url": url, "events": ["*"]}, headers=org)
            assert response.status_code == 422, (url, response.text)
            assert response.json()["detail"].startswith("url:"), url


async def test_job_events_are_signed_and_carry_the_job(client: AsyncTestClient, receiver: Receiver) -> None:
    org = await new_org(client)
    hook = await register(client, org, receiver.url())
    await technician(client, org, "wh-ana")
    job = await post_job(client, org, waves=[wave(max_offers=1)])
    got = await receiver.wait_for(2)
    payloads = [verified(hook["secret"], r) for r in got]
    assert sorted(p["type"] for p in payloads) == ["job.created", "job.offering"]
    for received, payload in zip(got, payloads, strict=True):
        assert received.headers["webhook-id"] == payload["id"]
        assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 60
        assert payload["org_id"] and payload["created_at"]
        assert payload["data"]["job"]["id"] == job["id"]
        assert "events" not in payload["data"]["job"]
        assert payload["data"]["job"]["tracking_token"] == job["tracking_token"]
    # A tampered body does not verify.
    with pytest.raises(Exception):  # noqa: B017 - standardwebhooks raises its own WebhookVerificationError
        Webhook(hook["secret"]).verify(got[0].body + b" ", got[0].headers)
    done = await delivery_when(client, org, hook["id"], lambda d: d["status"] == "succeeded")
    assert done["attempts"] == 1 and done["last_status_code"] == 204 and done["next_attempt_at"] is None


async def test_only_the_types_asked_for(client: AsyncTestClient, receiver: Receiver) -> None:
    org = await new_org(client)
    hook = await register(client, org, receiver.url(), events=["job.cancelled"])
    job = await post_job(client, org, auto=False)
    response = await client.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "duplicate"}, headers=org)
    assert response.status_code == 200, response.text
    [received] = await receiver.wait_for(1)
    payload = verified(hook["secret"], received)
    assert payload["type"] == "job.cancelled" and payload["data"]["job"]["status"] == "cancelled"
    # A refused action (cancelling twice) changes nothing and sends nothing.
    response = await client.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "again"}, headers=org)
    assert response.status_code == 409
    await _quiet()
    assert len(receiver.to("/hooks")) == 1


async def _quiet(seconds: float = 1.5) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_offer_declined(client: AsyncTestClient, receiver: Receiver) -> None:
    org = await new_org(client)
    hook = await register(client, org, receiver.url(), events=["offer.declined"])
    _, auth = await technician(client, org, "wh-ben")
    job = await post_job(client, org, waves=[wave(max_offers=1)])
    offers = (await client.get("/v1/me/offers", headers=auth)).json()["items"]
    offer_id = offers[0]["id"]
    response = await client.post(f"/v1/offers/{offer_id}/decline", json={"reason": "too far"}, headers=auth)
    assert response.status_code in (200, 204), response.text
    [received] = await receiver.wait_for(1)
    payload = verified(hook["secret"], received)
    assert payload["type"] == "offer.declined"
    assert payload["data"]["offer"]["job_id"] == job["id"] and payload["data"]["offer"]["reason"] == "too far"


async def test_retry_after_is_honoured_then_delivered(client: AsyncTestClient, receiver: Receiver) -> None:
    org = await new_org(client)
    receiver.answer("/hooks", 503, {"Retry-After": "2"})
    hook = await register(client, org, receiver.url(), events=["job.created"])
    await post_job(client, org, auto=False)
    first, second = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert second.at - first.at >= 1.9
    assert verified(hook["secret"], second)["type"] == "job.created"
    done = await delivery_when(client, org, hook["id"], lambda d: d["status"] == "succeeded")
    assert done["attempts"] == 2


async def test_retried_on_429_and_408_with_backoff(
    client: AsyncTestClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "SCHEDULE", (timedelta(seconds=0.5),) * 11)
    org = await new_org(client)
    receiver.answer("/hooks", 429)
    receiver.answer("/hooks", 408)
    receiver.answer("/hooks", 500)
    hook = await register(client, org, receiver.url(), events=["job.created"])
    await post_job(client, org, auto=False)
    got = await receiver.wait_for(4)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    done = await delivery_when(client, org, hook["id"], lambda d: d["status"] == "succeeded")
    assert done["attempts"] == 4


async def test_a_4xx_fails_at_once_and_can_be_redelivered(client: AsyncTestClient, receiver: Receiver) -> None:
    org = await new_org(client)
    receiver.answer("/hooks", 410, body=b"gone for good")
    hook = await register(client, org, receiver.url(), events=["job.created"])
    await post_job(client, org, auto=False)
    failed = await delivery_when(client, org, hook["id"], lambda d: d["status"] == "failed")
    assert failed["attempts"] == 1 and failed["last_status_code"] == 410 and failed["next_attempt_at"] is None
    assert "gone for good" in failed["last_error"]
    await _quiet()
    [first] = receiver.to("/hooks")
    response = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/{failed['id']}/redeliver", headers=org)
    assert response.status_code == 202, response.text
    _, again = await receiver.wait_for(2)
    assert again.headers["webhook-id"] == first.headers["webhook-id"] and again.body == first.body
    done = await delivery_when(client, org, hook["id"], lambda d: d["status"] == "succeeded")
    assert done["attempts"] == 2 and done["id"] == failed["id"]


async def test_another_organisation_sees_nothing(client: AsyncTestClient, receiver: Receiver) -> None:
    org = await new_org(client)
    other = await new_org(client, "Other Co")
    hook = await register(client, org, receiver.url(), events=["job.created"])
    await post_job(client, org, auto=False)
    done = await delivery_when(client, org, hook["id"], lambda d: d["status"] == "succeeded")
    base = f"/v1/webhooks/{hook['id']}"
    assert (await client.get(base, headers=other)).status_code == 404
    assert (await client.patch(base, json={"enabled": False}, headers=other)).status_code == 404
    assert (await client.get(f"{base}/deliveries", headers=other)).status_code == 404
    assert (await client.post(f"{base}/deliveries/{done['id']}/redeliver", headers=other)).status_code == 404
    assert (await client.delete(base, headers=other)).status_code == 404
    assert (await client.get("/v1/webhooks", headers=other)).json()["items"] == []
    # The other organisation's jobs are not sent to this one's endpoint.
    await post_job(client, other, auto=False)
    await _quiet()
    assert len(receiver.to("/hooks")) == 1
    assert (await client.get(base, headers=org)).status_code == 200


async def test_disabled_after_3_days_of_failures_and_turned_back_on(
    client: AsyncTestClient, receiver: Receiver, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    receiver.answer("/hooks", 500)
    hook = await register(client, org, receiver.url(), events=["job.created"])
    db.execute(
        "UPDATE webhook_endpoints SET failing_since = %s WHERE id = %s",
        (datetime.now(UTC) - timedelta(days=3, minutes=1), hook["id"]),
    )
    await post_job(client, org, auto=False)

    async def disabled():
        got = (await client.get(f"/v1/webhooks/{hook['id']}", headers=org)).json()
        return got if got["disabled_at"] else None

    got = await eventually(disabled, within=15)
    assert got["enabled"] is False and "failing without a success since" in got["disabled_reason"]
    assert "HTTP 500" in got["disabled_reason"]
    # No new event goes to a disabled endpoint.
    await post_job(client, org, auto=False)
    await _quiet()
    assert len(receiver.to("/hooks")) == 1
    response = await client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": True}, headers=org)
    assert response.status_code == 200, response.text
    assert response.json()["enabled"] is True and response.json()["disabled_at"] is None
    await post_job(client, org, auto=False)
    await receiver.wait_for(2)
    # Disabled again by hand, then registering the URL again turns it back on (same endpoint, new secret).
    response = await client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False}, headers=org)
    assert response.json()["disabled_reason"] == "disabled by the organisation"
    again = await register(client, org, receiver.url(), events=["job.created"])
    assert again["id"] == hook["id"] and again["enabled"] is True and again["secret"] != hook["secret"]


async def test_a_slow_receiver_does_not_hold_the_others(client: AsyncTestClient, receiver: Receiver) -> None:
    org = await new_org(client)
    other = await new_org(client, "Quick Co")
    receiver.always("/slow", 204, delay_s=4)
    await register(client, org, receiver.url("/slow"), events=["job.created"])
    await register(client, other, receiver.url("/fast"), events=["job.created"])
    for _ in range(12):
        await post_job(client, org, auto=False)

    async def slow_full():
        return receiver.in_flight.get("/slow") == delivery.SLOTS_PER_ENDPOINT

    await eventually(slow_full, within=10, what="the slow endpoint's slots all taken")
    started = time.monotonic()
    await post_job(client, other, auto=False)
    [fast] = await receiver.wait_for(1, "/fast")
    assert fast.at - started < 2.0, "the fast endpoint waited behind the slow one"
    await receiver.wait_for(12, "/slow", within=40)
    assert receiver.most_in_flight["/slow"] == delivery.SLOTS_PER_ENDPOINT


async def test_production_does_not_connect_to_a_private_address(receiver: Receiver) -> None:
    """At delivery too: a URL registered while it resolved elsewhere is checked again on the address used."""
    sender = delivery.Sender(allow_private=False)
    try:
        outcome = await sender.post(receiver.url().replace("http:", "https:"), "whsec_" + "A" * 44, "msg_1", b"{}")
    finally:
        await sender.aclose()
    assert outcome.status_code is None and outcome.error.startswith("refused: 127.0.0.1 resolves to 127.0.0.1")
    assert receiver.to("/hooks") == []


async def test_compliance_alerts_are_sent(client: AsyncTestClient, receiver: Receiver, settings) -> None:
    org = await new_org(client)
    hook = await register(client, org, receiver.url(), events=["compliance.alert"])
    tech, _ = await technician(client, org, "wh-cleo")
    expires = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    response = await client.put(
        f"/v1/technicians/{tech}/credentials/insurance_liability",
        json={"status": "valid", "expires_at": expires},
        headers=org,
    )
    assert response.status_code == 200, response.text
    engine = make_engine(settings.database)
    try:
        async with make_sessionmaker(engine)() as session:
            assert await raise_credential_alerts(datetime.now(UTC), session=session) == 1
    finally:
        await engine.dispose()
    [received] = await receiver.wait_for(1)
    payload = verified(hook["secret"], received)
    assert payload["type"] == "compliance.alert"
    assert payload["data"]["alert"]["kind"] == "credential_expiring"
    assert payload["data"]["alert"]["technician_id"] == tech


async def test_the_body_is_the_documented_envelope(client: AsyncTestClient, receiver: Receiver) -> None:
    org = await new_org(client)
    await register(client, org, receiver.url(), events=["job.created"])
    job = await post_job(client, org, auto=False)
    [received] = await receiver.wait_for(1)
    body = json.loads(received.body)
    assert set(body) == {"id", "type", "created_at", "org_id", "data"}
    assert body["data"]["job"]["status"] == "open" and body["data"]["job"]["id"] == job["id"]
    assert received.headers["content-type"] == "application/json"
