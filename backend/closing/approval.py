"""The organisation closes the work: approving a completed job (by hand, or by the system after
`auto_approve_days`) settles its payable; marking it incomplete sends it back to the technician.

Approval runs under the job row's lock and moves the job through the lifecycle table (completed → approved), so a
job is approved once whoever comes first — a dispatcher, or either of two workers running the periodic
auto-approval — and the payable's unique job id backs that up.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import procrastinate
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.closing.money import CENT, MAX_HOURS, checked
from backend.closing.pay import Pay, settle
from backend.closing.reads import WORKED_HOURS
from backend.closing.schemas import ApproveBody, OrgSettings
from backend.db.models import Job, JobExpense, Organization, Payable
from backend.errors import Invalid, NotFound
from backend.jobs import services as job_services
from backend.jobs.lifecycle import move, record, require
from backend.push import send_later
from backend.queue import runtime_of, tasks
from matching.lifecycle import Action, JobStatus
from notifications.messages import JobIncomplete

log = logging.getLogger("truckroll.tasks")

NO_CURRENCY = "XXX"
"""ISO 4217's code for "no currency": the payable of a job posted without pay terms (hours only, nothing owed)."""
AUTO_APPROVE_BATCH = 100


async def _locked(org_id: uuid.UUID, job_id: uuid.UUID, session: AsyncSession):
    row = await job_services.load(org_id, job_id, session=session, lock=True)
    if row is None:
        raise NotFound(job_services.NO_SUCH_JOB)
    return row


async def approve(
    org_id: uuid.UUID, job_id: uuid.UUID, data: ApproveBody, *, by: str, session: AsyncSession, now: datetime
) -> Payable:
    """completed → approved, with the payable settled from the job's pay terms, its worked hours (or `data.hours`)
    and its expenses not rejected (up to `max_expenses`)."""
    checked(data.hours, "hours", upper=MAX_HOURS)
    job: Job = (await _locked(org_id, job_id, session)).Job
    require(job, Action.APPROVE)
    expenses = (await session.scalars(select(JobExpense).where(JobExpense.job_id == job_id))).all()
    known = {e.id for e in expenses}
    for i, expense_id in enumerate(data.reject_expenses):
        if expense_id not in known:
            raise Invalid(f"reject_expenses[{i}]", "not an expense of this job")
    rejected = set(data.reject_expenses)
    for expense in expenses:
        expense.status = "rejected" if expense.id in rejected else "approved"
    worked = await session.scalar(select(WORKED_HOURS).where(Job.id == job_id))
    worked = worked if worked is not None else Decimal("0")
    hours = data.hours if data.hours is not None else worked
    notes: list[str] = []
    if data.hours is not None:
        notes.append(f"hours set to {data.hours} by the organisation ({worked} worked)")
    if job.pay:
        terms = msgspec.convert(job.pay, Pay)
        settled = settle(terms, hours, [e.amount for e in expenses if e.id not in rejected])
        currency, hours, labour, paid_expenses, total = (
            terms.currency,
            settled.hours,
            settled.labour,
            settled.expenses,
            settled.total,
        )
        notes += settled.notes
    else:
        currency, labour, paid_expenses, total = NO_CURRENCY, Decimal("0.00"), Decimal("0.00"), Decimal("0.00")
        notes.append("the job has no pay terms")
    if rejected:
        notes.append(f"{len(rejected)} expense(s) rejected")
    if data.note:
        notes.append(data.note)
    payable = Payable(
        id=uuid.uuid4(),
        job_id=job_id,
        org_id=org_id,
        technician_id=job.technician_id,
        currency=currency,
        hours=hours.quantize(CENT),
        labour=labour,
        expenses=paid_expenses,
        total=total,
        status="approved",
        approved_at=now,
        approved_by=by,
        notes=notes,
    )
    session.add(payable)
    move(job, Action.APPROVE, now)
    job.approved_at = now
    record(session, job_id, "approved", now, by=by, payable_id=str(payable.id), total=str(total), currency=currency)
    await session.flush()
    return payable


async def mark_incomplete(
    org_id: uuid.UUID,
    job_id: uuid.UUID,
    reason: str,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    now: datetime,
) -> None:
    """completed → incomplete; the technician is pushed `job_incomplete` with the change."""
    job: Job = (await _locked(org_id, job_id, session)).Job
    move(job, Action.MARK_INCOMPLETE, now)
    record(session, job_id, "marked_incomplete", now, reason=reason)
    await send_later(
        session,
        queue,
        [JobIncomplete(technician_id=str(job.technician_id), job_id=str(job_id), title=job.title, reason=reason)],
    )


async def settings_of(org_id: uuid.UUID, *, session: AsyncSession) -> OrgSettings:
    days = await session.scalar(select(Organization.auto_approve_days).where(Organization.id == org_id))
    return OrgSettings(auto_approve_days=days)


async def put_settings(org_id: uuid.UUID, data: OrgSettings, *, session: AsyncSession) -> OrgSettings:
    await session.execute(
        update(Organization).where(Organization.id == org_id).values(auto_approve_days=data.auto_approve_days)
    )
    await session.commit()
    return data


async def auto_approve(now: datetime, *, session: AsyncSession, batch: int = AUTO_APPROVE_BATCH) -> int:
    """Approve, as if with no changes, the jobs completed at least their organisation's `auto_approve_days` ago
    (0: never). Rows are claimed with SKIP LOCKED and approved under the same lock, so two runs at once (two
    workers) or a dispatcher approving at that moment never approve a job twice. Commits each batch."""
    approved = 0
    while True:
        due = (
            await session.execute(
                select(Job.org_id, Job.id)
                .join(Organization, Organization.id == Job.org_id)
                .where(
                    Job.status == JobStatus.COMPLETED,
                    Organization.auto_approve_days > 0,
                    Job.completed_at <= now - func.make_interval(0, 0, 0, Organization.auto_approve_days),
                )
                .order_by(Job.completed_at)
                .limit(batch)
                .with_for_update(of=Job, skip_locked=True)
            )
        ).all()
        for org_id, job_id in due:
            await approve(org_id, job_id, ApproveBody(), by="auto", session=session, now=now)
        await session.commit()
        approved += len(due)
        if len(due) < batch:
            return approved


# Every 10 minutes: a job is approved at most 10 minutes after its organisation's delay has passed.
@tasks.periodic(cron="*/10 * * * *")
@tasks.task(name="auto_approve_jobs", queue="maintenance", pass_context=True)
async def auto_approve_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
    async with runtime_of(context).sessionmaker() as session:
        approved = await auto_approve(datetime.now(UTC), session=session)
    if approved:
        log.info("auto-approved %d jobs", approved)
