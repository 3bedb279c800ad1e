"""Webhook events and their deliveries exist exactly when the change that causes them commits, and a worker killed
with SIGKILL in the middle of a batch of deliveries loses none of them: the batch is delivered at least once by
another worker. Workers are real `truckroll worker` processes (as in test_queue_crash)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from backend.db.engine import make_engine, make_sessionmaker
from backend.jobs import services as jobs
from backend.jobs.lifecycle import move
from backend.settings import Settings
from matching.lifecycle import Action
from tests.api.jobs_helpers import post_job
from tests.fakes.receiver import Receiver
from tests.helpers import new_org
from tests.integration.test_queue_crash import api, env, external, handed_back, kill_9, queue, workers  # noqa: F401

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def counts(db: psycopg.Connection, job_id: str) -> tuple[int, int, int]:
    """(job.cancelled events, their deliveries, their queued attempts) for the job."""
    events = db.execute(
        "SELECT count(*) FROM webhook_events WHERE job_id = %s AND type = 'job.cancelled'", (job_id,)
    ).fetchone()[0]
    deliveries = db.execute(
        "SELECT count(*) FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id "
        "WHERE e.job_id = %s AND e.type = 'job.cancelled'",
        (job_id,),
    ).fetchone()[0]
    attempts = db.execute(
        "SELECT count(*) FROM procrastinate_jobs j JOIN webhook_deliveries d ON j.args->>'delivery_id' = d.id::text "
        "JOIN webhook_events e ON e.id = d.event_id WHERE j.task_name = 'deliver_webhook' AND e.job_id = %s "
        "AND e.type = 'job.cancelled'",
        (job_id,),
    ).fetchone()[0]
    return events, deliveries, attempts


async def test_an_event_exists_only_if_its_change_commits(
    api: AsyncTestClient,  # noqa: F811
    external: Settings,  # noqa: F811
    db: psycopg.Connection,
    receiver: Receiver,
) -> None:
    org = await new_org(api)
    response = await api.post("/v1/webhooks", json={"url": receiver.url(), "events": ["*"]}, headers=org)
    assert response.status_code == 201
    job_id = uuid.UUID((await post_job(api, org, auto=False))["id"])
    engine = make_engine(external.database)
    sessions = make_sessionmaker(engine)
    try:
        # Rolled back: nothing.
        async with sessions() as session:
            row = await jobs.load_any(job_id, session=session, lock=True)
            move(row.Job, Action.CANCEL, datetime.now(UTC))
            await session.flush()
            await session.rollback()
        assert counts(db, str(job_id)) == (0, 0, 0)
        # Undone by a savepoint that rolled back, in a transaction that commits: nothing.
        async with sessions() as session:
            row = await jobs.load_any(job_id, session=session, lock=True)
            savepoint = await session.begin_nested()
            move(row.Job, Action.CANCEL, datetime.now(UTC))
            await session.flush()
            await savepoint.rollback()
            await session.commit()
        assert counts(db, str(job_id)) == (0, 0, 0)
        assert db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()[0] == "open"
        # Committed: the event, its delivery and the queued attempt, together.
        async with sessions() as session:
            row = await jobs.load_any(job_id, session=session, lock=True)
            move(row.Job, Action.CANCEL, datetime.now(UTC))
            await session.commit()
        assert counts(db, str(job_id)) == (1, 1, 1)
        body = db.execute(
            "SELECT body FROM webhook_events WHERE job_id = %s AND type = 'job.cancelled'", (job_id,)
        ).fetchone()[0]
        assert '"status":"cancelled"' in body
    finally:
        await engine.dispose()


async def test_a_worker_killed_mid_batch_loses_no_delivery(
    api: AsyncTestClient,  # noqa: F811
    db: psycopg.Connection,
    queue,  # noqa: F811
    workers,  # noqa: F811
    receiver: Receiver,
) -> None:
    receiver.always("/hooks", 204, delay_s=0.5)
    org = await new_org(api)
    response = await api.post("/v1/webhooks", json={"url": receiver.url(), "events": ["job.created"]}, headers=org)
    assert response.status_code == 201
    batch = 24
    for _ in range(batch):
        await post_job(api, org, auto=False)
    events = {str(r[0]) for r in db.execute("SELECT id FROM webhook_events WHERE type = 'job.created'")}
    assert len(events) == batch

    first = workers()
    deadline = time.monotonic() + 30
    # Killed while it holds deliveries in hand: some answered, others in flight.
    while len(receiver.to("/hooks")) < 3 or not receiver.in_flight.get("/hooks"):
        assert time.monotonic() < deadline, "the first worker never got going"
        await asyncio.sleep(0.01)
    kill_9(first)
    delivered_before = {r.headers["webhook-id"] for r in receiver.to("/hooks")}
    assert len(delivered_before) < batch, "the batch should have been cut short"

    workers()

    def all_delivered() -> bool:
        got = {r.headers["webhook-id"] for r in receiver.to("/hooks")}
        pending = db.execute("SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded'").fetchone()[0]
        return got == events and pending == 0

    await handed_back(queue, all_delivered, within=90)
    assert {r.headers["webhook-id"] for r in receiver.to("/hooks")} == events
