"""PushMessage, PushReport and the development LoggingSender."""

from __future__ import annotations

import logging

import msgspec
import pytest

from notifications import LoggingSender, PushMessage, PushOutcome, PushReport, PushResult, PushSender


@pytest.fixture
def anyio_backend():
    return "asyncio"


def offer(token: str = "device-token-0001") -> PushMessage:
    return PushMessage(
        token=token,
        data={"type": "job_offer", "offer_id": "o-1", "job_id": "j-7", "expires_at": "2026-03-02T09:15:00Z"},
        title="New job",
        body="Tue 9–12",
        ttl_s=180,
        high_priority=True,
        time_sensitive=True,
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"token": "", "data": {}},
        {"token": "t", "data": {"attempt": 2}},
        {"token": "t", "data": {}, "ttl_s": -1},
        {"token": "t", "data": {}, "time_sensitive": True},
    ],
    ids=["empty token", "non-string data value", "negative ttl", "time-sensitive without text"],
)
def test_a_push_fcm_would_reject_cannot_be_built(fields):
    with pytest.raises(ValueError):
        PushMessage(**fields)


def test_a_push_survives_a_trip_through_a_job_queue_payload():
    message = offer()

    assert msgspec.json.decode(msgspec.json.encode(message), type=PushMessage) == message


def test_a_queued_payload_with_non_string_data_is_refused():
    payload = b'{"token": "t", "data": {"attempt": 2}}'

    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(payload, type=PushMessage)


def test_report_tells_the_caller_what_to_drop_and_what_to_retry():
    dead, busy, down, fine = offer("dead"), offer("busy"), offer("down"), offer("fine")
    report = PushReport(
        (
            PushResult(fine, PushOutcome.DELIVERED, message_id="projects/p/messages/1"),
            PushResult(dead, PushOutcome.UNREGISTERED),
            PushResult(busy, PushOutcome.RETRYABLE, retry_after_s=30.0),
            PushResult(down, PushOutcome.RETRYABLE),
            PushResult(dead, PushOutcome.UNREGISTERED),
            PushResult(offer("bad"), PushOutcome.INVALID, error="INVALID_ARGUMENT"),
        )
    )

    assert report.delivered_count == 1
    assert report.unregistered_tokens == ["dead"]
    assert report.retryable == [busy, down]
    assert report.retry_after_s == 30.0
    assert PushReport().retry_after_s is None


@pytest.mark.anyio
async def test_logging_sender_logs_each_push_and_reports_it_delivered(caplog):
    sender: PushSender = LoggingSender()
    caplog.set_level(logging.INFO, logger="truckroll.push")

    report = await sender.send([offer(), offer("device-token-0002")])
    await sender.aclose()

    assert report.delivered_count == 2
    assert len({r.message_id for r in report.results}) == 2
    records = [r for r in caplog.records if r.name == "truckroll.push"]
    assert len(records) == 2
    assert "job_offer" in records[0].getMessage()
    assert "ken-0002" in records[1].getMessage()
