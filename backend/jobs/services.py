"""Reading jobs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

import msgspec
from sqlalchemy import func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from backend.closing import reads
from backend.db.geo import lat_of, lon_of
from backend.db.models import Job, JobEvent, Offer, Technician
from backend.errors import BadRequest, NotFound
from backend.jobs.schemas import (
    CandidateOut,
    Candidates,
    Customer,
    Dispatch,
    EventOut,
    ExcludedOut,
    JobOut,
    JobSummary,
    MyOffer,
    OfferOut,
    Pay,
    TechnicianJob,
    TechnicianRef,
    Wave,
    Window,
)
from backend.pagination import decode_cursor, page_of
from backend.schemas import LatLon, Page
from matching import JobSpec, MatchSettings, WaveSpec
from matching.search import search

NO_SUCH_JOB = "no such job in this organisation"


class JobRow(NamedTuple):
    """A job with its coordinates, as `load` returns it."""

    Job: Job
    lat: float
    lon: float


def job_columns():
    return (Job, lat_of(Job.location).label("lat"), lon_of(Job.location).label("lon"))


async def load(org_id: uuid.UUID, job_id: uuid.UUID, *, session: AsyncSession, lock: bool = False):
    """The job with its coordinates, or None when it does not exist in this organisation."""
    query = select(*job_columns()).where(Job.id == job_id, Job.org_id == org_id)
    if lock:
        query = query.with_for_update(of=Job).execution_options(populate_existing=True)
    return (await session.execute(query)).first()


async def load_any(job_id: uuid.UUID, *, session: AsyncSession, lock: bool = False):
    """The job whatever its organisation: for actions started by a technician or by the queue."""
    query = select(*job_columns()).where(Job.id == job_id).execution_options(populate_existing=True)
    if lock:
        query = query.with_for_update(of=Job)
    return (await session.execute(query)).first()


def spec(row) -> JobSpec:
    job = row.Job
    return JobSpec(
        job_id=job.id,
        skills=frozenset(job.skills),
        lat=row.lat,
        lon=row.lon,
        window_start=job.window_start,
        window_end=job.window_end,
    )


def waves(job: Job) -> list[Wave]:
    return msgspec.convert(job.dispatch, Dispatch).waves


def wave_spec(wave: Wave) -> WaveSpec:
    return WaveSpec(tiers=frozenset(wave.tiers), radius_km=wave.radius_km)


def _summary(row) -> dict:
    """What every view of a job shows: a technician's offer, their job, the dispatcher's job."""
    job: Job = row.Job
    return {
        "id": job.id,
        "title": job.title,
        "skills": list(job.skills),
        "location": LatLon(lat=row.lat, lon=row.lon),
        "window": Window(start=job.window_start, end=job.window_end),
        "address": job.address,
        "pay": msgspec.convert(job.pay, Pay) if job.pay else None,
    }


def _out(row, technician: TechnicianRef | None, offers=None, events=None) -> JobOut:
    job: Job = row.Job
    return JobOut(
        **_summary(row),
        status=job.status,
        customer=msgspec.convert(job.customer, Customer),
        dispatch=msgspec.convert(job.dispatch, Dispatch),
        estimated_hours=job.estimated_hours,
        current_wave=job.current_wave,
        technician=technician,
        tracking_token=job.tracking_token,
        created_at=job.created_at,
        description=job.description,
        external_ref=job.external_ref,
        approved_at=job.approved_at,
        template_id=job.template_id,
        offers=offers,
        events=events,
        **reads.fields(row),
    )


_OFFERS = (
    select(
        func.coalesce(
            func.json_agg(
                func.json_build_object(
                    "id",
                    Offer.id,
                    "technician_id",
                    Offer.technician_id,
                    "status",
                    Offer.status,
                    "wave",
                    Offer.wave,
                    "expires_at",
                    Offer.expires_at,
                ).op("ORDER BY")(tuple_(Offer.wave, Offer.created_at, Offer.id))
            ),
            text("'[]'::json"),
        )
    )
    .where(Offer.job_id == Job.id)
    .scalar_subquery()
)
_EVENTS = (
    select(
        func.coalesce(
            func.json_agg(
                func.json_build_object("at", JobEvent.at, "type", JobEvent.type, "data", JobEvent.data).op("ORDER BY")(
                    JobEvent.id
                )
            ),
            text("'[]'::json"),
        )
    )
    .where(JobEvent.job_id == Job.id)
    .scalar_subquery()
)


async def read(org_id: uuid.UUID, job_id: uuid.UUID, *, session: AsyncSession) -> JobOut:
    """The job with its assignee, offers and timeline, in one round trip."""
    row = (
        await session.execute(
            reads.with_payable(
                select(
                    *job_columns(),
                    Technician.name.label("technician_name"),
                    _OFFERS.label("offers"),
                    _EVENTS.label("events"),
                    *reads.columns(),
                )
            )
            .outerjoin(Technician, Technician.id == Job.technician_id)
            .where(Job.id == job_id, Job.org_id == org_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    if row is None:
        raise NotFound(NO_SUCH_JOB)
    technician = TechnicianRef(id=row.Job.technician_id, name=row.technician_name) if row.Job.technician_id else None
    return _out(
        row,
        technician,
        msgspec.convert(row.offers, list[OfferOut]),
        msgspec.convert(row.events, list[EventOut]),
    )


async def candidates(
    org_id: uuid.UUID,
    job_id: uuid.UUID,
    *,
    wave: int | None,
    limit: int,
    explain: bool,
    now: datetime,
    match_settings: MatchSettings,
    session: AsyncSession,
) -> Candidates:
    """The ranked eligible technicians for the job now, under wave `wave` (default: the current wave, or the
    first before dispatch); with `explain`, every member left out with its reasons. Offers nothing."""
    row = await load(org_id, job_id, session=session)
    if row is None:
        raise NotFound(NO_SUCH_JOB)
    dispatch_waves = waves(row.Job)
    number = wave or max(row.Job.current_wave, 1)
    if number > len(dispatch_waves):
        raise BadRequest("wave", f"this job has {len(dispatch_waves)} wave(s)", source="query")
    result = await search(
        await session.connection(),
        org_id,
        spec(row),
        wave_spec(dispatch_waves[number - 1]),
        now,
        limit=limit,
        job_hours=row.Job.estimated_hours,
        explain=explain,
        settings=match_settings,
    )
    return Candidates(
        wave=number,
        items=[msgspec.convert(msgspec.to_builtins(c), CandidateOut) for c in result.candidates],
        excluded=[ExcludedOut(technician_id=e.technician_id, reasons=e.reasons) for e in result.excluded]
        if explain
        else None,
    )


async def list_jobs(
    org_id: uuid.UUID, *, status: str | None, limit: int, cursor: str | None, session: AsyncSession
) -> Page[JobOut]:
    query = (
        reads.with_payable(select(*job_columns(), Technician.name.label("technician_name"), *reads.columns()))
        .outerjoin(Technician, Technician.id == Job.technician_id)
        .where(Job.org_id == org_id)
    )
    if status is not None:
        query = query.where(Job.status == status)
    if cursor:
        query = query.where(tuple_(Job.created_at, Job.id) < decode_cursor(cursor))
    rows, next_cursor = page_of(
        (await session.execute(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))).all(),
        limit,
        lambda r: (r.Job.created_at, r.Job.id),
    )
    items = [
        _out(r, TechnicianRef(id=r.Job.technician_id, name=r.technician_name) if r.Job.technician_id else None)
        for r in rows
    ]
    return Page(items=items, next_cursor=next_cursor)


def _technician_job(row) -> TechnicianJob:
    job: Job = row.Job
    return TechnicianJob(
        **_summary(row),
        status=job.status,
        customer=msgspec.convert(job.customer, Customer),
        description=job.description,
        **reads.fields(row),
    )


async def technician_view(job_id: uuid.UUID, *, session: AsyncSession) -> TechnicianJob:
    query = reads.with_payable(select(*job_columns(), *reads.columns())).where(Job.id == job_id)
    return _technician_job((await session.execute(query.execution_options(populate_existing=True))).first())


async def technician_jobs(
    technician_id: uuid.UUID, *, limit: int, cursor: str | None, session: AsyncSession
) -> Page[TechnicianJob]:
    """Most recent window first."""
    query = reads.with_payable(select(*job_columns(), *reads.columns())).where(Job.technician_id == technician_id)
    if cursor:
        query = query.where(tuple_(Job.window_start, Job.id) < decode_cursor(cursor))
    rows, next_cursor = page_of(
        (await session.execute(query.order_by(Job.window_start.desc(), Job.id.desc()).limit(limit + 1))).all(),
        limit,
        lambda r: (r.Job.window_start, r.Job.id),
    )
    return Page(items=[_technician_job(r) for r in rows], next_cursor=next_cursor)


async def pending_offers(technician_id: uuid.UUID, now: datetime, *, session: AsyncSession) -> list[MyOffer]:
    rows = (
        await session.execute(
            select(*job_columns(), Offer.id.label("offer_id"), Offer.distance_m, Offer.expires_at)
            .join(Offer, Offer.job_id == Job.id)
            .where(Offer.technician_id == technician_id, Offer.status == "pending", Offer.expires_at > now)
            .order_by(Offer.expires_at)
        )
    ).all()
    return [
        MyOffer(
            id=r.offer_id,
            job=JobSummary(**_summary(r)),
            distance_m=r.distance_m,
            expires_at=r.expires_at,
        )
        for r in rows
    ]
