"""FcmSender: the real firebase-admin SDK talking HTTP to a local fake FCM."""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from firebase_admin import messaging

from notifications import PushMessage, PushOutcome
from notifications.fcm import FcmSender
from tests.fakes.fcm import (
    FakeFcmServer,
    fcm_error,
    internal,
    invalid_argument,
    project_rate_limited,
    quota_exceeded,
    sender_id_mismatch,
    unavailable,
    unregistered,
)

PROJECT = "truckroll-test"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def fcm():
    with FakeFcmServer(PROJECT) as server:
        yield server


@pytest.fixture
async def sender(fcm, anyio_backend):
    sender = FcmSender(PROJECT, endpoint=fcm.url)
    yield sender
    await sender.aclose()


@pytest.fixture
def sdk_calls(monkeypatch):
    """Sizes of the lists handed to the SDK's send_each_async, which still does the sending."""
    sizes: list[int] = []
    send_each_async = messaging.send_each_async

    async def recording(messages, dry_run=False, app=None):
        sizes.append(len(messages))
        return await send_each_async(messages, dry_run, app)

    monkeypatch.setattr(messaging, "send_each_async", recording)
    return sizes


def job_offer(token: str, offer_id: str = "o-1") -> PushMessage:
    return PushMessage(
        token=token,
        data={"type": "job_offer", "offer_id": offer_id, "job_id": "j-7", "expires_at": "2026-03-02T09:15:00Z"},
        title="New job: replace hard drive",
        body="Tue 9–12 · 4.2 km away",
        ttl_s=180,
        high_priority=True,
        time_sensitive=True,
        collapse_key=f"offer-{offer_id}",
    )


def withdrawn(token: str) -> PushMessage:
    return PushMessage(token=token, data={"type": "offer_withdrawn", "offer_id": "o-1", "job_id": "j-7"})


@pytest.mark.anyio
async def test_job_offer_reaches_fcm_as_a_visible_high_priority_time_sensitive_push(fcm, sender):
    before = time.time()
    report = await sender.send([job_offer("device-token-1")])
    after = time.time()

    [result] = report.results
    assert result.outcome is PushOutcome.DELIVERED
    assert result.message_id == f"projects/{PROJECT}/messages/1"
    [request] = fcm.requests
    assert request.path == f"/v1/projects/{PROJECT}/messages:send"
    assert "authorization" not in request.headers  # anonymous credentials for the fake
    message = request.message
    assert message["token"] == "device-token-1"
    assert "fid" not in message
    assert message["data"] == {
        "type": "job_offer",
        "offer_id": "o-1",
        "job_id": "j-7",
        "expires_at": "2026-03-02T09:15:00Z",
    }
    assert message["notification"] == {"title": "New job: replace hard drive", "body": "Tue 9–12 · 4.2 km away"}
    assert message["android"] == {
        "priority": "high",
        "ttl": "180s",
        "collapse_key": "offer-o-1",
        "notification": {"tag": "offer-o-1"},
    }
    headers = message["apns"]["headers"]
    assert headers["apns-priority"] == "10"
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-collapse-id"] == "offer-o-1"
    assert int(before) + 180 <= int(headers["apns-expiration"]) <= int(after) + 180
    assert message["apns"]["payload"] == {"aps": {"interruption-level": "time-sensitive"}}


@pytest.mark.anyio
async def test_data_only_push_wakes_ios_apps_in_the_background(fcm, sender):
    report = await sender.send([withdrawn("device-token-1")])

    assert report.delivered_count == 1
    message = fcm.requests[0].message
    assert message["data"] == {"type": "offer_withdrawn", "offer_id": "o-1", "job_id": "j-7"}
    assert "notification" not in message
    assert message["android"] == {"priority": "normal"}
    assert message["apns"]["headers"] == {"apns-push-type": "background", "apns-priority": "5"}
    assert message["apns"]["payload"] == {"aps": {"content-available": 1}}


@pytest.mark.anyio
async def test_1200_pushes_go_out_in_calls_of_at_most_500(fcm, sdk_calls, anyio_backend):
    # The fake speaks HTTP/1.1 only: 500 concurrent requests queue for httpx's 100 connections, its
    # pool spends CPU in proportion to queued requests x connections, and the wait counts against the
    # timeout. Hence one call at a time and a generous timeout. Against FCM, HTTP/2 multiplexes every
    # request over one connection and nothing queues.
    sender = FcmSender(PROJECT, endpoint=fcm.url, max_concurrency=1, timeout_s=120)
    messages = [job_offer(f"device-{n}", offer_id=str(n)) for n in range(1200)]
    try:
        report = await sender.send(messages)
    finally:
        await sender.aclose()

    assert sorted(sdk_calls) == [200, 500, 500]
    assert report.delivered_count == 1200
    assert [r.message for r in report.results] == messages  # results in the order given
    assert len({r.message_id for r in report.results}) == 1200
    assert {r.message["token"] for r in fcm.requests} == {f"device-{n}" for n in range(1200)}


@pytest.mark.anyio
async def test_dead_tokens_are_reported_for_removal(fcm, sender):
    fcm.fail("uninstalled", unregistered())
    fcm.fail("other-project", sender_id_mismatch())

    report = await sender.send(
        [job_offer("uninstalled"), job_offer("alive"), withdrawn("uninstalled"), withdrawn("other-project")]
    )

    assert report.unregistered_tokens == ["uninstalled", "other-project"]
    assert report.delivered_count == 1
    assert report.retryable == []


@pytest.mark.anyio
async def test_quota_exceeded_is_retried_later_as_fcm_asks(fcm, sender):
    fcm.fail("chatty-device", quota_exceeded(retry_after_s=30))
    fcm.fail("busy-project", project_rate_limited(retry_after_s=60))
    fcm.fail("no-hint", quota_exceeded(retry_after_s=None))
    until = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    fcm.fail("until-date", fcm_error(429, "RESOURCE_EXHAUSTED", "Slow down.", headers={"Retry-After": until}))
    tokens = ["chatty-device", "busy-project", "no-hint", "until-date", "fine"]

    report = await sender.send([job_offer(token) for token in tokens])

    outcomes = {r.message.token: (r.outcome, r.retry_after_s) for r in report.results}
    assert outcomes["chatty-device"] == (PushOutcome.RETRYABLE, 30.0)
    assert outcomes["busy-project"] == (PushOutcome.RETRYABLE, 60.0)
    assert outcomes["no-hint"] == (PushOutcome.RETRYABLE, None)
    assert outcomes["until-date"][0] is PushOutcome.RETRYABLE
    assert 80 <= outcomes["until-date"][1] <= 90
    assert outcomes["fine"] == (PushOutcome.DELIVERED, None)
    assert [m.token for m in report.retryable] == tokens[:4]
    assert report.retry_after_s == outcomes["until-date"][1]  # the longest wait asked for
    assert report.unregistered_tokens == []


@pytest.mark.anyio
async def test_fcm_outage_is_retryable(fcm, sender):
    # The SDK itself retries 500 and 503 with backoff (about 7 s) before reporting them.
    fcm.fail("a", unavailable())
    fcm.fail("b", internal())

    report = await sender.send([job_offer("a"), job_offer("b")])

    assert [r.outcome for r in report.results] == [PushOutcome.RETRYABLE, PushOutcome.RETRYABLE]
    assert [m.token for m in report.retryable] == ["a", "b"]
    assert report.unregistered_tokens == []


@pytest.mark.anyio
async def test_rejected_push_is_not_retried(fcm, sender):
    fcm.fail("garbled", invalid_argument())

    report = await sender.send([job_offer("garbled")])

    [result] = report.results
    assert result.outcome is PushOutcome.INVALID
    assert "INVALID_ARGUMENT" in (result.error or "")
    assert report.retryable == []
    assert report.unregistered_tokens == []


@pytest.mark.anyio
async def test_unreachable_fcm_makes_every_push_retryable(anyio_backend):
    with FakeFcmServer(PROJECT) as fcm:
        endpoint = fcm.url
    sender = FcmSender(PROJECT, endpoint=endpoint)
    try:
        messages = [job_offer("device-1"), withdrawn("device-2"), job_offer("device-3")]
        report = await sender.send(messages)
    finally:
        await sender.aclose()

    assert report.retryable == messages
    assert report.delivered_count == 0


@pytest.mark.anyio
async def test_connection_dropped_without_an_answer_is_retryable(fcm, sender):
    fcm.hang_up("behind-a-flaky-proxy")

    report = await sender.send([job_offer("behind-a-flaky-proxy"), job_offer("fine")])

    assert [r.outcome for r in report.results] == [PushOutcome.RETRYABLE, PushOutcome.DELIVERED]


@pytest.mark.anyio
async def test_fcm_answering_too_slowly_is_retryable(fcm, anyio_backend):
    fcm.stall("slow", 2.0)
    sender = FcmSender(PROJECT, endpoint=fcm.url, timeout_s=0.3)
    try:
        report = await sender.send([job_offer("slow"), job_offer("quick")])
    finally:
        await sender.aclose()

    assert [r.outcome for r in report.results] == [PushOutcome.RETRYABLE, PushOutcome.DELIVERED]


@pytest.mark.anyio
async def test_nothing_to_send_calls_nobody(fcm, sender, sdk_calls):
    report = await sender.send([])

    assert report.results == ()
    assert sdk_calls == []
    assert fcm.requests == []


@pytest.mark.anyio
async def test_a_closed_sender_refuses_to_send(fcm, anyio_backend):
    sender = FcmSender(PROJECT, endpoint=fcm.url)
    await sender.send([withdrawn("t")])
    await sender.aclose()

    with pytest.raises(RuntimeError):
        await sender.send([withdrawn("t")])


def test_one_sender_serves_two_running_event_loops(fcm):
    other_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=other_loop.run_forever)
    thread.start()
    sender = FcmSender(PROJECT, endpoint=fcm.url)

    async def main():
        here = await sender.send([withdrawn("from-main-loop")])
        there = await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(sender.send([withdrawn("from-other-loop")]), other_loop)
        )
        await sender.aclose()  # closes the other loop's HTTP client on that loop
        return here, there

    try:
        here, there = asyncio.run(main())
    finally:
        other_loop.call_soon_threadsafe(other_loop.stop)
        thread.join()
        other_loop.close()

    assert (here.delivered_count, there.delivered_count) == (1, 1)
    assert {r.message["token"] for r in fcm.requests} == {"from-main-loop", "from-other-loop"}


def test_two_senders_in_two_threads_each_with_its_event_loop(fcm):
    reports = {}

    def worker(name: str) -> None:
        async def run():
            sender = FcmSender(PROJECT, endpoint=fcm.url)
            try:
                return await sender.send([job_offer(f"{name}-{n}", offer_id=str(n)) for n in range(50)])
            finally:
                await sender.aclose()

        reports[name] = asyncio.run(run())

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("east", "west")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {name: report.delivered_count for name, report in reports.items()} == {"east": 50, "west": 50}
    assert len(fcm.wait_for_requests(100)) == 100


# The first loop's kept-alive connections can only be closed on that loop, which asyncio.run() has
# already closed: they are reclaimed by the garbage collector, with a ResourceWarning.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_one_sender_across_successive_event_loops(fcm):
    sender = FcmSender(PROJECT, endpoint=fcm.url)

    first = asyncio.run(sender.send([withdrawn("first")]))

    async def second_then_close():
        try:
            return await sender.send([withdrawn("second")])
        finally:
            await sender.aclose()

    second = asyncio.run(second_then_close())

    assert (first.delivered_count, second.delivered_count) == (1, 1)
