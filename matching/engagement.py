"""Engagement figures: how much a technician works for one organisation, worked out in SQL.

Work is what a technician actually did: each job of the organisation done on site (completed, sent back
incomplete or approved: `matching.lifecycle.DONE`), from its check-in to its
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
run of weeks, and tenure is counted up to its start. These are the figures an engagement policy's limits
are compared with (`matching.candidates`: above a limit is over it, reaching it is not); the walk works them
out for the members it keeps, in the same statement (`matching.retrieval`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from matching.lifecycle import DONE, sql_list

# One technician's figures ({who}: an SQL expression naming them), as a subquery of one row for a LATERAL join.
# Parameters: org_id, now, job_start (NULL: without a job), job_hours. One pass over the technician's work
# (their completed jobs, and the job offered): `before` is the latest end of the pieces before each one
# (more than 30 days between the two start an engagement); `n` numbers the weeks work started in, back from
# `ended`, the week before the reference one (the job's, or this one): the run of weeks in step with it are
# those where `week = ended - (n - 1) weeks`, and the reference week adds one when it has work.
FIGURES_OF = f"""(
    SELECT hours_last_7d, consecutive_weeks, jobs_completed,
           CASE WHEN since IS NULL OR reference - last_end > interval '30 days' THEN 0
                ELSE extract(year FROM age(reference, since)) * 12 + extract(month FROM age(reference, since))
           END AS tenure_months
    FROM (
        SELECT coalesce(sum(extract(epoch FROM least(e, now) - greatest(s, now - interval '7 days')))
                        FILTER (WHERE done AND e > now - interval '7 days' AND s < now), 0) / 3600
                   + CAST(:job_hours AS float8) AS hours_last_7d,
               coalesce(max(n) FILTER (WHERE week = ended - (n - 1) * interval '7 days'), 0)
                   + coalesce(bool_or(week = ended + interval '7 days'), false)::int AS consecutive_weeks,
               count(*) FILTER (WHERE done) AS jobs_completed,
               max(s) FILTER (WHERE before IS NULL OR s - before > interval '30 days') AS since,
               max(e) AS last_end, max(reference) AS reference
        FROM (
            SELECT *, max(e) OVER (ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before,
                   dense_rank() OVER (PARTITION BY week <= ended ORDER BY week DESC) AS n
            FROM (
                SELECT w.*, c.now, c.reference, date_trunc('week', w.s AT TIME ZONE 'UTC') AS week,
                       date_trunc('week', c.reference AT TIME ZONE 'UTC') - interval '7 days' AS ended
                FROM (
                    SELECT CAST(:now AS timestamptz) AS now, CAST(:job_start AS timestamptz) AS job,
                           coalesce(CAST(:job_start AS timestamptz), CAST(:now AS timestamptz)) AS reference
                ) c
                CROSS JOIN LATERAL (
                    SELECT j.checked_in_at AS s, j.completed_at AS e, true AS done
                    FROM jobs j
                    WHERE j.org_id = :org_id AND j.technician_id = {{who}} AND j.status IN ({sql_list(DONE)})
                      AND j.checked_in_at IS NOT NULL
                    UNION ALL
                    SELECT c.job, c.job + make_interval(secs => CAST(:job_hours AS float8) * 3600), false
                    WHERE c.job IS NOT NULL
                ) w
            ) work
        ) work
    ) figures
)"""

FIGURES = text(
    " ".join(
        f"""
SELECT m.technician_id, f.hours_last_7d, f.consecutive_weeks, f.tenure_months, f.jobs_completed
FROM unnest(CAST(:ids AS uuid[])) AS m(technician_id)
CROSS JOIN LATERAL {FIGURES_OF.format(who="m.technician_id")} f
""".split()
    )
)


class Engagement(msgspec.Struct):
    hours_last_7d: float
    consecutive_weeks: int
    tenure_months: int
    jobs_completed: int

    @classmethod
    def of(cls, hours_last_7d, consecutive_weeks, tenure_months, jobs_completed) -> Engagement:
        """From the columns of `FIGURES_OF`."""
        return cls(
            hours_last_7d=round(float(hours_last_7d), 2),
            consecutive_weeks=int(consecutive_weeks),
            tenure_months=int(tenure_months),
            jobs_completed=int(jobs_completed),
        )

    def by_limit(self) -> dict[str, float]:
        """Keyed by the kind of limit each is compared with (what `MemberSnapshot.engagement` holds)."""
        return {
            "hours_per_week": self.hours_last_7d,
            "consecutive_weeks": self.consecutive_weeks,
            "tenure": self.tenure_months,
        }


async def figures(
    connection: AsyncConnection,
    org_id: uuid.UUID,
    technician_ids: Iterable[uuid.UUID],
    *,
    now: datetime,
) -> dict[uuid.UUID, Engagement]:
    """Each technician's figures for the organisation as they stand (without a job being offered)."""
    rows = await connection.execute(
        FIGURES, {"org_id": org_id, "ids": list(technician_ids), "now": now, "job_start": None, "job_hours": 0.0}
    )
    return {
        r.technician_id: Engagement.of(r.hours_last_7d, r.consecutive_weeks, r.tenure_months, r.jobs_completed)
        for r in rows
    }
