"""Webhook events: what happens in an organisation, recorded and queued for its endpoints in the very transaction
that makes it happen (API.md, "Webhooks"): a change that rolls back sends nothing, and one that commits cannot lose
its deliveries, which are procrastinate jobs written on the same connection.

Two ways in:

- `emit(session, org_id, type, data)`: any service, at the moment of its change (an offer declined, an alert raised,
  a payable paid). Nothing is written for an organisation with no endpoint taking that type.
- A job's status changes: `backend.jobs.lifecycle.move` (and `created` for a new job) adds the event's row, and the
  session's commit gives it its body, `data.job` being the job as `GET /v1/jobs/{id}` shows it then (without
  `events`), and queues it (`before_commit` below). Savepoints are respected because the row is in the database
  from the flush on: a change undone by a rolled-back savepoint takes its event with it.

The body is fixed once: every attempt and every redelivery POSTs the same bytes under the same `webhook-id`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_session
from sqlalchemy.orm import Session
from sqlalchemy.util import await_only

from backend.closing import money
from backend.db.models import WebhookEndpoint, WebhookEvent
from backend.jobs import services as jobs
from backend.webhooks import delivery
from matching.lifecycle import JobStatus

JOB_CREATED = "job.created"
TYPES: tuple[str, ...] = (
    JOB_CREATED,
    *(
        f"job.{s}"
        for s in (
            JobStatus.OFFERING,
            JobStatus.ASSIGNED,
            JobStatus.EN_ROUTE,
            JobStatus.ON_SITE,
            JobStatus.COMPLETED,
            JobStatus.INCOMPLETE,
            JobStatus.APPROVED,
            JobStatus.CANCELLED,
            JobStatus.UNFILLED,
        )
    ),
    "offer.declined",
    "invitation.created",
    "invitation.accepted",
    "compliance.alert",
    "payable.paid",
)
"""Every event type, in API.md's order. A job's status `s` is announced as `job.{s}` (`open` as `job.created`)."""

ALL = "*"


def job_event_type(status: str) -> str:
    return JOB_CREATED if status == JobStatus.OPEN else f"job.{status}"


class Payload(msgspec.Struct):
    """The body POSTed to the endpoints."""

    id: uuid.UUID
    type: str
    created_at: datetime
    org_id: uuid.UUID
    data: Any


_QUEUE = text(
    """
WITH endpoint AS (
    SELECT id FROM webhook_endpoints
    WHERE org_id = :org_id AND disabled_at IS NULL AND events && ARRAY[CAST(:type AS text), '*']
), event AS (
    INSERT INTO webhook_events (id, org_id, type, job_id, created_at, body)
    SELECT :id, :org_id, :type, CAST(:job_id AS uuid), :created_at, :body WHERE EXISTS (SELECT FROM endpoint)
    ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body
    RETURNING id
)
INSERT INTO webhook_deliveries (id, endpoint_id, event_id, status, attempts, next_attempt_at, created_at)
SELECT gen_random_uuid(), endpoint.id, event.id, 'pending', 0, :created_at, :created_at FROM endpoint, event
RETURNING id
"""
)


async def emit(
    session: AsyncSession,
    org_id: uuid.UUID,
    type_: str,
    data: Any,
    *,
    now: datetime | None = None,
    event_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
) -> None:
    """Record the event and queue one delivery per endpoint of the organisation that takes `type_`, in the session's
    transaction (the caller commits). `data` is anything msgspec encodes (Structs, dicts, Decimal money as numbers).

    For closing the work (issue 11): `await emit(session, org_id, "payable.paid", {"payable": payable_out})` where the
    payable is marked paid, before the commit."""
    if type_ not in TYPES:
        raise ValueError(f"unknown webhook event type {type_!r}")
    event_id = event_id or uuid.uuid4()
    now = now or datetime.now(UTC)
    body = money.encode(Payload(id=event_id, type=type_, created_at=now, org_id=org_id, data=data)).decode()
    deliveries = (
        await session.execute(
            _QUEUE,
            {"id": event_id, "org_id": org_id, "type": type_, "job_id": job_id, "created_at": now, "body": body},
        )
    ).scalars()
    await delivery.queue(session, list(deliveries))


def announce_job(session: Session, job, now: datetime) -> None:
    """The job's new status as an event (written with the job's flush; queued when the session commits)."""
    if job.id is None:
        raise ValueError("a job is announced once it has an id (after its first flush)")
    session.add(
        WebhookEvent(id=uuid.uuid4(), org_id=job.org_id, type=job_event_type(job.status), job_id=job.id, created_at=now)
    )


_UNSENT = "webhooks.unsent"
"""session.info: the ids of the job events flushed in this transaction, to be given their body at its commit."""
_TAKEN = "webhooks.taken"
"""session.info: per organisation, the event types its endpoints take (read once per transaction)."""


def _takes(session: Session, org_id: uuid.UUID, type_: str) -> bool:
    taken = session.info.setdefault(_TAKEN, {})
    if org_id not in taken:
        rows = session.connection().execute(
            select(WebhookEndpoint.events).where(
                WebhookEndpoint.org_id == org_id, WebhookEndpoint.disabled_at.is_(None)
            )
        )
        taken[org_id] = {t for (events,) in rows for t in events}
    return ALL in taken[org_id] or type_ in taken[org_id]


@event.listens_for(Session, "before_flush")
def _keep_taken_job_events(session: Session, flush_context, instances) -> None:
    """A job event nobody takes is dropped before it is written (most organisations have no webhooks)."""
    for obj in list(session.new):
        if isinstance(obj, WebhookEvent) and obj.body is None:
            if _takes(session, obj.org_id, obj.type):
                session.info.setdefault(_UNSENT, []).append(obj.id)
            else:
                session.expunge(obj)


@event.listens_for(Session, "before_commit")
def _queue_job_events(session: Session) -> None:
    if session.in_nested_transaction():
        return
    session.flush()
    unsent = session.info.pop(_UNSENT, None)
    if unsent:
        # The session is an AsyncSession's: this hook runs in its greenlet, where awaiting is allowed.
        await_only(_queue_unsent(async_session(session), unsent))


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_UNSENT, None)
        session.info.pop(_TAKEN, None)


async def _queue_unsent(session: AsyncSession, ids: list[uuid.UUID]) -> None:
    """The job events of this transaction that survived it (a rolled-back savepoint took its own with it)."""
    rows = (
        await session.execute(
            select(
                WebhookEvent.id, WebhookEvent.org_id, WebhookEvent.type, WebhookEvent.job_id, WebhookEvent.created_at
            )
            .where(WebhookEvent.id.in_(ids), WebhookEvent.body.is_(None))
            .order_by(WebhookEvent.created_at)
        )
    ).all()
    for row in rows:
        job = msgspec.to_builtins(await jobs.read(row.org_id, row.job_id, session=session), builtin_types=(Decimal,))
        job.pop("events", None)
        await emit(session, row.org_id, row.type, {"job": job}, now=row.created_at, event_id=row.id, job_id=row.job_id)
