"""On site: the assigned technician's way from the job's assignment to its completion.

assigned → en_route → on_site → completed, as the lifecycle's table allows (`matching.lifecycle`). Each
step locks the job row, is allowed only to the assigned technician (anyone else is told there is no such
job) and only from the right state, and is recorded on the job's timeline in the same transaction.

Each check-in starts a visit (`JobVisit`) and the completion that follows ends it: worked hours are the sum of
the visits. A job sent back (`incomplete`) is completed again, after a new visit or without one; the reliability
counters count a job's first check-in and first completion only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.closing.tasks import missing
from backend.db.models import Job, JobVisit
from backend.errors import Conflict
from backend.jobs.dispatch import assigned_job
from backend.jobs.lifecycle import move, record, require, tally
from backend.jobs.schemas import TechnicianJob
from backend.schemas import Latitude, Longitude
from backend.tracking.eta import Point, great_circle_m
from matching.lifecycle import Action

GEOFENCE_MIN_RADIUS_M = 150.0

Geofence = Literal["verified", "outside"]


# The bodies and answers of the technician's on-site actions.
class CheckInBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    lat: Latitude
    lon: Longitude
    accuracy_m: Annotated[float, msgspec.Meta(ge=0, le=100_000, description="the fix's accuracy radius, metres")]


class CheckInOut(msgspec.Struct):
    geofence: Geofence
    distance_m: float
    """Great-circle distance from the reported position to the job site."""
    radius_m: float
    """The geofence's radius for this check-in: max(150 m, accuracy_m)."""
    job: TechnicianJob


class CompleteBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    notes: Annotated[str, msgspec.Meta(max_length=10_000)] | None = None


def geofence(site: Point, reported: Point, accuracy_m: float) -> tuple[Geofence, float, float]:
    """(verdict, great-circle distance, radius): within max(150 m, the fix's accuracy) is verified."""
    distance = great_circle_m(site, reported)
    radius = max(GEOFENCE_MIN_RADIUS_M, accuracy_m)
    return ("verified" if distance <= radius else "outside"), distance, radius


async def en_route(job_id: uuid.UUID, technician_id: uuid.UUID, *, session: AsyncSession, now: datetime) -> None:
    row = await assigned_job(job_id, technician_id, session)
    job: Job = row.Job
    move(job, Action.EN_ROUTE, now)
    record(session, job_id, "en_route", now, technician_id=str(technician_id))


async def check_in(
    job_id: uuid.UUID,
    technician_id: uuid.UUID,
    data: CheckInBody,
    *,
    session: AsyncSession,
    now: datetime,
) -> tuple[Geofence, float, float]:
    """Arrive on site. A position outside the geofence is recorded and flagged, never refused: GPS in
    a basement or a large site's far gate should not keep a technician from working."""
    row = await assigned_job(job_id, technician_id, session)
    job: Job = row.Job
    move(job, Action.CHECK_IN, now)
    verdict, distance, radius = geofence(Point(row.lat, row.lon), Point(data.lat, data.lon), data.accuracy_m)
    first_visit = job.checked_in_at is None
    job.checked_in_at = now
    session.add(JobVisit(job_id=job_id, technician_id=technician_id, checked_in_at=now))
    if first_visit:
        # On time: by the end of the window (arriving early is no fault). A return visit is not an arrival.
        on_time = ("on_time_check_ins",) if now <= job.window_end else ()
        await tally(session, job.org_id, [technician_id], "check_ins", *on_time)
    record(
        session,
        job_id,
        "checked_in",
        now,
        technician_id=str(technician_id),
        geofence=verdict,
        distance_m=round(distance, 1),
        radius_m=round(radius, 1),
        lat=data.lat,
        lon=data.lon,
        accuracy_m=data.accuracy_m,
    )
    if verdict == "outside":
        # A separate entry, so that a dispatcher's console can list the jobs that need a look.
        record(
            session,
            job_id,
            "flagged",
            now,
            reason="check_in_outside_geofence",
            distance_m=round(distance, 1),
            radius_m=round(radius, 1),
        )
    return verdict, distance, radius


async def complete(
    job_id: uuid.UUID, technician_id: uuid.UUID, notes: str | None, *, session: AsyncSession, now: datetime
) -> None:
    """409 with `missing_tasks` while a required task is not done."""
    row = await assigned_job(job_id, technician_id, session)
    job: Job = row.Job
    require(job, Action.COMPLETE)
    if keys := missing(job.tasks):
        raise Conflict(f"required tasks are not done: {', '.join(keys)}", missing_tasks=keys)
    move(job, Action.COMPLETE, now)
    first_completion = job.completed_at is None
    job.completed_at = now
    await session.execute(
        update(JobVisit).where(JobVisit.job_id == job_id, JobVisit.completed_at.is_(None)).values(completed_at=now)
    )
    if first_completion:
        await tally(session, job.org_id, [technician_id], "completions")
    record(session, job_id, "completed", now, technician_id=str(technician_id), notes=notes)
