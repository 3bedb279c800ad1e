"""Payables: what an organisation owes its technicians, one per approved job — listed for the organisation (and
exported as CSV for its accounts system), marked paid once money has moved outside Truckroll, and shown to each
technician across every organisation as their earnings.

Lists are in the order of approval, oldest first (`approved_at`, then id), so that an accounts system reading
`?since=` its last import gets what is new at the end of the list.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.closing.reads import payable_out
from backend.closing.schemas import Earning, PayableOut
from backend.db.models import Organization, Payable
from backend.errors import Conflict, NotFound
from backend.jobs.lifecycle import record
from backend.pagination import decode_cursor, page_of
from backend.schemas import Page
from backend.webhooks import events

CSV_FIELDS = (
    "id",
    "job_id",
    "technician_id",
    "org_id",
    "currency",
    "hours",
    "labour",
    "expenses",
    "total",
    "status",
    "approved_at",
    "approved_by",
    "paid_at",
    "reference",
    "notes",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A cell a spreadsheet would read as a formula (OWASP's list): written with a leading apostrophe."""
CSV_BATCH = 500


def _filtered(query: Select, status: str | None, since: datetime | None) -> Select:
    if status is not None:
        query = query.where(Payable.status == status)
    if since is not None:
        query = query.where(Payable.approved_at >= since)
    return query


def _after(query: Select, cursor: str | None) -> Select:
    if cursor:
        query = query.where(tuple_(Payable.approved_at, Payable.id) > decode_cursor(cursor))
    return query.order_by(Payable.approved_at, Payable.id)


async def list_payables(
    org_id: uuid.UUID,
    *,
    status: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
    session: AsyncSession,
) -> Page[PayableOut]:
    query = _after(_filtered(select(Payable).where(Payable.org_id == org_id), status, since), cursor)
    rows, next_cursor = page_of(
        (await session.scalars(query.limit(limit + 1))).all(), limit, lambda p: (p.approved_at, p.id)
    )
    return Page(items=[payable_out(p) for p in rows], next_cursor=next_cursor)


def cell(value) -> str:
    text = "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_row(p: PayableOut) -> list[str]:
    return [cell("; ".join(p.notes) if name == "notes" else getattr(p, name)) for name in CSV_FIELDS]


async def csv_lines(
    org_id: uuid.UUID, *, status: str | None, since: datetime | None, sessions: async_sessionmaker
) -> AsyncIterator[bytes]:
    """The CSV export, header first, read in batches as it is sent (its own session: the request's is gone by
    then)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    writer.writerow(CSV_FIELDS)
    yield flush()
    cursor = None
    async with sessions() as session:
        while True:
            query = _filtered(select(Payable).where(Payable.org_id == org_id), status, since).order_by(
                Payable.approved_at, Payable.id
            )
            if cursor is not None:
                query = query.where(tuple_(Payable.approved_at, Payable.id) > cursor)
            batch = (await session.scalars(query.limit(CSV_BATCH))).all()
            for p in batch:
                writer.writerow(csv_row(payable_out(p)))
            if batch:
                yield flush()
            if len(batch) < CSV_BATCH:
                return
            cursor = (batch[-1].approved_at, batch[-1].id)


async def mark_paid(
    org_id: uuid.UUID, payable_id: uuid.UUID, reference: str, *, session: AsyncSession, now: datetime
) -> PayableOut:
    """approved → paid with the payment's reference; again with the same reference it is unchanged, with another
    it is refused (409)."""
    payable = await session.scalar(
        select(Payable)
        .where(Payable.id == payable_id, Payable.org_id == org_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if payable is None:
        raise NotFound("no such payable in this organisation")
    if payable.status == "paid":
        if payable.reference != reference:
            raise Conflict(
                f"this payable was paid with another reference ({payable.reference})", reference=payable.reference
            )
        return payable_out(payable)
    payable.status = "paid"
    payable.paid_at = now
    payable.reference = reference
    record(session, payable.job_id, "paid", now, payable_id=str(payable.id), reference=reference)
    await session.flush()
    out = payable_out(payable)
    await events.emit(session, org_id, "payable.paid", {"payable": out}, now=now, job_id=payable.job_id)
    return out


async def earnings(
    technician_id: uuid.UUID, *, since: datetime | None, limit: int, cursor: str | None, session: AsyncSession
) -> Page[Earning]:
    """The technician's payables across every organisation, each with the organisation's name."""
    query = _after(
        _filtered(
            select(Payable, Organization.name)
            .join(Organization, Organization.id == Payable.org_id)
            .where(Payable.technician_id == technician_id),
            None,
            since,
        ),
        cursor,
    )
    rows, next_cursor = page_of(
        (await session.execute(query.limit(limit + 1))).all(),
        limit,
        lambda r: (r.Payable.approved_at, r.Payable.id),
    )
    items = [Earning(**_fields(payable_out(r.Payable)), org_name=r.name) for r in rows]
    return Page(items=items, next_cursor=next_cursor)


def _fields(p: PayableOut) -> dict:
    return {f: getattr(p, f) for f in p.__struct_fields__}
