"""Two-sided, double-blind ratings of completed jobs, and the Bayesian rating they add up to.

Each side of a job rates it once: the organisation rates the technician, the assigned technician rates the
organisation. Ratings are taken from the job's completion until the window closes 14 days later. Neither side
sees the other's rating until it is released: when both have rated, or when the window closes (at exactly
completion + 14 days). A rating is refused once the window has closed, or a late rater could first read the
released rating of the other side and answer it in kind.

The organisation's ratings of a technician add up on the pool membership (rating_count, rating_sum), so that
the pool view and matching read the rating with the member row (the average: `matching.curation`). Each rating is folded in exactly once, when it
is released: in the transaction of the second side's rating, or by the hourly `release_due` once the window
has closed. Only released ratings count, so the average never gives a hidden rating away.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Job, JobRating, PoolMembership
from backend.errors import Conflict, NotFound
from backend.ratings.schemas import JobRatings, PostedRating, RatingBody, RatingOut, Side
from matching.curation import bayesian_rating
from matching.lifecycle import DONE

WINDOW = timedelta(days=14)
NOT_YOURS = "no such job in this organisation or assigned to you"


def shown_rating(count: int, total: int) -> float | None:
    """The Bayesian rating as shown to people: two decimals."""
    rating = bayesian_rating(count, total)
    return None if rating is None else round(rating, 2)


async def _job(job_id: uuid.UUID, side: Side, party_id: uuid.UUID, session: AsyncSession, *, lock: bool) -> Row:
    """The job, if `party_id` is its organisation (side `org`) or its assigned technician; else NotFound."""
    query = select(Job.org_id, Job.technician_id, Job.status, Job.completed_at).where(Job.id == job_id)
    if lock:
        # Serialises the two sides' ratings of one job, so that the second one sees the first and releases both.
        query = query.with_for_update(key_share=True)
    job = (await session.execute(query)).first()
    if job is None or (job.org_id if side == "org" else job.technician_id) != party_id:
        raise NotFound(NOT_YOURS)
    return job


def window_closes_at(completed_at: datetime | None) -> datetime | None:
    return None if completed_at is None else completed_at + WINDOW


async def rate(
    job_id: uuid.UUID, side: Side, party_id: uuid.UUID, data: RatingBody, *, now: datetime, session: AsyncSession
) -> PostedRating:
    """Store this side's rating; when the other side has rated already, release both. NotFound when the job is
    not this party's, Conflict when it is not completed, the window has closed or this side has rated."""
    job = await _job(job_id, side, party_id, session, lock=True)
    if job.status not in DONE:
        raise Conflict(f"only a completed job can be rated; this one is {job.status}")
    closes_at = window_closes_at(job.completed_at)
    if now >= closes_at:
        raise Conflict(f"the rating window closed at {closes_at.isoformat()}, 14 days after the job's completion")
    stored = await session.scalar(
        insert(JobRating)
        .values(
            job_id=job_id,
            side=side,
            stars=data.stars,
            comment=data.comment,
            org_id=job.org_id,
            technician_id=job.technician_id,
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(JobRating.side)
    )
    if stored is None:
        raise Conflict(f"this job has already been rated by its {'organisation' if side == 'org' else 'technician'}")
    other = await session.scalar(select(JobRating.side).where(JobRating.job_id == job_id, JobRating.side != side))
    released = other is not None
    if released:
        await _fold(await _release(JobRating.job_id == job_id, now=now, session=session), session)
    return PostedRating(side=side, stars=data.stars, comment=data.comment, at=now, released=released)


async def read(
    job_id: uuid.UUID, side: Side, party_id: uuid.UUID, *, now: datetime, session: AsyncSession
) -> JobRatings:
    """Both ratings of a job as `side` may see them at `now`: its own always, the other's once released.

    Exact at any `now`, whether or not the hourly release has run yet."""
    job = await _job(job_id, side, party_id, session, lock=False)
    rows = {r.side: r for r in await session.scalars(select(JobRating).where(JobRating.job_id == job_id))}
    closes_at = window_closes_at(job.completed_at)
    released = len(rows) == 2 or (closes_at is not None and now >= closes_at)

    def shown(of: Side) -> RatingOut | None:
        row = rows.get(of)
        if row is None or (of != side and not released):
            return None
        return RatingOut(stars=row.stars, comment=row.comment, at=row.created_at)

    return JobRatings(
        by_org=shown("org"), by_technician=shown("technician"), released=released, window_closes_at=closes_at
    )


async def release_due(now: datetime, *, session: AsyncSession) -> int:
    """Release (and fold in) every rating whose window has closed by `now` with the other side silent.
    Returns how many were released; running it again, or alongside a rating, releases nothing twice."""
    due = (JobRating.job_id == Job.id, Job.completed_at <= now - WINDOW)
    released = await _release(*due, now=now, session=session)
    await _fold(released, session)
    await session.commit()
    return len(released)


async def _release(*where, now: datetime, session: AsyncSession) -> list[Row]:
    # `released_at IS NULL` is re-checked on the locked row, so a rating released concurrently is skipped here.
    result = await session.execute(
        update(JobRating)
        .where(JobRating.released_at.is_(None), *where)
        .values(released_at=now)
        .returning(JobRating.side, JobRating.stars, JobRating.org_id, JobRating.technician_id)
        .execution_options(synchronize_session=False)
    )
    return list(result.all())


async def _fold(released: Iterable[Row], session: AsyncSession) -> None:
    """Add the organisations' released ratings of technicians to the members' aggregates (the technicians'
    ratings of organisations are only ever read one job at a time)."""
    totals: dict[tuple[uuid.UUID, uuid.UUID], tuple[int, int]] = {}
    for row in released:
        if row.side == "org":
            count, total = totals.get((row.org_id, row.technician_id), (0, 0))
            totals[(row.org_id, row.technician_id)] = (count + 1, total + row.stars)
    if not totals:
        return
    members = PoolMembership.__table__
    await session.execute(
        update(members)
        .where(members.c.org_id == bindparam("member_org"), members.c.technician_id == bindparam("member_technician"))
        .values(
            rating_count=members.c.rating_count + bindparam("added_count"),
            rating_sum=members.c.rating_sum + bindparam("added_sum"),
        ),
        # In key order, so that concurrent folds lock members in the same order.
        [
            {"member_org": org, "member_technician": tech, "added_count": count, "added_sum": total}
            for (org, tech), (count, total) in sorted(totals.items())
        ],
    )
