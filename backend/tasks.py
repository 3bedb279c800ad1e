"""The queue's tasks: a wave's deadline, push delivery, the purge of old ping history and of idempotency keys,
the release of ratings and the daily credential alerts. They run in `truckroll worker` (or inside the server process with
TRUCKROLL_WORKER=inprocess, as `make run` does)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import procrastinate
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.compliance.services import raise_credential_alerts
from backend.db.models import Device
from backend.idempotency import RETENTION as IDEMPOTENCY_RETENTION
from backend.idempotency import purge_expired as purge_idempotency_keys
from backend.ratings.services import release_due
from backend.settings import TrackingSettings
from backend.tracking.services import purge_pings
from notifications import PushMessage, PushSender

log = logging.getLogger("truckroll.tasks")
MAX_PUSH_ATTEMPTS = 8


@dataclass
class Runtime:
    """What the tasks need, handed to the worker as its context."""

    sessionmaker: async_sessionmaker[AsyncSession]
    sender: PushSender
    tracking: TrackingSettings = TrackingSettings()


def register(app: procrastinate.App) -> None:
    @app.task(name="close_wave", queue="dispatch", pass_context=True)
    async def close_wave(context: procrastinate.JobContext, job_id: str, wave: int) -> None:
        from backend.jobs import flows

        runtime: Runtime = context.additional_context["runtime"]
        async with runtime.sessionmaker() as session:
            await flows.close_wave(uuid.UUID(job_id), wave, session=session, queue=app, now=datetime.now(UTC))

    @app.task(name="deliver_push", queue="push", pass_context=True)
    async def deliver_push(context: procrastinate.JobContext, messages: list[dict], attempt: int = 0) -> None:
        runtime: Runtime = context.additional_context["runtime"]
        await push(runtime, app, messages, attempt)

    # Every hour; with several workers, procrastinate defers each run once.
    @app.periodic(cron="17 * * * *")
    @app.task(name="purge_pings", queue="maintenance", pass_context=True)
    async def purge_old_pings(context: procrastinate.JobContext, timestamp: int) -> None:
        runtime: Runtime = context.additional_context["runtime"]
        retention = timedelta(days=runtime.tracking.ping_retention_days)
        purged = await purge_pings(runtime.sessionmaker, datetime.fromtimestamp(timestamp, UTC), retention)
        if purged:
            log.info("purged %d location pings older than %s", purged, retention)

    # Every hour: replies kept for an Idempotency-Key are forgotten after 48 h.
    @app.periodic(cron="47 * * * *")
    @app.task(name="purge_idempotency_keys", queue="maintenance", pass_context=True)
    async def forget_idempotency_keys(context: procrastinate.JobContext, timestamp: int) -> None:
        runtime: Runtime = context.additional_context["runtime"]
        async with runtime.sessionmaker() as session:
            keys = await purge_idempotency_keys(datetime.fromtimestamp(timestamp, UTC), session=session)
        if keys:
            log.info("forgot %d idempotency keys older than %s", keys, IDEMPOTENCY_RETENTION)

    # Every hour: ratings whose 14-day window has closed with the other side silent count from now on
    # (reading them is exact without this; only the members' aggregates wait for it).
    @app.periodic(cron="23 * * * *")
    @app.task(name="release_ratings", queue="maintenance", pass_context=True)
    async def release_ratings(context: procrastinate.JobContext, timestamp: int) -> None:
        runtime: Runtime = context.additional_context["runtime"]
        async with runtime.sessionmaker() as session:
            released = await release_due(datetime.fromtimestamp(timestamp, UTC), session=session)
        if released:
            log.info("released %d ratings whose window closed", released)

    # Daily: credentials about to expire (within 30 days) or expired, each alerted once.
    @app.periodic(cron="5 4 * * *")
    @app.task(name="credential_alerts", queue="maintenance", pass_context=True)
    async def credential_alerts(context: procrastinate.JobContext, timestamp: int) -> None:
        runtime: Runtime = context.additional_context["runtime"]
        async with runtime.sessionmaker() as session:
            raised = await raise_credential_alerts(datetime.fromtimestamp(timestamp, UTC), session=session)
        if raised:
            log.info("raised %d credential alerts", raised)


async def push(runtime: Runtime, app: procrastinate.App, messages: list[dict], attempt: int) -> None:
    """Send to every registered device of each addressee; drop dead tokens; retry what FCM deferred."""
    ids = {uuid.UUID(m["technician_id"]) for m in messages}
    async with runtime.sessionmaker() as session:
        devices = (
            await session.execute(select(Device.technician_id, Device.token).where(Device.technician_id.in_(ids)))
        ).all()
    tokens: dict[uuid.UUID, list[str]] = {}
    for technician_id, token in devices:
        tokens.setdefault(technician_id, []).append(token)
    outgoing: list[PushMessage] = []
    by_token: dict[str, dict] = {}
    for m in messages:
        for token in tokens.get(uuid.UUID(m["technician_id"]), []):
            outgoing.append(
                PushMessage(
                    token=token,
                    data=m["data"],
                    title=m.get("title"),
                    body=m.get("body"),
                    ttl_s=m.get("ttl_s"),
                    high_priority=m["data"]["type"] == "job_offer",
                    time_sensitive=m["data"]["type"] == "job_offer",
                    collapse_key=m["data"].get("offer_id") or m["data"]["job_id"],
                )
            )
            by_token[token] = m
    if not outgoing:
        return
    report = await runtime.sender.send(outgoing)
    if report.unregistered_tokens:
        async with runtime.sessionmaker() as session:
            await session.execute(delete(Device).where(Device.token.in_(report.unregistered_tokens)))
            await session.commit()
        log.info("dropped %d unregistered device tokens", len(report.unregistered_tokens))
    retry = report.retryable
    if retry and attempt + 1 < MAX_PUSH_ATTEMPTS:
        delay = max(report.retry_after_s or 0, 2.0**attempt)
        # A retry goes to every device of the technicians concerned: a rare duplicate beats a lost offer.
        again = [by_token[msg.token] for msg in retry]
        await (
            app.tasks["deliver_push"]
            .configure(schedule_at=datetime.now(UTC) + timedelta(seconds=delay))
            .defer_async(messages=_dedupe(again), attempt=attempt + 1)
        )
    elif retry:
        log.error("giving up on %d pushes after %d attempts", len(retry), MAX_PUSH_ATTEMPTS)


def _dedupe(messages: list[dict]) -> list[dict]:
    seen, out = set(), []
    for m in messages:
        key = (m["technician_id"], tuple(sorted(m["data"].items())))
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out
