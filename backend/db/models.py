"""The relational model. Alembic migrations are the schema's source of truth; these models must agree
with them (tests/integration/test_migrations.py fails when they drift apart)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from geoalchemy2 import Geography
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from matching.lifecycle import ACTIVE, DONE, JobStatus, sql_list

MONEY = Numeric(14, 2)
"""Money: exact, in cents (backend.closing.money)."""

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# A point on the globe in WGS84; distances on it are in metres. The GiST indexes are declared explicitly
# (spatial_index=False) so that their names and definitions live in the migrations like every other index.
def Point() -> Geography:
    return Geography(geometry_type="POINT", srid=4326, spatial_index=False)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _now_column() -> Mapped[datetime]:
    # The Python default makes the value known right after a flush without a reload.
    return mapped_column(DateTime(timezone=True), nullable=False, default=_utcnow, server_default=func.now())


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = (CheckConstraint("auto_approve_days BETWEEN 0 AND 60", name="auto_approve_days"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    settings: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now_column()
    # A completed job is approved by the system after this many days (0: never).
    auto_approve_days: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("7"))


class ApiKey(Base):
    """An organisation's API key. Only a SHA-256 of the key is stored: keys are 256-bit random strings,
    so a slow password hash would add latency to every request without adding safety."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True
    )
    prefix: Mapped[str] = mapped_column(Text, nullable=False)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, unique=True)
    created_at: Mapped[datetime] = _now_column()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Technician(Base):
    """One person, across every organisation whose pool they belong to. Presence (duty and the latest
    position) belongs to the person; what an organisation knows of them lives in PoolMembership."""

    __tablename__ = "technicians"
    __table_args__ = (
        Index("ix_technicians_location", "location", postgresql_using="gist"),
        # ASAP matching walks only the technicians on duty.
        Index("ix_technicians_location_on_duty", "location", postgresql_using="gist", postgresql_where=text("on_duty")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    firebase_uid: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    on_duty: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    location = mapped_column(Point())
    location_recorded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    location_accuracy_m: Mapped[float | None] = mapped_column(Float)
    speed_mps: Mapped[float | None] = mapped_column(Float)
    heading_deg: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _now_column()


class PoolMembership(Base):
    """A technician as one organisation knows them: tier, skills, service area, notes."""

    __tablename__ = "pool_memberships"
    __table_args__ = (
        CheckConstraint("tier IN ('preferred', 'approved')", name="tier"),
        CheckConstraint("service_radius_km > 0 AND service_radius_km <= 500", name="service_radius"),
        Index("ix_pool_memberships_home", "home", postgresql_using="gist"),
        # Matching counts the members who have a job's (possibly rare) skills.
        Index("ix_pool_memberships_skills", "skills", postgresql_using="gin"),
        Index("ix_pool_memberships_org_id_created_at", "org_id", "created_at", "technician_id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    technician_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("technicians.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    tier: Mapped[str] = mapped_column(Text, nullable=False)
    skills: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default=text("'{}'"))
    service_radius_km: Mapped[float] = mapped_column(Float, nullable=False)
    home = mapped_column(Point(), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_column()
    # This organisation's released ratings of the technician (JobRating), folded in once each, so that the
    # pool view and matching read the Bayesian rating with the member row.
    rating_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    rating_sum: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # Reliability, counted as it happens (see matching.curation): offers that ended by an answer or by
    # expiring, and of those the accepted ones; assignments, back-outs, check-ins (on time: by the window's
    # end) and completions. Not indexed, so that bumping them is a HOT update.
    offers_answered: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    offers_accepted: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    assignments: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    backouts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    check_ins: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    on_time_check_ins: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    completions: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))


class LocationPing(Base):
    """Append-only history of positions. The latest one is also kept on the technician row."""

    __tablename__ = "location_pings"
    __table_args__ = (
        Index("ix_location_pings_technician_id_recorded_at", "technician_id", "recorded_at"),
        Index("ix_location_pings_received_at", "received_at", postgresql_using="brin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    technician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("technicians.id", ondelete="CASCADE"), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    received_at: Mapped[datetime] = _now_column()
    location = mapped_column(Point(), nullable=False)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    speed_mps: Mapped[float | None] = mapped_column(Float)
    heading_deg: Mapped[float | None] = mapped_column(Float)


class Device(Base):
    """A phone's FCM registration token. A token re-registered by another technician moves to them."""

    __tablename__ = "devices"
    __table_args__ = (CheckConstraint("platform IN ('android', 'ios')", name="platform"),)

    token: Mapped[str] = mapped_column(Text, primary_key=True)
    technician_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("technicians.id", ondelete="CASCADE"), nullable=False, index=True
    )
    platform: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = _now_column()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_list(frozenset(JobStatus))})", name="status"),
        CheckConstraint("window_end > window_start", name="window"),
        Index("ix_jobs_org_id_created_at", "org_id", "created_at", "id"),
        # "busy" in matching: a technician's active jobs and their windows.
        Index(
            "ix_jobs_technician_id_active",
            "technician_id",
            "window_start",
            postgresql_where=text(f"status IN ({sql_list(ACTIVE)})"),
        ),
        # Engagement: the work a technician did for an organisation, from check-in to completion.
        Index(
            "ix_jobs_org_id_technician_id_worked",
            "org_id",
            "technician_id",
            "checked_in_at",
            postgresql_where=text(f"status IN ({sql_list(DONE)})"),
        ),
        # Auto-approval walks the jobs completed longest ago.
        Index("ix_jobs_completed_at_completed", "completed_at", postgresql_where=text("status = 'completed'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    external_ref: Mapped[str | None] = mapped_column(Text)
    skills: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default=text("'{}'"))
    location = mapped_column(Point(), nullable=False)
    address: Mapped[str | None] = mapped_column(Text)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    estimated_hours: Mapped[float] = mapped_column(Float, nullable=False)
    pay: Mapped[dict | None] = mapped_column(JSONB)
    customer: Mapped[dict] = mapped_column(JSONB, nullable=False)
    dispatch: Mapped[dict] = mapped_column(JSONB, nullable=False)
    current_wave: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    technician_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("technicians.id"))
    tracking_token: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = _now_column()
    # The customer's tracking link closes 24 h after either.
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Work starts at check-in: engagement counts the hours from here to `completed_at`. The latest visit's;
    # every visit is a JobVisit.
    checked_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # [{key, type, label, required, value, done_at}] (backend.closing.tasks)
    tasks: Mapped[list] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    template_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("job_templates.id", ondelete="SET NULL"))


class Offer(Base):
    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'accepted', 'declined', 'expired', 'withdrawn')", name="status"),
        # No wave offers a job twice to the same technician.
        UniqueConstraint("job_id", "technician_id", name="uq_offers_job_id_technician_id"),
        Index("ix_offers_technician_id_pending", "technician_id", postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    technician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("technicians.id", ondelete="CASCADE"), nullable=False)
    wave: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'pending'"))
    distance_m: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _now_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)


class JobEvent(Base):
    """The job's timeline, append-only."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    at: Mapped[datetime] = _now_column()
    type: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))


class IdempotentRequest(Base):
    """A POST made with an Idempotency-Key: its fingerprint and, once done, its response (kept ≥ 24 h)."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (Index("ix_idempotent_requests_created_at", "created_at"),)

    scope: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    response_body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = _now_column()


class Credential(Base):
    """What one organisation verified about one of its technicians (another organisation never sees it)."""

    __tablename__ = "credentials"
    __table_args__ = (
        CheckConstraint("status IN ('valid', 'pending', 'failed')", name="status"),
        CheckConstraint(
            "kind ~ '^(background_check|drug_screen|insurance_liability|contractor_agreement|nda|cert:[a-z0-9_.-]{1,64})$'",
            name="kind",
        ),
        CheckConstraint("expires_at IS NULL OR issued_at IS NULL OR expires_at >= issued_at", name="validity"),
        # Only a member of the pool holds this organisation's credentials.
        ForeignKeyConstraint(
            ["org_id", "technician_id"],
            ["pool_memberships.org_id", "pool_memberships.technician_id"],
            ondelete="CASCADE",
        ),
        # The daily expiry alerts look at valid credentials by their expiry.
        Index(
            "ix_credentials_expires_at_valid",
            "expires_at",
            postgresql_where=text("status = 'valid' AND expires_at IS NOT NULL"),
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    technician_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reference: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now_column()


class OrgRequirements(Base):
    """The credentials an organisation's technician must hold to be offered a job: in general, and per skill."""

    __tablename__ = "org_requirements"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    credentials: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default=text("'{}'"))
    by_skill: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))


class EngagementPolicy(Base):
    """An organisation's co-employment guardrails, checked whenever a job is offered or assigned."""

    __tablename__ = "engagement_policies"
    __table_args__ = (
        CheckConstraint("mode IN ('warn', 'block')", name="mode"),
        CheckConstraint("max_hours_per_week IS NULL OR max_hours_per_week > 0", name="max_hours_per_week"),
        CheckConstraint("max_consecutive_weeks IS NULL OR max_consecutive_weeks > 0", name="max_consecutive_weeks"),
        CheckConstraint("max_tenure_months IS NULL OR max_tenure_months > 0", name="max_tenure_months"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    max_hours_per_week: Mapped[float | None] = mapped_column(Float)
    max_consecutive_weeks: Mapped[int | None] = mapped_column(Integer)
    max_tenure_months: Mapped[int | None] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = _now_column()


class ComplianceAlert(Base):
    """Something a dispatcher should look at. `dedupe_key` makes each alert be raised once per organisation."""

    __tablename__ = "compliance_alerts"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('hours_per_week', 'consecutive_weeks', 'tenure', 'credential_expiring', 'credential_expired')",
            name="kind",
        ),
        UniqueConstraint("org_id", "dedupe_key"),
        Index("ix_compliance_alerts_org_id_at", "org_id", "at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)
    technician_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("technicians.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    # A figure for the engagement limits; for credential alerts the credential's kind (and its expiry as `limit`).
    value: Mapped[object] = mapped_column(JSONB, nullable=False)
    limit: Mapped[object | None] = mapped_column(JSONB)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    dedupe_key: Mapped[str] = mapped_column(Text, nullable=False)


class JobRating(Base):
    """One side's rating of a completed job: the organisation's of the technician (`org`) or the technician's
    of the organisation (`technician`). `released_at` is set when the rating is folded into the member's
    aggregate (PoolMembership.rating_count/rating_sum); null means not folded yet."""

    __tablename__ = "job_ratings"
    __table_args__ = (
        CheckConstraint("side IN ('org', 'technician')", name="side"),
        CheckConstraint("stars BETWEEN 1 AND 5", name="stars"),
        # The hourly release walks the few ratings still waiting for the other side (or for 14 days).
        Index("ix_job_ratings_created_at_unreleased", "created_at", postgresql_where=text("released_at IS NULL")),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    side: Mapped[str] = mapped_column(Text, primary_key=True)
    stars: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    comment: Mapped[str | None] = mapped_column(Text)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)
    technician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("technicians.id", ondelete="CASCADE"), nullable=False)
    created_at: Mapped[datetime] = _now_column()
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobTemplate(Base):
    """An organisation's starting point for jobs: any of a job's fields (`fields`, as POST /v1/job-templates took them)."""

    __tablename__ = "job_templates"
    __table_args__ = (Index("ix_job_templates_org_id_created_at", "org_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    fields: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = _now_column()


class JobVisit(Base):
    """On site once: from a check-in to the completion that follows it. A job's worked hours are the sum of its
    visits; the payable and engagement read the same rows."""

    __tablename__ = "job_visits"
    __table_args__ = (
        CheckConstraint("completed_at IS NULL OR completed_at >= checked_in_at", name="order"),
        Index("ix_job_visits_technician_id_checked_in_at", "technician_id", "checked_in_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True)
    technician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("technicians.id", ondelete="CASCADE"), nullable=False)
    checked_in_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Attachment(Base):
    """A file the assigned technician sent as proof of work; its bytes live in the object store under `storage_key`."""

    __tablename__ = "attachments"
    __table_args__ = (
        CheckConstraint("content_type IN ('image/jpeg', 'image/png', 'application/pdf')", name="content_type"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True)
    technician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("technicians.id", ondelete="CASCADE"), nullable=False)
    content_type: Mapped[str] = mapped_column(Text, nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(Text, nullable=False)
    storage_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    created_at: Mapped[datetime] = _now_column()


class JobExpense(Base):
    """An expense the technician claims on a job; approved or rejected when the job is approved."""

    __tablename__ = "job_expenses"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount"),
        CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True)
    technician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("technicians.id", ondelete="CASCADE"), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    attachment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("attachments.id"))
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'pending'"))
    created_at: Mapped[datetime] = _now_column()


class Payable(Base):
    """What an organisation owes a technician for an approved job: the record an accounts system imports."""

    __tablename__ = "payables"
    __table_args__ = (
        CheckConstraint("status IN ('approved', 'paid')", name="status"),
        CheckConstraint("approved_by IN ('organisation', 'auto')", name="approved_by"),
        CheckConstraint("total = labour + expenses", name="total"),
        Index("ix_payables_org_id_approved_at", "org_id", "approved_at", "id"),
        Index("ix_payables_technician_id_approved_at", "technician_id", "approved_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, unique=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)
    technician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("technicians.id", ondelete="CASCADE"), nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    hours: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    labour: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    expenses: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    total: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'approved'"))
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    approved_by: Mapped[str] = mapped_column(Text, nullable=False)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reference: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default=text("'{}'"))


class WebhookEndpoint(Base):
    """Where an organisation wants its events POSTed (backend.webhooks). One per organisation and URL: registering
    a URL again updates it and turns it back on."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        UniqueConstraint("org_id", "url"),
        Index("ix_webhook_endpoints_org_id_created_at", "org_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    events: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """The first failed attempt since the last success (null while it succeeds)."""
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class WebhookSlot(Base):
    """The endpoint's concurrency limit: a delivery attempt leases one of its slots for as long as it may take; a
    lease whose holder died runs out by itself."""

    __tablename__ = "webhook_slots"

    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    leased_until: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("'-infinity'")
    )


class WebhookEvent(Base):
    """Something that happened, as it is POSTed (`body`, fixed once its transaction commits)."""

    __tablename__ = "webhook_events"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    body: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(Base):
    """One event to one endpoint: its attempts so far and what the last one got back."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
        Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False
    )
    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
