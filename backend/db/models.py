"""The relational model. Alembic migrations are the schema's source of truth; these models must agree
with them (tests/integration/test_migrations.py fails when they drift apart)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from geoalchemy2 import Geography
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


TIERS = ("preferred", "approved")
PLATFORMS = ("android", "ios")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _now_column() -> Mapped[datetime]:
    # The Python default makes the value known right after a flush without a reload.
    return mapped_column(DateTime(timezone=True), nullable=False, default=_utcnow, server_default=func.now())


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    settings: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now_column()


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
    __table_args__ = (Index("ix_technicians_location", "location", postgresql_using="gist"),)

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
