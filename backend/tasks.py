"""The queue's tasks, all registered in one place: `make_queue` builds the queue with every task declared on
the blueprint (`backend.queue.tasks`) — a wave's deadline (backend.jobs.dispatch), push delivery (backend.push)
and the maintenance below: the purge of old ping history and of idempotency keys, the release of ratings and
the daily credential alerts. They run in `truckroll worker` (or inside the server process with
TRUCKROLL_WORKER=inprocess, as `make run` does)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import procrastinate

from backend import push
from backend.closing import approval
from backend.compliance.services import raise_credential_alerts
from backend.idempotency import RETENTION as IDEMPOTENCY_RETENTION
from backend.idempotency import purge_expired as purge_idempotency_keys
from backend.jobs import dispatch
from backend.queue import STALLED_AFTER_S, queue_with, runtime_of, tasks
from backend.ratings.services import release_due
from backend.tracking.services import purge_pings
from backend.webhooks import delivery as webhook_delivery

log = logging.getLogger("truckroll.tasks")

# The modules whose tasks the queue runs besides these (importing them declares their tasks).
TASK_MODULES = (dispatch, push, approval, webhook_delivery)


def make_queue(sqlalchemy_url: str) -> procrastinate.App:
    return queue_with(sqlalchemy_url, tasks)


async def retry_stalled(queue: procrastinate.App) -> int:
    """Hand back to the queue the tasks whose worker stopped sending heartbeats while running them (it was
    killed, or its host was lost): they run again, elsewhere. Every task is safe to run twice: a wave's deadline
    closes the wave once whatever happens (`close_wave` only expires offers still pending and only starts the next
    wave from the current one), and a push sent twice carries the same offer and collapse key, which the phone
    shows once."""
    stalled = await queue.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_S)
    for job in stalled:
        await queue.job_manager.retry_job(job)
    if stalled:
        log.warning("retrying %d tasks whose worker died: %s", len(stalled), ", ".join(j.task_name for j in stalled))
    return len(stalled)


# Every minute, by whichever worker takes it first.
@tasks.periodic(cron="* * * * *")
@tasks.task(name="retry_stalled_tasks", queue="maintenance", pass_context=True, queueing_lock="retry_stalled_tasks")
async def retry_stalled_tasks(context: procrastinate.JobContext, timestamp: int) -> None:
    await retry_stalled(context.app)


def _at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


# Every hour; with several workers, procrastinate defers each run once.
@tasks.periodic(cron="17 * * * *")
@tasks.task(name="purge_pings", queue="maintenance", pass_context=True)
async def purge_old_pings(context: procrastinate.JobContext, timestamp: int) -> None:
    runtime = runtime_of(context)
    retention = timedelta(days=runtime.tracking.ping_retention_days)
    purged = await purge_pings(runtime.sessionmaker, _at(timestamp), retention)
    if purged:
        log.info("purged %d location pings older than %s", purged, retention)


# Every hour: replies kept for an Idempotency-Key are forgotten after 48 h.
@tasks.periodic(cron="47 * * * *")
@tasks.task(name="purge_idempotency_keys", queue="maintenance", pass_context=True)
async def forget_idempotency_keys(context: procrastinate.JobContext, timestamp: int) -> None:
    async with runtime_of(context).sessionmaker() as session:
        keys = await purge_idempotency_keys(_at(timestamp), session=session)
    if keys:
        log.info("forgot %d idempotency keys older than %s", keys, IDEMPOTENCY_RETENTION)


# Every hour: ratings whose 14-day window has closed with the other side silent count from now on
# (reading them is exact without this; only the members' aggregates wait for it).
@tasks.periodic(cron="23 * * * *")
@tasks.task(name="release_ratings", queue="maintenance", pass_context=True)
async def release_ratings(context: procrastinate.JobContext, timestamp: int) -> None:
    async with runtime_of(context).sessionmaker() as session:
        released = await release_due(_at(timestamp), session=session)
    if released:
        log.info("released %d ratings whose window closed", released)


# Daily: credentials about to expire (within 30 days) or expired, each alerted once.
@tasks.periodic(cron="5 4 * * *")
@tasks.task(name="credential_alerts", queue="maintenance", pass_context=True)
async def credential_alerts(context: procrastinate.JobContext, timestamp: int) -> None:
    async with runtime_of(context).sessionmaker() as session:
        raised = await raise_credential_alerts(_at(timestamp), session=session)
    if raised:
        log.info("raised %d credential alerts", raised)
