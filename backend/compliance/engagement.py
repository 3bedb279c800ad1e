"""Engagement: how much a technician works for one organisation, and the co-employment guardrails on it.

Work is what a technician actually did: each completed job of the organisation, from its check-in to its
completion. The figures are computed in SQL over that history (one index range per technician,
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
`estimated_hours` starting at its window's start: its hours are added to the last 7 days, its week ends
the run of weeks, and tenure is counted up to its start. These are the figures the policy's limits are
compared with (`matching.candidates`: above a limit is over it, reaching it is not) and the `value` of the
alerts. An alert is raised once per technician, limit and calendar week (UTC) of the offer, whether the
offer was made (warn) or withheld (block).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

import msgspec
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.compliance.schemas import EngagementPolicyIn, EngagementPolicyOut
from backend.db.models import ComplianceAlert, EngagementPolicy
from matching import MatchResult, OverLimit

_FIGURES = text(
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


async def _figures(
    org_id: uuid.UUID,
    technician_ids: Iterable[uuid.UUID],
    *,
    now: datetime,
    job_start: datetime | None,
    job_hours: float,
    session: AsyncSession,
) -> dict[uuid.UUID, Engagement]:
    rows = await session.execute(
        _FIGURES,
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


async def engagement(
    org_id: uuid.UUID, technician_id: uuid.UUID, *, now: datetime, session: AsyncSession
) -> Engagement:
    figures = await _figures(org_id, [technician_id], now=now, job_start=None, job_hours=0.0, session=session)
    return figures[technician_id]


async def with_job(
    org_id: uuid.UUID,
    technician_ids: Iterable[uuid.UUID],
    *,
    job_start: datetime,
    job_hours: float,
    now: datetime,
    session: AsyncSession,
) -> dict[uuid.UUID, dict[str, float]]:
    """Each member's figures with the job added, keyed by limit kind (what `MemberSnapshot.engagement` holds)."""
    figures = await _figures(org_id, technician_ids, now=now, job_start=job_start, job_hours=job_hours, session=session)
    return {
        technician_id: {
            "hours_per_week": f.hours_last_7d,
            "consecutive_weeks": f.consecutive_weeks,
            "tenure": f.tenure_months,
        }
        for technician_id, f in figures.items()
    }


def passed_limits(result: MatchResult) -> list[tuple[uuid.UUID, OverLimit]]:
    """The limits passed by those a wave offers the job to (warn) or leaves out because of them (block)."""
    over = [(c.technician_id, o) for c in result.candidates for o in c.over_limits]
    return over + [(w.technician_id, o) for w in result.withheld for o in w.over_limits]


async def raise_alerts(
    org_id: uuid.UUID,
    job_id: uuid.UUID,
    over: list[tuple[uuid.UUID, OverLimit]],
    *,
    now: datetime,
    session: AsyncSession,
) -> None:
    """One alert per limit passed, once per technician, limit and calendar week (not once per offer)."""
    if not over:
        return
    year, week, _ = now.isocalendar()
    await session.execute(
        insert(ComplianceAlert)
        .values(
            [
                {
                    "id": uuid.uuid4(),
                    "org_id": org_id,
                    "technician_id": technician_id,
                    "kind": o.kind,
                    "value": o.value,
                    "limit": o.limit,
                    "job_id": job_id,
                    "at": now,
                    "dedupe_key": f"{o.kind}:{technician_id}:{year}-W{week:02d}",
                }
                for technician_id, o in over
            ]
        )
        .on_conflict_do_nothing(index_elements=["org_id", "dedupe_key"])
    )


def _policy_out(row: EngagementPolicy | None) -> EngagementPolicyOut:
    if row is None:
        return EngagementPolicyOut(
            max_hours_per_week=None, max_consecutive_weeks=None, max_tenure_months=None, mode="warn"
        )
    return EngagementPolicyOut(
        max_hours_per_week=row.max_hours_per_week,
        max_consecutive_weeks=row.max_consecutive_weeks,
        max_tenure_months=row.max_tenure_months,
        mode=row.mode,  # type: ignore[arg-type]
    )


async def get_policy(org_id: uuid.UUID, *, session: AsyncSession) -> EngagementPolicyOut:
    return _policy_out(await session.get(EngagementPolicy, org_id))


async def put_policy(
    org_id: uuid.UUID, data: EngagementPolicyIn, *, now: datetime, session: AsyncSession
) -> EngagementPolicyOut:
    """Replace the organisation's policy; it applies from the next offer on."""
    values = {**msgspec.structs.asdict(data), "updated_at": now}
    await session.execute(
        insert(EngagementPolicy)
        .values(org_id=org_id, **values)
        .on_conflict_do_update(index_elements=["org_id"], set_=values)
    )
    await session.commit()
    return EngagementPolicyOut(**msgspec.structs.asdict(data))
