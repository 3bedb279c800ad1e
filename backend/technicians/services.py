"""The talent pool: technicians as each organisation knows them."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
import procrastinate
from sqlalchemy import Row, Select, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.geo import lat_of, lon_of, point
from backend.db.models import PoolMembership, Technician
from backend.errors import Conflict, NotFound
from backend.jobs import dispatch
from backend.pagination import decode_cursor, page_of
from backend.ratings.services import shown_rating
from backend.schemas import LatLon, Page, Position, normalize_skills
from backend.technicians.schemas import TechnicianCreate, TechnicianOut, TechnicianUpdate
from matching import MatchSettings
from matching.curation import COUNTERS, reliability

RELIABILITY_COUNTERS = tuple(getattr(PoolMembership, counter) for counter in COUNTERS)
NOT_IN_POOL = "no such technician in this organisation's pool"


async def in_pool(org_id: uuid.UUID, technician_id: uuid.UUID, *, session: AsyncSession) -> bool:
    return await session.get(PoolMembership, (org_id, technician_id)) is not None


def _pool_view(org_id: uuid.UUID) -> Select:
    return (
        select(
            Technician.id,
            Technician.name,
            Technician.email,
            Technician.phone,
            Technician.on_duty,
            Technician.location_recorded_at,
            lat_of(Technician.location).label("loc_lat"),
            lon_of(Technician.location).label("loc_lon"),
            PoolMembership.tier,
            PoolMembership.skills,
            PoolMembership.service_radius_km,
            PoolMembership.active,
            PoolMembership.notes,
            PoolMembership.created_at,
            PoolMembership.rating_count,
            PoolMembership.rating_sum,
            *RELIABILITY_COUNTERS,
            lat_of(PoolMembership.home).label("home_lat"),
            lon_of(PoolMembership.home).label("home_lon"),
        )
        .join(PoolMembership, PoolMembership.technician_id == Technician.id)
        .where(PoolMembership.org_id == org_id)
    )


def _out(row: Row) -> TechnicianOut:
    last = (
        Position(lat=row.loc_lat, lon=row.loc_lon, recorded_at=row.location_recorded_at)
        if row.location_recorded_at is not None
        else None
    )
    return TechnicianOut(
        id=row.id,
        name=row.name,
        skills=list(row.skills),
        tier=row.tier,
        active=row.active,
        service_radius_km=row.service_radius_km,
        home=LatLon(lat=row.home_lat, lon=row.home_lon),
        on_duty=row.on_duty,
        last_location=last,
        rating=shown_rating(row.rating_count, row.rating_sum),
        reliability=reliability(**{c.key: getattr(row, c.key) for c in RELIABILITY_COUNTERS}),
        email=row.email,
        phone=row.phone,
        notes=row.notes,
    )


async def get(org_id: uuid.UUID, technician_id: uuid.UUID, *, session: AsyncSession) -> TechnicianOut:
    row = (await session.execute(_pool_view(org_id).where(Technician.id == technician_id))).first()
    if row is None:
        raise NotFound(NOT_IN_POOL)
    return _out(row)


async def onboard(org_id: uuid.UUID, data: TechnicianCreate, *, session: AsyncSession) -> TechnicianOut:
    """Add a technician to this organisation's pool, creating the person on first sight.

    A person is identified by their Firebase uid. When they already exist (another organisation
    onboarded them) their own profile — name, email, phone — is kept as it is: one organisation
    cannot rewrite what the others see.
    """
    technician_id = await session.scalar(
        insert(Technician)
        .values(
            id=uuid.uuid4(), firebase_uid=data.firebase_uid, name=data.name.strip(), email=data.email, phone=data.phone
        )
        .on_conflict_do_update(index_elements=[Technician.firebase_uid], set_={"firebase_uid": data.firebase_uid})
        .returning(Technician.id)
    )
    added = await session.scalar(
        insert(PoolMembership)
        .values(
            org_id=org_id,
            technician_id=technician_id,
            tier=data.tier,
            skills=normalize_skills(data.skills),
            service_radius_km=data.service_radius_km,
            home=point(data.home.lat, data.home.lon),
            active=data.active,
            notes=data.notes,
        )
        .on_conflict_do_nothing()
        .returning(PoolMembership.technician_id)
    )
    if added is None:
        raise Conflict("this technician is already in the pool", technician_id=str(technician_id))
    return await get(org_id, technician_id, session=session)


async def update(
    org_id: uuid.UUID,
    technician_id: uuid.UUID,
    data: TechnicianUpdate,
    *,
    session: AsyncSession,
    queue: procrastinate.App,
    match_settings: MatchSettings,
    now: datetime,
) -> TechnicianOut:
    """Change this organisation's view of a member. Deactivating withdraws their pending offers of its jobs (an
    accept in flight either commits first, or sees the member inactive: it reads the membership FOR SHARE)."""
    membership = await session.get(PoolMembership, (org_id, technician_id), with_for_update=True)
    if membership is None:
        raise NotFound(NOT_IN_POOL)
    changes = {f: v for f in data.__struct_fields__ if (v := getattr(data, f)) is not msgspec.UNSET}
    if "skills" in changes:
        changes["skills"] = normalize_skills(changes["skills"])
    deactivated = membership.active and changes.get("active") is False
    for field, value in changes.items():
        setattr(membership, field, value)
    if deactivated:
        await dispatch.withdraw_member_offers(
            org_id, technician_id, session=session, queue=queue, match_settings=match_settings, now=now
        )
    await session.commit()
    return await get(org_id, technician_id, session=session)


async def list_pool(
    org_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    tier: str | None = None,
    active: bool | None = None,
    session: AsyncSession,
) -> Page[TechnicianOut]:
    query = _pool_view(org_id)
    if tier is not None:
        query = query.where(PoolMembership.tier == tier)
    if active is not None:
        query = query.where(PoolMembership.active == active)
    if cursor:
        after: tuple[datetime, uuid.UUID] = decode_cursor(cursor)
        query = query.where(tuple_(PoolMembership.created_at, PoolMembership.technician_id) > after)
    query = query.order_by(PoolMembership.created_at, PoolMembership.technician_id).limit(limit + 1)
    rows, next_cursor = page_of((await session.execute(query)).all(), limit, lambda r: (r.created_at, r.id))
    return Page(items=[_out(r) for r in rows], next_cursor=next_cursor)
