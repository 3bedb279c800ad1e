"""The durable job queue (procrastinate on the same PostgreSQL): offer deadlines, push delivery, maintenance.

Tasks are declared where their work lives, on the `tasks` blueprint (`@tasks.task(...)`), and deferred by the
task itself: `await defer(session, queue, close_wave_task, job_id=...)`. Work is deferred on the connection of
the transaction that causes it, so it exists if and only if that transaction commits: an offer and its push
are never separated by a crash. `backend.tasks.make_queue` builds the queue with every task registered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import procrastinate
from procrastinate.tasks import Task
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db.engine import KEEPALIVES, UNAVAILABLE
from backend.settings import TrackingSettings, libpq_url
from matching import MatchSettings
from notifications import PushSender

log = logging.getLogger("truckroll.queue")

QUEUES = ["dispatch", "push", "maintenance"]

tasks = procrastinate.Blueprint()
"""Every task of the queue. A blueprint only declares them; each queue (`queue_with`) registers them afresh,
so that several queues in one process (tests, benchmarks) never share or rename a task."""


@dataclass
class Runtime:
    """What the tasks need, handed to the worker as its context (`context.additional_context["runtime"]`)."""

    sessionmaker: async_sessionmaker[AsyncSession]
    sender: PushSender
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    matching: MatchSettings = field(default_factory=MatchSettings)
    """How a wave's candidates are ranked (`Settings.matching`)."""


class UntilTheDatabaseAnswers(procrastinate.BaseRetryStrategy):
    """A task that failed because the database was unavailable (down, frozen, failing over: it gave up after
    TRUCKROLL_DB_TIMEOUT_S) runs again, 1, 2, 4 … up to 30 s later, for as long as it takes: a wave's deadline
    or an offer's push must not be lost to an outage. Any other failure is a bug, and is not retried."""

    def get_retry_decision(self, *, exception: BaseException, job) -> procrastinate.RetryDecision | None:
        if not isinstance(exception, UNAVAILABLE):
            return None
        return procrastinate.RetryDecision(retry_in={"seconds": min(2**job.attempts, 30)})


RETRY_ON_OUTAGE = UntilTheDatabaseAnswers()


def runtime_of(context: procrastinate.JobContext) -> Runtime:
    return context.additional_context["runtime"]


def queue_with(sqlalchemy_url: str, blueprint: procrastinate.Blueprint) -> procrastinate.App:
    """A queue on the database with the blueprint's tasks (and periodic tasks) registered under their names."""
    app = procrastinate.App(
        # Keepalives: on a network partition the worker's connections fail within seconds instead of hanging
        # until the kernel gives up on them.
        connector=procrastinate.PsycopgConnector(
            conninfo=libpq_url(sqlalchemy_url), min_size=1, max_size=4, kwargs=KEEPALIVES
        ),
    )
    for task in blueprint.tasks.values():
        app.task(
            name=task.name,
            queue=task.queue,
            pass_context=task.pass_context,
            retry=task.retry_strategy or False,
            lock=task.lock,
            queueing_lock=task.queueing_lock,
            priority=task.priority,
        )(task.func)
    for periodic in blueprint.periodic_registry.periodic_tasks.values():
        app.periodic_registry.register_task(
            task=app.tasks[periodic.task.name],
            cron=periodic.cron,
            periodic_id=periodic.periodic_id,
            configure_kwargs=periodic.configure_kwargs,
        )
    return app


async def _raw_connection(session: AsyncSession):
    connection = await session.connection()
    return (await connection.get_raw_connection()).driver_connection


async def defer(
    session: AsyncSession, queue: procrastinate.App, task: Task, *, at: datetime | None = None, **args: Any
) -> None:
    """Enqueue `task` in the session's transaction (it runs only if the transaction commits)."""
    options: dict[str, Any] = {"connection": await _raw_connection(session)}
    if at is not None:
        options["schedule_at"] = at
    await queue.tasks[task.name].configure(**options).defer_async(**args)


async def defer_now(queue: procrastinate.App, task: Task, *, at: datetime | None = None, **args: Any) -> None:
    """Enqueue `task` on the queue's own connection: for work that follows work already committed."""
    await queue.tasks[task.name].configure(schedule_at=at).defer_async(**args)


async def run_supervised_worker(app: procrastinate.App, **options: Any) -> None:
    """Run a worker for the life of the process, restarting it after a database outage kills it."""
    delay = 1.0
    while True:
        started = time.monotonic()
        this = asyncio.current_task()
        try:
            await app.run_worker_async(install_signal_handlers=False, **options)
        except asyncio.CancelledError:
            raise
        except Exception:
            if this is not None and this.cancelling():
                raise asyncio.CancelledError from None  # an error during a requested shutdown ends it
            log.exception("queue worker crashed; restarting in %.0f s", delay)
        else:
            if this is not None and this.cancelling():
                raise asyncio.CancelledError
            log.warning("queue worker stopped on its own; restarting")
        if time.monotonic() - started > 60:
            delay = 1.0
        await asyncio.sleep(delay)
        # API.md: service resumes within 5 s of the database's return, the queue included.
        delay = min(delay * 2, 2.0)


WORKER_OPTIONS = {
    "queues": QUEUES,
    "concurrency": 8,
    # Scheduled jobs (offer deadlines) are noticed on a poll, not by LISTEN/NOTIFY: poll twice a second.
    "fetch_job_polling_interval": 0.5,
    "shutdown_graceful_timeout": 10,
    "delete_jobs": "successful",
    # A worker proves it is alive every 2 s; one silent for STALLED_AFTER_S is taken for dead (kill -9, a lost
    # host) and the tasks it was running are handed back to the queue (backend.tasks.retry_stalled).
    "update_heartbeat_interval": 2.0,
    "stalled_worker_timeout": 10.0,
}
STALLED_AFTER_S = 10.0
