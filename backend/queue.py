"""The durable job queue (procrastinate on the same PostgreSQL): offer deadlines and push delivery.

Work is deferred on the connection of the transaction that causes it, so it exists if and only if that
transaction commits: an offer and its push are never separated by a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

import procrastinate
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger("truckroll.queue")

QUEUES = ["dispatch", "push", "maintenance"]


def libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def make_queue(sqlalchemy_url: str) -> procrastinate.App:
    from backend import tasks

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=libpq_url(sqlalchemy_url), min_size=1, max_size=4),
    )
    tasks.register(app)
    return app


async def _raw_connection(session: AsyncSession):
    connection = await session.connection()
    return (await connection.get_raw_connection()).driver_connection


async def defer(
    session: AsyncSession, queue: procrastinate.App, task: str, *, at: datetime | None = None, **args: Any
) -> None:
    """Enqueue `task` in the session's transaction (it runs only if the transaction commits)."""
    options: dict[str, Any] = {"connection": await _raw_connection(session)}
    if at is not None:
        options["schedule_at"] = at
    await queue.tasks[task].configure(**options).defer_async(**args)


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
        delay = min(delay * 2, 30.0)


WORKER_OPTIONS = {
    "queues": QUEUES,
    "concurrency": 8,
    # Scheduled jobs (offer deadlines) are noticed on a poll, not by LISTEN/NOTIFY: poll twice a second.
    "fetch_job_polling_interval": 0.5,
    "shutdown_graceful_timeout": 10,
    "delete_jobs": "successful",
}
