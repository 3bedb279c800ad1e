"""Engagement: how much a technician works for one organisation, and the co-employment guardrails on it.

The figures (hours in the last 7 days, consecutive weeks, tenure, jobs completed) are defined and worked
out in `matching.engagement`; matching reads them with the job being offered added and compares them with
the policy's limits. Here: a technician's figures as they stand, the policy, and the alerts. An alert's
`value` is the figure with the job; an alert is raised once per technician, limit and calendar week (UTC) of
the offer, whether the offer was made (warn) or withheld (block).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.compliance.schemas import EngagementPolicyIn, EngagementPolicyOut, alert_out
from backend.db.models import ComplianceAlert, EngagementPolicy
from backend.webhooks import events as webhooks
from matching import MatchResult, OverLimit
from matching.engagement import Engagement, figures


async def engagement(
    org_id: uuid.UUID, technician_id: uuid.UUID, *, now: datetime, session: AsyncSession
) -> Engagement:
    return (await figures(await session.connection(), org_id, [technician_id], now=now))[technician_id]


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
    raised = await session.execute(
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
        .returning(*ALERT_COLUMNS)
    )
    await announce(session, raised.all())


ALERT_COLUMNS = (
    ComplianceAlert.id,
    ComplianceAlert.org_id,
    ComplianceAlert.technician_id,
    ComplianceAlert.kind,
    ComplianceAlert.value,
    ComplianceAlert.limit,
    ComplianceAlert.job_id,
    ComplianceAlert.at,
)
"""What an alert just raised is announced with (`RETURNING` them)."""


async def announce(session: AsyncSession, alerts) -> None:
    """Each alert just raised (rows of ALERT_COLUMNS) as a `compliance.alert` webhook event, in its transaction."""
    for alert in alerts:
        await webhooks.emit(session, alert.org_id, "compliance.alert", {"alert": alert_out(alert)}, now=alert.at)


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
