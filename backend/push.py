"""Push delivery: the sender the settings ask for, and the queue task that turns notices into pushes.

Notices (`notifications.messages`) are queued with the change that causes them; `deliver_push` sends one
push per registered device of each addressee, drops the tokens FCM says are dead and sends again, later,
what it could not deliver for now.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import procrastinate
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Device
from backend.queue import RETRY_ON_OUTAGE, Runtime, defer, defer_now, runtime_of, tasks
from backend.settings import PushSettings
from notifications import LoggingSender, PushSender
from notifications.messages import Notice

log = logging.getLogger("truckroll.tasks")
MAX_PUSH_ATTEMPTS = 8


def make_sender(settings: PushSettings, project_id: str) -> PushSender:
    if settings.mode == "log":
        return LoggingSender()
    from notifications.fcm import FcmSender

    return FcmSender(project_id, endpoint=settings.fcm_endpoint, credentials_file=settings.credentials_file)


async def send_later(session: AsyncSession, queue: procrastinate.App, notices: list[Notice]) -> None:
    """Queue the notices in the session's transaction: they are pushed if and only if it commits."""
    if notices:
        await defer(session, queue, deliver_push, messages=msgspec.to_builtins(notices))


@tasks.task(name="deliver_push", queue="push", pass_context=True, retry=RETRY_ON_OUTAGE)
async def deliver_push(context: procrastinate.JobContext, messages: list[dict], attempt: int = 0) -> None:
    await push(runtime_of(context), context.app, msgspec.convert(messages, list[Notice]), attempt)


async def push(runtime: Runtime, queue: procrastinate.App, notices: list[Notice], attempt: int) -> None:
    """Send to every registered device of each addressee; drop dead tokens; retry what FCM deferred."""
    now = datetime.now(UTC)
    notices = [n for n in notices if not n.stale(now)]
    if not notices:
        return
    ids = {uuid.UUID(n.technician_id) for n in notices}
    async with runtime.sessionmaker() as session:
        devices = (
            await session.execute(select(Device.technician_id, Device.token).where(Device.technician_id.in_(ids)))
        ).all()
    tokens: dict[str, list[str]] = {}
    for technician_id, token in devices:
        tokens.setdefault(str(technician_id), []).append(token)
    outgoing = [(n, n.to_push(token, now)) for n in notices for token in tokens.get(n.technician_id, [])]
    if not outgoing:
        return
    report = await runtime.sender.send([message for _, message in outgoing])
    if report.unregistered_tokens:
        async with runtime.sessionmaker() as session:
            await session.execute(delete(Device).where(Device.token.in_(report.unregistered_tokens)))
            await session.commit()
        log.info("dropped %d unregistered device tokens", len(report.unregistered_tokens))
    retry = report.retryable
    if retry and attempt + 1 < MAX_PUSH_ATTEMPTS:
        delay = max(report.retry_after_s or 0, 2.0**attempt)
        # A retry goes to every device of the technicians concerned: a rare duplicate beats a lost offer.
        again = list(dict.fromkeys(notice for notice, message in outgoing if message in retry))
        await defer_now(
            queue,
            deliver_push,
            at=datetime.now(UTC) + timedelta(seconds=delay),
            messages=msgspec.to_builtins(again),
            attempt=attempt + 1,
        )
    elif retry:
        log.error("giving up on %d pushes after %d attempts", len(retry), MAX_PUSH_ATTEMPTS)
