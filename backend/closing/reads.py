"""What closing the work adds to a job as it is read: its tasks, worked hours, expenses and payable.

`columns()` are selected with the job (one round trip) from a query joined with `with_payable`; `fields(row)` are the
job object's fields they fill in.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import Text, cast, func, select, text
from sqlalchemy.sql import Select

from backend.closing.schemas import ExpenseOut, PayableOut
from backend.closing.tasks import shown
from backend.db.models import Job, JobExpense, JobVisit, Payable

WORKED_HOURS = (
    select(func.round(func.extract("epoch", func.sum(JobVisit.completed_at - JobVisit.checked_in_at)) / 3600, 2))
    .where(JobVisit.job_id == Job.id, JobVisit.completed_at.is_not(None))
    .scalar_subquery()
)
"""Worked hours: the sum of the job's on-site time, each visit from its check-in to the completion that followed
it, in hours rounded half-up to 0.01 h (36 s); null before any visit ended. The one definition: the payable is
settled on it."""

_EXPENSES = (
    select(
        func.coalesce(
            func.json_agg(
                func.json_build_object(
                    "id",
                    JobExpense.id,
                    "description",
                    JobExpense.description,
                    # As text: a JSON number would come back as a float.
                    "amount",
                    cast(JobExpense.amount, Text),
                    "attachment_id",
                    JobExpense.attachment_id,
                    "status",
                    JobExpense.status,
                    "created_at",
                    JobExpense.created_at,
                ).op("ORDER BY")(JobExpense.created_at)
            ),
            text("'[]'::json"),
        )
    )
    .where(JobExpense.job_id == Job.id)
    .scalar_subquery()
)


def columns() -> tuple:
    return WORKED_HOURS.label("worked_hours"), _EXPENSES.label("expenses"), Payable


def with_payable(query: Select) -> Select:
    return query.outerjoin(Payable, Payable.job_id == Job.id)


def payable_out(payable: Payable) -> PayableOut:
    return PayableOut(
        id=payable.id,
        job_id=payable.job_id,
        technician_id=payable.technician_id,
        org_id=payable.org_id,
        currency=payable.currency,
        hours=payable.hours,
        labour=payable.labour,
        expenses=payable.expenses,
        total=payable.total,
        status=payable.status,
        approved_at=payable.approved_at,
        approved_by=payable.approved_by,
        paid_at=payable.paid_at,
        reference=payable.reference,
        notes=list(payable.notes),
    )


def fields(row) -> dict:
    """The job object's fields of closing the work, from a row with `columns()`."""
    job: Job = row.Job
    return {
        "tasks": shown(job.tasks),
        "hours": row.worked_hours,
        "expenses": msgspec.convert(row.expenses, list[ExpenseOut]),
        "payable": payable_out(row.Payable) if row.Payable is not None else None,
    }
