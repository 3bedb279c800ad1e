from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.schemas import AwareDatetime
from backend.technicians.schemas import Skill

NAMED_KINDS = ("background_check", "drug_screen", "insurance_liability", "contractor_agreement", "nda")
_CERT = re.compile(r"cert:[a-z0-9_.-]{1,64}")
KINDS_DOC = ", ".join(NAMED_KINDS) + ", cert:<name> (name: a-z, 0-9, _ - ., 1 to 64 characters)"

CredentialStatus = Literal["valid", "pending", "failed"]
Reference = Annotated[str, msgspec.Meta(max_length=200)]
# Kinds are checked by `is_credential_kind` (an unknown kind is a 422 that names it), not by the decoder.
KindList = Annotated[list[Annotated[str, msgspec.Meta(max_length=100)]], msgspec.Meta(max_length=50)]


def is_credential_kind(kind: str) -> bool:
    return kind in NAMED_KINDS or _CERT.fullmatch(kind) is not None


class CredentialPut(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status: CredentialStatus
    issued_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    reference: Reference | None = None


class CredentialOut(msgspec.Struct):
    kind: str
    status: CredentialStatus
    issued_at: datetime | None
    expires_at: datetime | None
    reference: str | None


class Credentials(msgspec.Struct):
    items: list[CredentialOut]


class Requirements(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The credentials a technician must hold, in general and for each skill a job may require."""

    credentials: KindList = []
    by_skill: Annotated[dict[Skill, KindList], msgspec.Meta(max_length=200)] = {}


class AlertOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: uuid.UUID
    technician_id: uuid.UUID
    kind: str
    value: float | str
    limit: float | str | None
    job_id: uuid.UUID | None = None
    at: datetime


def alert_out(row) -> AlertOut:
    """An alert as the API shows it, from its row (a ComplianceAlert or a row with its columns)."""
    return AlertOut(
        id=row.id,
        technician_id=row.technician_id,
        kind=row.kind,
        value=row.value,
        limit=row.limit,
        job_id=row.job_id,
        at=row.at,
    )


class EngagementPolicyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Co-employment limits; an omitted (or null) limit is not checked."""

    max_hours_per_week: Annotated[float, msgspec.Meta(gt=0, le=168)] | None = None
    max_consecutive_weeks: Annotated[int, msgspec.Meta(ge=1, le=520)] | None = None
    max_tenure_months: Annotated[int, msgspec.Meta(ge=1, le=600)] | None = None
    mode: Literal["warn", "block"]


class EngagementPolicyOut(msgspec.Struct, kw_only=True):
    max_hours_per_week: float | None
    max_consecutive_weeks: int | None
    max_tenure_months: int | None
    mode: Literal["warn", "block"]
