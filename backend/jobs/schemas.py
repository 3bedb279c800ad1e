from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from backend.closing.money import MaybeHours
from backend.closing.pay import Pay
from backend.closing.schemas import ExpenseOut, PayableOut
from backend.closing.tasks import TaskOut, Tasks
from backend.schemas import AwareDatetime, LatLon
from backend.technicians.schemas import Skills, Tier

JobStatus = Literal[
    "open",
    "offering",
    "assigned",
    "en_route",
    "on_site",
    "completed",
    "approved",
    "incomplete",
    "cancelled",
    "unfilled",
]
OfferStatus = Literal["pending", "accepted", "declined", "expired", "withdrawn"]
Text200 = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]


class Window(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start: AwareDatetime
    end: AwareDatetime


class Customer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Text200
    phone: Annotated[str, msgspec.Meta(max_length=32, pattern=r"^\+?[0-9 ().-]{3,31}$")] | None = None


class Wave(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tiers: Annotated[list[Tier], msgspec.Meta(min_length=1, max_length=2)]
    radius_km: Annotated[float, msgspec.Meta(gt=0, le=500)]
    max_offers: Annotated[int, msgspec.Meta(ge=1, le=100)]
    offer_ttl_s: Annotated[int, msgspec.Meta(ge=1, le=86400)]


DEFAULT_WAVE = Wave(tiers=["preferred", "approved"], radius_km=50, max_offers=10, offer_ttl_s=120)


class Dispatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    waves: Annotated[list[Wave], msgspec.Meta(min_length=1, max_length=10)] = msgspec.field(
        default_factory=lambda: [DEFAULT_WAVE]
    )
    auto: bool = True


class JobCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    location: LatLon
    window: Window
    customer: Customer
    title: Text200 | None = None
    """Required, unless the job's template gives it."""
    skills: Skills | None = None
    """Required, unless the job's template gives it."""
    description: Annotated[str, msgspec.Meta(max_length=10_000)] | None = None
    external_ref: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    address: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    pay: Pay | None = None
    dispatch: Dispatch | None = None
    """Default: one wave, both tiers, 50 km, 10 offers, 120 s (or the template's)."""
    estimated_hours: Annotated[float, msgspec.Meta(gt=0, le=336)] | None = None
    tasks: Tasks | None = None
    template_id: uuid.UUID | None = None
    """Start from this job template: each field given here replaces the template's."""


class AssignBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    technician_id: uuid.UUID


class CancelBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class BackOutBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000, pattern=r"\S")]


class TechnicianRef(msgspec.Struct):
    id: uuid.UUID
    name: str


class OfferOut(msgspec.Struct):
    id: uuid.UUID
    technician_id: uuid.UUID
    status: OfferStatus
    wave: int
    expires_at: datetime


class EventOut(msgspec.Struct):
    at: datetime
    type: str
    data: dict[str, Any]


class JobOut(msgspec.Struct):
    id: uuid.UUID
    status: JobStatus
    title: str
    skills: list[str]
    location: LatLon
    window: Window
    customer: Customer
    dispatch: Dispatch
    estimated_hours: float
    current_wave: int
    technician: TechnicianRef | None
    tracking_token: str
    created_at: datetime
    description: str | None = None
    external_ref: str | None = None
    address: str | None = None
    pay: Pay | None = None
    tasks: list[TaskOut] = []
    hours: MaybeHours = None
    """Worked hours: the sum of on-site time (check-in → complete, for each visit), to 0.01 h; null before a visit."""
    expenses: list[ExpenseOut] = []
    payable: PayableOut | None = None
    approved_at: datetime | None = None
    template_id: uuid.UUID | None = None
    offers: list[OfferOut] | None = None
    events: list[EventOut] | None = None


class CandidateOut(msgspec.Struct):
    technician_id: uuid.UUID
    rank: int
    score: float
    distance_m: float
    eta_s: int
    components: dict[str, float]
    warnings: list[str]


class ExcludedOut(msgspec.Struct):
    technician_id: uuid.UUID
    reasons: list[str]


class Candidates(msgspec.Struct):
    wave: int
    items: list[CandidateOut]
    excluded: list[ExcludedOut] | None = None


class JobSummary(msgspec.Struct):
    """What a technician's phone shows of a job."""

    id: uuid.UUID
    title: str
    skills: list[str]
    location: LatLon
    window: Window
    address: str | None = None
    pay: Pay | None = None


class MyOffer(msgspec.Struct):
    id: uuid.UUID
    job: JobSummary
    distance_m: float | None
    expires_at: datetime


class DeclineBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class TechnicianJob(msgspec.Struct):
    """A job as its technician sees it: what is needed to do the work, nothing of other offers."""

    id: uuid.UUID
    status: JobStatus
    title: str
    skills: list[str]
    location: LatLon
    window: Window
    customer: Customer
    description: str | None = None
    address: str | None = None
    pay: Pay | None = None
    tasks: list[TaskOut] = []
    hours: MaybeHours = None
    expenses: list[ExpenseOut] = []
    payable: PayableOut | None = None
