"""Dispatch: the state changes of a job and its offers, with their side effects.

Every function here runs inside the caller's transaction and leaves the commit to it (the request's runner,
`backend.idempotency`, or the queue task): the job, its offers, its timeline and the queued work (pushes, the
wave's deadline) land together or not at all.

Waves: a wave offers the job to its `max_offers` best candidates, each offer living `offer_ttl_s`. When
the wave's offers have all been declined, or its deadline passes, the next wave starts; with none left
the job is `unfilled`. Nobody is offered the same job twice (a unique constraint backs this up).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import procrastinate
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.closing import tasks as closing_tasks
from backend.compliance import engagement
from backend.db.geo import point
from backend.db.models import Job, Offer, PoolMembership, Technician
from backend.errors import Conflict, NotFound
from backend.jobs import services
from backend.jobs.lifecycle import created, move, record, require, tally
from backend.jobs.schemas import JobCreate, Wave
from backend.push import send_later
from backend.queue import RETRY_ON_OUTAGE, defer, runtime_of, tasks
from backend.schemas import normalize_skills
from backend.webhooks import events as webhooks
from matching import MatchSettings, WaveSpec, retrieval
from matching.lifecycle import Action, JobStatus
from matching.search import search
from notifications.messages import JobAssigned, JobOffer, OfferWithdrawn


def _require_open(offer: Offer, now: datetime) -> None:
    if offer.status != "pending" or offer.expires_at <= now:
        raise Conflict(f"this offer is {'expired' if offer.status == 'pending' else offer.status}", status=offer.status)


async def assigned_job(job_id: uuid.UUID, technician_id: uuid.UUID, session: AsyncSession):
    """The job, locked, if `technician_id` is assigned to it; anyone else is told there is no such job."""
    row = await services.load_any(job_id, session=session, lock=True)
    if row is None or row.Job.technician_id != technician_id:
        raise NotFound("no such job assigned to you")
    return row


async def post_job(
    org_id: uuid.UUID,
    data: JobCreate,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    match_settings: MatchSettings,
    now: datetime,
) -> uuid.UUID:
    hours = data.estimated_hours or (data.window.end - data.window.start).total_seconds() / 3600
    job = Job(
        org_id=org_id,
        status=JobStatus.OPEN,
        title=data.title.strip(),
        description=data.description,
        external_ref=data.external_ref,
        skills=normalize_skills(data.skills),
        location=point(data.location.lat, data.location.lon),
        address=data.address,
        window_start=data.window.start,
        window_end=data.window.end,
        estimated_hours=round(hours, 3),
        pay=msgspec.to_builtins(data.pay) if data.pay else None,
        tasks=closing_tasks.stored(data.tasks),
        template_id=data.template_id,
        customer=msgspec.to_builtins(data.customer),
        dispatch=msgspec.to_builtins(data.dispatch),
        # 256 bits: the customer's link must not be guessable.
        tracking_token=secrets.token_urlsafe(32),
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    await session.flush()
    record(session, job.id, "posted", now)
    created(job, now)
    if data.dispatch.auto:
        # Nobody else sees the job before this transaction commits: no need to read it back or lock it.
        row = services.JobRow(job, data.location.lat, data.location.lon)
        await _next_wave(org_id, row, session=session, queue=queue, now=now, match_settings=match_settings)
    return job.id


async def dispatch(
    org_id: uuid.UUID,
    job_id: uuid.UUID,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    match_settings: MatchSettings,
    now: datetime,
) -> None:
    row = await _locked(org_id, job_id, session)
    if row.Job.status == JobStatus.UNFILLED:
        row.Job.current_wave = 0  # a restart walks the waves again; earlier offerees stay excluded
    move(row.Job, Action.DISPATCH, now)
    record(session, job_id, "dispatch_started", now)
    await _next_wave(org_id, row, session=session, queue=queue, now=now, match_settings=match_settings)


async def _locked(org_id: uuid.UUID, job_id: uuid.UUID, session: AsyncSession):
    row = await services.load(org_id, job_id, session=session, lock=True)
    if row is None:
        raise NotFound("no such job in this organisation")
    return row


async def _next_wave(
    org_id: uuid.UUID,
    row,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    match_settings: MatchSettings,
    now: datetime,
) -> None:
    """Start the next wave that has anyone to offer the job to; with none left the job is unfilled."""
    job: Job = row.Job
    all_waves = services.waves(job)
    while job.current_wave < len(all_waves):
        job.current_wave += 1
        wave: Wave = all_waves[job.current_wave - 1]
        result = await search(
            await session.connection(),
            org_id,
            services.spec(row),
            services.wave_spec(wave),
            now,
            limit=wave.max_offers,
            job_hours=job.estimated_hours,
            settings=match_settings,
        )
        await engagement.raise_alerts(org_id, job.id, engagement.passed_limits(result), now=now, session=session)
        if not result.candidates:
            record(session, job.id, "wave_empty", now, wave=job.current_wave)
            continue
        expires_at = now + timedelta(seconds=wave.offer_ttl_s)
        offers = [
            Offer(
                id=uuid.uuid4(),
                job_id=job.id,
                technician_id=c.technician_id,
                wave=job.current_wave,
                status="pending",
                distance_m=c.distance_m,
                created_at=now,
                expires_at=expires_at,
            )
            for c in result.candidates
        ]
        session.add_all(offers)
        move(job, Action.OFFER, now)
        record(session, job.id, "wave_started", now, wave=job.current_wave, offers=len(offers))
        await session.flush()
        await send_later(
            session,
            queue,
            [
                JobOffer(
                    technician_id=str(o.technician_id),
                    job_id=str(job.id),
                    offer_id=str(o.id),
                    expires_at=expires_at,
                    title=job.title,
                    distance_m=o.distance_m,
                )
                for o in offers
            ],
        )
        await defer(session, queue, close_wave_task, at=expires_at, job_id=str(job.id), wave=job.current_wave)
        return
    move(job, Action.EXHAUST, now)
    record(session, job.id, "unfilled", now)


async def _withdraw_pending(
    job_id: uuid.UUID,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    now: datetime,
    technician_id: uuid.UUID | None = None,
) -> list:
    """End the job's pending offers (only `technician_id`'s, when given) and tell the phones (the offer is gone,
    whatever the reason); returns the offers ended."""
    pending = [Offer.job_id == job_id, Offer.status == "pending"]
    if technician_id is not None:
        pending.append(Offer.technician_id == technician_id)
    ended = (
        await session.execute(
            update(Offer)
            .where(*pending)
            .values(status="withdrawn", responded_at=now)
            .returning(Offer.id, Offer.technician_id, Offer.wave)
        )
    ).all()
    await _tell_offers_gone(job_id, ended, session=session, queue=queue)
    return ended


async def withdraw_member_offers(
    org_id: uuid.UUID,
    technician_id: uuid.UUID,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    match_settings: MatchSettings,
    now: datetime,
) -> None:
    """A member deactivated (or leaving the pool): their pending offers of this organisation's jobs are withdrawn
    and their phones told; a wave left with nothing pending hands over to the next. Runs in the caller's
    transaction, which commits it with the change of membership."""
    job_ids = (
        await session.scalars(
            select(Offer.job_id)
            .join(Job, Job.id == Offer.job_id)
            .where(Offer.technician_id == technician_id, Offer.status == "pending", Job.org_id == org_id)
            .order_by(Offer.job_id)  # jobs are locked in one order everywhere
        )
    ).all()
    for job_id in job_ids:
        row = await services.load_any(job_id, session=session, lock=True)
        ended = await _withdraw_pending(job_id, session=session, queue=queue, now=now, technician_id=technician_id)
        if ended:
            record(session, job_id, "offer_withdrawn", now, technician_id=str(technician_id), reason="inactive")
            await _next_wave_if_done(
                row, ended[0].wave, session=session, queue=queue, now=now, match_settings=match_settings
            )


async def _tell_offers_gone(job_id: uuid.UUID, offers, *, session: AsyncSession, queue: procrastinate.App) -> None:
    """`offer_withdrawn` to the phones of offers that ended without being accepted."""
    await send_later(
        session,
        queue,
        [OfferWithdrawn(technician_id=str(o.technician_id), job_id=str(job_id), offer_id=str(o.id)) for o in offers],
    )


async def _lock_technician(technician_id: uuid.UUID, session: AsyncSession) -> None:
    """A technician's assignments take turns (always after the job's lock: the same order everywhere)."""
    await session.execute(select(Technician.id).where(Technician.id == technician_id).with_for_update())


async def _require_free(job: Job, technician_id: uuid.UUID, session: AsyncSession) -> None:
    """409 unless the technician is an active member of the job's pool and holds no other active job whose window
    overlaps this one's. The technician's row is locked first, so that two of their accepts (or an accept and a
    direct assignment) take turns and cannot both win; the membership is read FOR SHARE, so that a deactivation
    committing meanwhile is seen."""
    await _lock_technician(technician_id, session)
    active = await session.scalar(
        select(PoolMembership.active)
        .where(PoolMembership.org_id == job.org_id, PoolMembership.technician_id == technician_id)
        .with_for_update(read=True)
    )
    if not active:
        raise Conflict("inactive: you are not an active member of this organisation's pool", reasons=["inactive"])
    params = {
        "technician_id": technician_id,
        "job_id": job.id,
        "window_start": job.window_start,
        "window_end": job.window_end,
    }
    if await session.scalar(retrieval.BUSY, params):
        raise Conflict("busy: you have another job whose window overlaps this one", reasons=["busy"])


async def accept(
    offer_id: uuid.UUID, technician_id: uuid.UUID, *, session: AsyncSession, queue: procrastinate.App, now: datetime
) -> uuid.UUID:
    """Exactly one accept per job wins: the job row moves from `offering` to `assigned` once.

    Like every flow here it locks the job row before touching its offers, so that accepts, declines and
    the wave's deadline take turns on a job and never deadlock.
    """
    job_id = await session.scalar(
        select(Offer.job_id).where(Offer.id == offer_id, Offer.technician_id == technician_id)
    )
    if job_id is None:
        raise NotFound("no such offer for you")
    job = await session.scalar(select(Job).where(Job.id == job_id).with_for_update())
    offer = await session.scalar(select(Offer).where(Offer.id == offer_id).execution_options(populate_existing=True))
    _require_open(offer, now)
    await _require_free(job, technician_id, session)
    move(job, Action.ACCEPT, now)
    job.technician_id = technician_id
    org_id = job.org_id
    offer.status = "accepted"
    offer.responded_at = now
    await session.flush()
    await tally(session, org_id, [technician_id], "offers_answered", "offers_accepted", "assignments")
    record(session, offer.job_id, "accepted", now, technician_id=str(technician_id), offer_id=str(offer_id))
    record(session, offer.job_id, "assigned", now, technician_id=str(technician_id), by="offer")
    await _withdraw_pending(offer.job_id, session=session, queue=queue, now=now)
    return offer.job_id


async def decline(
    offer_id: uuid.UUID,
    technician_id: uuid.UUID,
    reason: str | None,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    match_settings: MatchSettings,
    now: datetime,
) -> None:
    offer = await session.scalar(select(Offer).where(Offer.id == offer_id, Offer.technician_id == technician_id))
    if offer is None:
        raise NotFound("no such offer for you")
    job_row = await services.load_any(offer.job_id, session=session, lock=True)
    await session.refresh(offer)
    _require_open(offer, now)
    offer.status = "declined"
    offer.responded_at = now
    offer.reason = reason
    await tally(session, job_row.Job.org_id, [technician_id], "offers_answered")
    record(session, offer.job_id, "declined", now, technician_id=str(technician_id), wave=offer.wave, reason=reason)
    await session.flush()
    await webhooks.emit(
        session,
        job_row.Job.org_id,
        "offer.declined",
        {
            "offer": {
                "id": offer.id,
                "job_id": offer.job_id,
                "technician_id": technician_id,
                "wave": offer.wave,
                "reason": reason,
                "declined_at": now,
            }
        },
        now=now,
    )
    await _next_wave_if_done(job_row, offer.wave, session=session, queue=queue, now=now, match_settings=match_settings)


async def _next_wave_if_done(
    row, wave: int, *, session: AsyncSession, queue: procrastinate.App, match_settings: MatchSettings, now: datetime
) -> None:
    """When the job's current wave is `wave` and none of its offers is pending any more, the next one starts."""
    job: Job = row.Job
    if job.status != JobStatus.OFFERING or job.current_wave != wave:
        return
    pending = await session.scalar(
        select(func.count())
        .select_from(Offer)
        .where(Offer.job_id == job.id, Offer.wave == wave, Offer.status == "pending")
    )
    if not pending:
        await _next_wave(job.org_id, row, session=session, queue=queue, now=now, match_settings=match_settings)


async def close_wave(
    job_id: uuid.UUID,
    wave: int,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    match_settings: MatchSettings,
    now: datetime,
) -> None:
    """A wave's deadline: its unanswered offers expire and, if the job is still waiting, the next wave starts."""
    row = await services.load_any(job_id, session=session, lock=True)
    if row is None:
        return
    job: Job = row.Job
    expired = (
        await session.execute(
            update(Offer)
            # Only offers whose time is up: a restarted dispatch may have a wave of the same number running.
            .where(Offer.job_id == job_id, Offer.wave == wave, Offer.status == "pending", Offer.expires_at <= now)
            .values(status="expired")
            .returning(Offer.id, Offer.technician_id)
        )
    ).all()
    if expired:
        await tally(session, job.org_id, [o.technician_id for o in expired], "offers_answered")
        record(session, job_id, "offers_expired", now, wave=wave, offers=len(expired))
        await _tell_offers_gone(job_id, expired, session=session, queue=queue)
    await _next_wave_if_done(row, wave, session=session, queue=queue, now=now, match_settings=match_settings)


async def cancel(
    org_id: uuid.UUID,
    job_id: uuid.UUID,
    reason: str | None,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    now: datetime,
) -> None:
    row = await _locked(org_id, job_id, session)
    job: Job = row.Job
    move(job, Action.CANCEL, now)
    job.cancelled_at = now
    record(session, job_id, "cancelled", now, reason=reason)
    await _withdraw_pending(job_id, session=session, queue=queue, now=now)


async def assign(
    org_id: uuid.UUID,
    job_id: uuid.UUID,
    technician_id: uuid.UUID,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    match_settings: MatchSettings,
    now: datetime,
) -> None:
    """A dispatcher's direct assignment, refused with the reasons when the technician is not eligible."""
    row = await _locked(org_id, job_id, session)
    job: Job = row.Job
    require(job, Action.ASSIGN)
    # Any tier, as far as the technician's own service radius reaches; having been offered the job before
    # does not stand in a dispatcher's way.
    wave = WaveSpec(tiers=frozenset({"preferred", "approved"}), radius_km=500)
    await _lock_technician(technician_id, session)  # their busy windows cannot change before this commits
    result = await search(
        await session.connection(),
        org_id,
        services.spec(row),
        wave,
        now,
        limit=1,
        job_hours=job.estimated_hours,
        explain=True,
        only=technician_id,
        settings=match_settings,
    )
    if result.candidates:
        reasons, passed = [], result.candidates[0].over_limits
    elif result.excluded:
        reasons = [r for r in result.excluded[0].reasons if r != "already_offered"]
        passed = result.excluded[0].over_limits
    else:
        raise NotFound("no such technician in this organisation's pool")
    # The guardrails hold for a dispatcher too: the alert is kept even when the assignment is refused.
    await engagement.raise_alerts(org_id, job_id, [(technician_id, o) for o in passed], now=now, session=session)
    if reasons:
        raise Conflict("this technician is not eligible for this job", keep=True, reasons=reasons)
    await tally(session, org_id, [technician_id], "assignments")
    move(job, Action.ASSIGN, now)
    job.technician_id = technician_id
    # The assignment is recorded as an accepted offer — their pending one, or one outside the waves
    # (wave 0) — so that, like anyone who had an offer, a technician who backs out is not asked again.
    await session.execute(
        update(Offer)
        .where(Offer.job_id == job_id, Offer.technician_id == technician_id, Offer.status == "pending")
        .values(status="accepted", responded_at=now)
    )
    await session.execute(
        insert(Offer)
        .values(
            id=uuid.uuid4(),
            job_id=job_id,
            technician_id=technician_id,
            wave=0,
            status="accepted",
            created_at=now,
            expires_at=now,
            responded_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_offers_job_id_technician_id")
    )
    record(session, job_id, "assigned", now, technician_id=str(technician_id), by="dispatcher")
    await _withdraw_pending(job_id, session=session, queue=queue, now=now)
    await send_later(
        session,
        queue,
        [
            JobAssigned(
                technician_id=str(technician_id), job_id=str(job_id), title=job.title, window_start=job.window_start
            )
        ],
    )


async def back_out(
    job_id: uuid.UUID,
    technician_id: uuid.UUID,
    reason: str,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    match_settings: MatchSettings,
    now: datetime,
) -> None:
    """The assigned technician gives the job back: dispatch resumes with the next wave by itself."""
    row = await assigned_job(job_id, technician_id, session)
    job: Job = row.Job
    move(job, Action.BACK_OUT, now)
    job.technician_id = None
    record(session, job_id, "backed_out", now, technician_id=str(technician_id), reason=reason)
    await tally(session, job.org_id, [technician_id], "backouts")
    await _next_wave(job.org_id, row, session=session, queue=queue, now=now, match_settings=match_settings)


@tasks.task(name="close_wave", queue="dispatch", pass_context=True, retry=RETRY_ON_OUTAGE)
async def close_wave_task(context: procrastinate.JobContext, job_id: str, wave: int) -> None:
    """A wave's deadline, run by the queue at the moment its offers expire."""
    runtime = runtime_of(context)
    async with runtime.sessionmaker() as session:
        now = datetime.now(UTC)
        await close_wave(
            uuid.UUID(job_id), wave, session=session, queue=context.app, match_settings=runtime.matching, now=now
        )
        await session.commit()
