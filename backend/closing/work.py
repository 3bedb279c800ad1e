"""Proof of work, by the assigned technician: a job's tasks, its attachments (photos, signatures, receipts) and
the expenses claimed on it. Each step is allowed only to the technician the job is assigned to (anyone else is
told there is no such job) and runs in the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.closing import tasks as job_tasks
from backend.closing.money import CENT, checked
from backend.closing.schemas import AttachmentOut, ExpenseIn, ExpenseOut
from backend.closing.storage import Upload
from backend.db.models import Attachment, Job, JobExpense
from backend.errors import Conflict, Invalid, NotFound
from backend.jobs.dispatch import assigned_job
from backend.jobs.lifecycle import record
from backend.jobs.services import load_any
from matching.lifecycle import WORKING, JobStatus

UPLOADING = frozenset({JobStatus.EN_ROUTE, JobStatus.ON_SITE, JobStatus.COMPLETED, JobStatus.INCOMPLETE})
"""From en route until approved (API.md)."""
CLAIMING = WORKING | {JobStatus.ASSIGNED, JobStatus.COMPLETED}
"""Expenses are claimed before approval: once the job is assigned, not after it is approved or cancelled."""


def _refuse(job: Job, what: str) -> Conflict:
    return Conflict(f"a job that is {job.status} cannot {what}", status=job.status)


async def put_task(
    job_id: uuid.UUID, technician_id: uuid.UUID, key: str, value, *, session: AsyncSession, now: datetime
) -> job_tasks.TaskOut:
    row = await assigned_job(job_id, technician_id, session)
    job: Job = row.Job
    if job.status not in WORKING:
        raise _refuse(job, "have its tasks recorded (en_route, on_site or incomplete only)")
    rows = [dict(t) for t in job.tasks]
    task = next((t for t in rows if t["key"] == key), None)
    if task is None:
        raise NotFound("no such task on this job")
    stored, attachment_id = job_tasks.checked_value(task["type"], value)
    if attachment_id is not None:
        content_type = await session.scalar(
            select(Attachment.content_type).where(Attachment.id == attachment_id, Attachment.job_id == job_id)
        )
        if content_type is None:
            raise Invalid("value", "no such attachment on this job")
        if task["type"] == "photo" and not content_type.startswith("image/"):
            raise Invalid("value", f"a photo task takes an image, this attachment is {content_type}")
    task["value"] = stored
    task["done_at"] = now.isoformat() if stored is not None else None
    job.tasks = rows
    job.updated_at = now
    record(session, job_id, "task_recorded", now, key=key, done=stored is not None)
    return job_tasks.shown([task])[0]


async def can_upload(job_id: uuid.UUID, technician_id: uuid.UUID, *, session: AsyncSession) -> uuid.UUID:
    """Before reading an upload's bytes: 404 unless the job is assigned to the caller, 409 outside en_route…approved.
    Returns the job's organisation."""
    row = await load_any(job_id, session=session)
    if row is None or row.Job.technician_id != technician_id:
        raise NotFound("no such job assigned to you")
    if row.Job.status not in UPLOADING:
        raise _refuse(row.Job, "take attachments (from en_route until approved)")
    return row.Job.org_id


async def same_upload(job_id: uuid.UUID, sha256: str, *, session: AsyncSession) -> AttachmentOut | None:
    """The job's attachment with these bytes, if it has one: an upload retried answers the first."""
    found = await session.scalar(
        select(Attachment).where(Attachment.job_id == job_id, Attachment.sha256 == sha256).limit(1)
    )
    return attachment_out(found) if found is not None else None


async def add_attachment(
    job_id: uuid.UUID,
    technician_id: uuid.UUID,
    attachment_id: uuid.UUID,
    storage_key: str,
    upload: Upload,
    *,
    session: AsyncSession,
    now: datetime,
) -> AttachmentOut:
    """Record an attachment whose bytes are in the store; the job is checked again under its lock."""
    row = await assigned_job(job_id, technician_id, session)
    if row.Job.status not in UPLOADING:
        raise _refuse(row.Job, "take attachments (from en_route until approved)")
    attachment = Attachment(
        id=attachment_id,
        job_id=job_id,
        technician_id=technician_id,
        content_type=upload.content_type,
        size=upload.size,
        sha256=upload.sha256,
        storage_key=storage_key,
        created_at=now,
    )
    session.add(attachment)
    record(session, job_id, "attachment_added", now, attachment_id=str(attachment_id), content_type=upload.content_type)
    await session.flush()
    return attachment_out(attachment)


def attachment_out(a: Attachment) -> AttachmentOut:
    return AttachmentOut(id=a.id, content_type=a.content_type, size=a.size, sha256=a.sha256, created_at=a.created_at)


async def readable_attachment(
    job_id: uuid.UUID, attachment_id: uuid.UUID, *, org_id: uuid.UUID | None, technician_id: uuid.UUID | None, session
) -> Attachment:
    """The attachment, if the caller is the job's organisation or its assigned technician; else 404."""
    query = (
        select(Attachment)
        .join(Job, Job.id == Attachment.job_id)
        .where(Attachment.id == attachment_id, Attachment.job_id == job_id)
    )
    query = query.where(Job.org_id == org_id) if org_id is not None else query.where(Job.technician_id == technician_id)
    found = await session.scalar(query)
    if found is None:
        raise NotFound("no such attachment")
    return found


async def add_expense(
    job_id: uuid.UUID, technician_id: uuid.UUID, data: ExpenseIn, *, session: AsyncSession, now: datetime
) -> ExpenseOut:
    checked(data.amount, "amount")
    row = await assigned_job(job_id, technician_id, session)
    job: Job = row.Job
    if job.status not in CLAIMING:
        raise _refuse(job, "take expenses (from assignment until approval)")
    if not job.pay:
        raise Conflict("this job has no pay terms, so no currency to claim expenses in", status=job.status)
    if data.attachment_id is not None:
        found = await session.scalar(
            select(Attachment.id).where(Attachment.id == data.attachment_id, Attachment.job_id == job_id)
        )
        if found is None:
            raise Invalid("attachment_id", "no such attachment on this job")
    expense = JobExpense(
        id=uuid.uuid4(),
        job_id=job_id,
        technician_id=technician_id,
        description=data.description.strip(),
        amount=data.amount.quantize(CENT),
        attachment_id=data.attachment_id,
        status="pending",
        created_at=now,
    )
    session.add(expense)
    record(session, job_id, "expense_claimed", now, expense_id=str(expense.id), amount=str(data.amount))
    await session.flush()
    return ExpenseOut(
        id=expense.id,
        description=expense.description,
        amount=expense.amount,
        attachment_id=expense.attachment_id,
        status="pending",
        created_at=now,
    )
