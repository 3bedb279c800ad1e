"""PushMessage, PushReport and the development LoggingSender."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from notifications import LoggingSender, PushMessage, PushOutcome, PushReport, PushResult, PushSender
from notifications.messages import JobAssigned, JobOffer, Notice, OfferWithdrawn


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


# --- the typed notices (notifications.messages): what each kind of push carries and how it is delivered -----

EXPIRES = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def test_a_job_offer_is_a_visible_urgent_push_that_lives_as_long_as_the_offer():
    notice = JobOffer(
        technician_id="t-1", job_id="j-7", offer_id="o-1", expires_at=EXPIRES, title="Fix a till", distance_m=2345.0
    )

    push = notice.to_push("device-1", EXPIRES - timedelta(seconds=120))

    assert push.data == {"type": "job_offer", "offer_id": "o-1", "job_id": "j-7", "expires_at": EXPIRES.isoformat()}
    assert (push.title, push.body) == ("New job: Fix a till", "2.3 km away — reply before 09:15 UTC")
    assert (push.ttl_s, push.high_priority, push.time_sensitive, push.collapse_key) == (120, True, True, "o-1")


def test_a_withdrawn_offer_is_a_silent_push_that_replaces_the_offer_on_the_phone():
    push = OfferWithdrawn(technician_id="t-1", job_id="j-7", offer_id="o-1").to_push("device-1", EXPIRES)

    assert push.data == {"type": "offer_withdrawn", "offer_id": "o-1", "job_id": "j-7"}
    assert not push.visible and not push.high_priority and push.ttl_s is None
    assert push.collapse_key == "o-1"


def test_a_direct_assignment_is_a_visible_push_keyed_by_the_job():
    push = JobAssigned(technician_id="t-1", job_id="j-7", title="Fix a till", window_start=EXPIRES).to_push(
        "d", EXPIRES
    )

    assert push.data == {"type": "job_assigned", "job_id": "j-7"}
    assert push.title == "Job assigned: Fix a till" and push.body == "On site Mon 02 Mar 09:15 UTC"
    assert (push.high_priority, push.collapse_key) == (False, "j-7")


def test_notices_survive_the_trip_through_the_queue_as_json():
    notices = [
        JobOffer(technician_id="t", job_id="j", offer_id="o", expires_at=EXPIRES, title="x", distance_m=1.5),
        OfferWithdrawn(technician_id="t", job_id="j", offer_id="o"),
        JobAssigned(technician_id="t", job_id="j", title="x", window_start=EXPIRES),
    ]

    payload = json.loads(json.dumps(msgspec.to_builtins(notices)))

    assert msgspec.convert(payload, list[Notice]) == notices
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert([{"type": "job_message", "technician_id": "t", "job_id": "j"}], list[Notice])


def test_an_offer_push_sent_late_lives_only_what_is_left_of_the_offer_and_not_at_all_once_it_expired():
    notice = JobOffer(technician_id="t", job_id="j", offer_id="o", expires_at=EXPIRES, title="x", distance_m=1.0)

    assert notice.to_push("d", EXPIRES - timedelta(seconds=100.2)).ttl_s == 101
    assert notice.to_push("d", EXPIRES - timedelta(milliseconds=1)).ttl_s == 1
    assert not notice.stale(EXPIRES - timedelta(milliseconds=1))
    assert notice.stale(EXPIRES)
