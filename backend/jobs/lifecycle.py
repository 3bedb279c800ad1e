"""Every change of a job's status goes through `move`, which checks it against the one transition table
(`matching.lifecycle`); `record` writes the job's timeline and `tally` the members' reliability counters,
in the caller's transaction. A new job (`created`) and each change of its status are announced to the
organisation's webhooks (`job.created`, `job.{status}`), queued by the commit of that same transaction
(backend.webhooks.events)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import object_session

from backend.db.models import Job, JobEvent, PoolMembership
from backend.errors import Conflict
from backend.webhooks.events import announce_job
from matching.lifecycle import TRANSITIONS, Action, JobStatus


def require(job: Job, action: Action) -> JobStatus:
    """The status `action` leads to from the job's; a Conflict naming the current and the wanted one if the
    table does not allow it."""
    transition = TRANSITIONS[action]
    if job.status not in transition.sources:
        raise Conflict(
            f"a job that is {job.status} cannot be {transition.verb}",
            status=job.status,
            wanted=transition.target.value,
        )
    return transition.target


def move(job: Job, action: Action, now: datetime) -> None:
    """Apply `action` to the job (the row must be locked by the caller's transaction); a change of status is
    announced (a new wave of a job already offering is not)."""
    target = require(job, action)
    changed = job.status != target
    job.status = target
    job.updated_at = now
    if changed:
        announce_job(object_session(job), job, now)


def created(job: Job, now: datetime) -> None:
    """A job just posted (and flushed: it has its id), announced as `job.created`."""
    announce_job(object_session(job), job, now)


def record(session: AsyncSession, job_id: uuid.UUID, type_: str, now: datetime, **data) -> None:
    """An entry of the job's timeline (`events` on GET /v1/jobs/{id})."""
    session.add(JobEvent(job_id=job_id, type=type_, at=now, data=data))


async def tally(session: AsyncSession, org_id: uuid.UUID, technician_ids: Iterable[uuid.UUID], *counters: str) -> None:
    """Bump the members' reliability counters (matching.curation.COUNTERS) with the event they count."""
    technician_ids = list(technician_ids)
    if technician_ids:
        await session.execute(
            update(PoolMembership)
            .where(PoolMembership.org_id == org_id, PoolMembership.technician_id.in_(technician_ids))
            .values({c: getattr(PoolMembership, c) + 1 for c in counters})
        )
