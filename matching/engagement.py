"""Engagement figures: how much a technician works for one organisation, worked out in SQL.

Work is what a technician actually did: each completed job of the organisation, from its check-in to its
completion. The figures are computed over that history (one index range per technician,
`ix_jobs_org_id_technician_id_worked`), never by loading a technician's past into Python:

hours_last_7d       hours of work inside the last 7 days (a piece straddling the edge counts in part)
consecutive_weeks   calendar weeks (Monday 00:00 UTC) in a row in which work started, ending with this
                    week — or with last week while this week has no work yet (a week is not lost
                    before it is over)
tenure_months       whole calendar months from the start of the current engagement to now; an engagement
                    ends where more than 30 days pass between one piece of work's end and the next one's
                    start (exactly 30 days does not end it), and is over — tenure 0 — once more than 30 days
                    have passed since the last work
jobs_completed      completed jobs of this organisation

At offer time the same figures are computed *with the job being offered* added as a piece of work of its
estimated hours starting at its window's start: its hours are added to the last 7 days, its week ends the
run of weeks, and tenure is counted up to its start (`with_job`). These are the figures an engagement
policy's limits are compared with (`matching.candidates`: above a limit is over it, reaching it is not).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

FIGURES = text(
    """
SELECT m.technician_id, f.hours_last_7d, f.consecutive_weeks, f.tenure_months, f.jobs_completed
FROM unnest(CAST(:ids AS uuid[])) AS m(technician_id)
CROSS JOIN LATERAL (
    WITH done AS (
        SELECT j.checked_in_at AS s, j.completed_at AS e
        FROM jobs j
        WHERE j.org_id = :org_id AND j.technician_id = m.technician_id AND j.status = 'completed'
          AND j.checked_in_at IS NOT NULL
    ),
    work AS (
        SELECT s, e FROM done
        UNION ALL
        SELECT CAST(:job_start AS timestamptz),
               CAST(:job_start AS timestamptz) + make_interval(secs => CAST(:job_hours AS float8) * 3600)
        WHERE CAST(:job_start AS timestamptz) IS NOT NULL
    ),
    runs AS (
        SELECT s, e, max(e) OVER (ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
        FROM work
    ),
    engagement AS (
        SELECT max(s) FILTER (WHERE before IS NULL OR s - before > interval '30 days') AS since,
               max(e) AS last_end,
               coalesce(CAST(:job_start AS timestamptz), CAST(:now AS timestamptz)) AS reference
        FROM runs
    ),
    weeks AS (SELECT DISTINCT date_trunc('week', s AT TIME ZONE 'UTC') AS week FROM work),
    anchor AS (
        SELECT CASE
            WHEN CAST(:job_start AS timestamptz) IS NOT NULL
                THEN date_trunc('week', CAST(:job_start AS timestamptz) AT TIME ZONE 'UTC')
            WHEN EXISTS (SELECT 1 FROM weeks WHERE week = date_trunc('week', CAST(:now AS timestamptz) AT TIME ZONE 'UTC'))
                THEN date_trunc('week', CAST(:now AS timestamptz) AT TIME ZONE 'UTC')
            ELSE date_trunc('week', CAST(:now AS timestamptz) AT TIME ZONE 'UTC') - interval '7 days'
        END AS week
    )
    SELECT
        coalesce((
            SELECT sum(extract(epoch FROM least(e, CAST(:now AS timestamptz))
                                          - greatest(s, CAST(:now AS timestamptz) - interval '7 days')))
            FROM done
            WHERE e > CAST(:now AS timestamptz) - interval '7 days' AND s < CAST(:now AS timestamptz)
        ), 0) / 3600 + CAST(:job_hours AS float8) AS hours_last_7d,
        (
            -- The weeks of the run ending at the anchor are those still in step with it, counting back.
            SELECT count(*) FROM (
                SELECT w.week, row_number() OVER (ORDER BY w.week DESC) AS n
                FROM weeks w, anchor a WHERE w.week <= a.week
            ) x, anchor a
            WHERE x.week = a.week - (x.n - 1) * interval '7 days'
        ) AS consecutive_weeks,
        (
            SELECT CASE
                WHEN since IS NULL OR reference - last_end > interval '30 days' THEN 0
                ELSE extract(year FROM age(reference, since)) * 12 + extract(month FROM age(reference, since))
            END
            FROM engagement
        ) AS tenure_months,
        (SELECT count(*) FROM done) AS jobs_completed
) f
"""
)


class Engagement(msgspec.Struct):
    hours_last_7d: float
    consecutive_weeks: int
    tenure_months: int
    jobs_completed: int


async def figures(
    connection: AsyncConnection,
    org_id: uuid.UUID,
    technician_ids: Iterable[uuid.UUID],
    *,
    now: datetime,
    job_start: datetime | None = None,
    job_hours: float = 0.0,
) -> dict[uuid.UUID, Engagement]:
    """Each technician's figures for the organisation; with `job_start`, with a job of `job_hours` added there."""
    rows = await connection.execute(
        FIGURES,
        {"org_id": org_id, "ids": list(technician_ids), "now": now, "job_start": job_start, "job_hours": job_hours},
    )
    return {
        r.technician_id: Engagement(
            hours_last_7d=round(float(r.hours_last_7d), 2),
            consecutive_weeks=int(r.consecutive_weeks),
            tenure_months=int(r.tenure_months),
            jobs_completed=int(r.jobs_completed),
        )
        for r in rows
    }


async def with_job(
    connection: AsyncConnection,
    org_id: uuid.UUID,
    technician_ids: Iterable[uuid.UUID],
    *,
    job_start: datetime,
    job_hours: float,
    now: datetime,
) -> dict[uuid.UUID, dict[str, float]]:
    """Each member's figures with the job added, keyed by limit kind (what `MemberSnapshot.engagement` holds)."""
    found = await figures(connection, org_id, technician_ids, now=now, job_start=job_start, job_hours=job_hours)
    return {
        technician_id: {
            "hours_per_week": f.hours_last_7d,
            "consecutive_weeks": f.consecutive_weeks,
            "tenure": f.tenure_months,
        }
        for technician_id, f in found.items()
    }
