"""The customer's view of a job, computed when it is read, and the retention of raw ping history.

The ETA is worked out from the latest position whenever the view is read: a ping costs nothing more
than storing it (the ping path is the hottest one), and a view read after a ping already reflects it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db.geo import lat_of, lon_of
from backend.db.models import Job, LocationPing, Technician
from backend.jobs.schemas import Window
from backend.schemas import Position
from backend.tracking.eta import Point, Router, great_circle_m
from backend.tracking.schemas import TrackedTechnician, TrackingView
from matching.lifecycle import ACTIVE, CLOSED, DONE, LOCATED

# The customer learns who is coming once the job is assigned, and sees where they are only on the way
# and on site.
NAMED = ACTIVE | DONE
# API.md: the link answers 404 once the job has been completed or cancelled for more than 24 h.
LINK_LIFETIME_AFTER_CLOSING = timedelta(hours=24)
# Two pings further apart than this say little about how fast the technician is going now.
SPEED_SAMPLE_MAX_S = 600


async def view(token: str, *, session: AsyncSession, router: Router, now: datetime) -> TrackingView | None:
    """The job behind a tracking link, or None for an unknown link or one that has closed."""
    row = (
        await session.execute(
            select(
                Job.status,
                Job.window_start,
                Job.window_end,
                # Every flow that closes a job records when; updated_at covers one that forgot.
                func.coalesce(Job.completed_at, Job.cancelled_at, Job.updated_at).label("closed_at"),
                lat_of(Job.location).label("lat"),
                lon_of(Job.location).label("lon"),
                Technician.id.label("technician_id"),
                Technician.name,
                lat_of(Technician.location).label("technician_lat"),
                lon_of(Technician.location).label("technician_lon"),
                Technician.location_recorded_at,
                Technician.speed_mps,
            )
            .outerjoin(Technician, Technician.id == Job.technician_id)
            .where(Job.tracking_token == token)
        )
    ).first()
    if row is None:
        return None
    if row.status in CLOSED and now - row.closed_at > LINK_LIFETIME_AFTER_CLOSING:
        return None
    technician = None
    names = (row.name or "").split()
    if row.status in NAMED and names:
        technician = TrackedTechnician(first_name=names[0])
    location = eta_s = None
    known = row.status in LOCATED and row.location_recorded_at is not None
    if known:
        location = Position(lat=row.technician_lat, lon=row.technician_lon, recorded_at=row.location_recorded_at)
    if row.status == "on_site":
        eta_s = 0  # arrived
    elif row.status == "en_route" and known:
        speed = row.speed_mps
        if speed is None:
            speed = await recent_speed(row.technician_id, session=session)
        estimate = await router.eta(Point(row.technician_lat, row.technician_lon), Point(row.lat, row.lon), speed)
        eta_s = round(estimate.duration_s)
    return TrackingView(
        status=row.status,
        window=Window(start=row.window_start, end=row.window_end),
        technician=technician,
        eta_s=eta_s,
        eta_at=None if eta_s is None else now + timedelta(seconds=eta_s),
        technician_location=location,
    )


async def job_id(token: str, *, session: AsyncSession) -> uuid.UUID | None:
    """The job behind a tracking link (open or closed): live updates are announced by job id."""
    return await session.scalar(select(Job.id).where(Job.tracking_token == token))


async def recent_speed(technician_id: uuid.UUID, *, session: AsyncSession) -> float | None:
    """Metres per second between the technician's last two pings (for phones that report no speed)."""
    pings = (
        await session.execute(
            select(
                lat_of(LocationPing.location).label("lat"),
                lon_of(LocationPing.location).label("lon"),
                LocationPing.recorded_at,
            )
            .where(LocationPing.technician_id == technician_id)
            .order_by(LocationPing.recorded_at.desc())
            .limit(2)
        )
    ).all()
    if len(pings) < 2:
        return None
    latest, before = pings
    seconds = (latest.recorded_at - before.recorded_at).total_seconds()
    if not 0 < seconds <= SPEED_SAMPLE_MAX_S:
        return None
    return great_circle_m(Point(before.lat, before.lon), Point(latest.lat, latest.lon)) / seconds


async def purge_pings(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime, retention: timedelta, *, batch_size: int = 10_000
) -> int:
    """Delete raw ping history received before `now - retention`, in bounded batches (each its own short
    transaction, so that the purge never holds many locks or bloats one huge transaction). The latest
    position on the technician row is not history and stays."""
    cutoff = now - retention
    # received_at follows the table's physical order (BRIN-indexed), and is within a day of recorded_at.
    doomed = select(LocationPing.id).where(LocationPing.received_at < cutoff).limit(batch_size).scalar_subquery()
    purged = 0
    while True:
        async with sessionmaker() as session:
            deleted = (await session.execute(delete(LocationPing).where(LocationPing.id.in_(doomed)))).rowcount
            await session.commit()
        purged += deleted
        if deleted < batch_size:
            return purged
