"""The bodies and answers of closing the work: attachments, expenses, approval, payables, earnings, settings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.closing.money import Hours, MaybeHours, Money

ExpenseStatus = Literal["pending", "approved", "rejected"]
PayableStatus = Literal["approved", "paid"]
ApprovedBy = Literal["organisation", "auto"]


class AttachmentOut(msgspec.Struct):
    id: uuid.UUID
    content_type: str
    size: int
    sha256: str
    created_at: datetime


class ExpenseIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    description: Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=r"\S")]
    amount: Money
    attachment_id: uuid.UUID | None = None
    """A receipt: an attachment of this job."""


class ExpenseOut(msgspec.Struct):
    id: uuid.UUID
    description: str
    amount: Money
    attachment_id: uuid.UUID | None
    status: ExpenseStatus
    created_at: datetime


class ApproveBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    hours: MaybeHours = None
    """Overrides the worked hours for pay."""
    reject_expenses: Annotated[list[uuid.UUID], msgspec.Meta(max_length=500)] = []
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] | None = None


class MarkIncompleteBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=r"\S")]


class PayableOut(msgspec.Struct):
    id: uuid.UUID
    job_id: uuid.UUID
    technician_id: uuid.UUID
    org_id: uuid.UUID
    currency: str
    hours: Hours
    labour: Money
    expenses: Money
    total: Money
    status: PayableStatus
    approved_at: datetime
    approved_by: ApprovedBy
    paid_at: datetime | None
    reference: str | None
    notes: list[str]


class Earning(PayableOut):
    """A payable as the technician sees it, with the name of the organisation that owes it."""

    org_name: str = ""


class PaidBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
    """The accounts system's reference of the payment (a transfer id, a batch number)."""


class OrgSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    auto_approve_days: Annotated[int, msgspec.Meta(ge=0, le=60)] = 7
    """A job completed this many days ago is approved by the system, as if approved with no changes; 0: never."""
