"""Technician presence: duty, positions, devices."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.geo import lat_of, lon_of
from backend.db.models import Device, Organization, PoolMembership, Technician
from backend.errors import Conflict, Invalid, NotFound
from backend.presence.recorder import PingRecorder
from backend.presence.schemas import DeviceOut, Me, Membership, Ping, PingsAccepted
from backend.schemas import Position

# API.md: a batch with a ping older than 24 h or more than 2 min in the future is rejected whole.
MAX_PING_AGE = timedelta(hours=24)
MAX_PING_FUTURE = timedelta(minutes=2)


def _check_ping_times(pings: Sequence[Ping], now: datetime) -> None:
    """Invalid naming every ping out of the time window (the first in `detail`): the batch is refused whole."""
    oldest, newest = now - MAX_PING_AGE, now + MAX_PING_FUTURE
    problems = []
    for i, ping in enumerate(pings):
        if ping.recorded_at < oldest:
            problems.append({"key": f"pings[{i}].recorded_at", "source": "body", "message": "older than 24 h"})
        elif ping.recorded_at > newest:
            problems.append(
                {"key": f"pings[{i}].recorded_at", "source": "body", "message": "more than 2 min in the future"}
            )
    if problems:
        first = problems[0]
        raise Invalid(first["key"], f"{first['message']}; the batch was not stored", errors=problems)


async def record_pings(
    technician_id: uuid.UUID, pings: Sequence[Ping], *, recorder: PingRecorder, now: datetime
) -> PingsAccepted:
    """Store a batch of positions (answered once they are committed); Conflict while the technician is off
    duty with no active job."""
    _check_ping_times(pings, now)
    if not await recorder.record(technician_id, pings):
        raise Conflict("off_duty: the technician is off duty and has no active job; pings are not recorded")
    return PingsAccepted(accepted=len(pings))


async def me(technician_id: uuid.UUID, *, session: AsyncSession) -> Me:
    row = (
        await session.execute(
            select(
                Technician.id,
                Technician.name,
                Technician.email,
                Technician.phone,
                Technician.on_duty,
                Technician.location_recorded_at,
                lat_of(Technician.location).label("lat"),
                lon_of(Technician.location).label("lon"),
            ).where(Technician.id == technician_id)
        )
    ).one()
    memberships = (
        await session.execute(
            select(PoolMembership.org_id, Organization.name, PoolMembership.tier, PoolMembership.active)
            .join(Organization, Organization.id == PoolMembership.org_id)
            .where(PoolMembership.technician_id == technician_id)
            .order_by(Organization.name, PoolMembership.org_id)
        )
    ).all()
    return Me(
        id=row.id,
        name=row.name,
        email=row.email,
        phone=row.phone,
        on_duty=row.on_duty,
        last_location=Position(lat=row.lat, lon=row.lon, recorded_at=row.location_recorded_at)
        if row.location_recorded_at
        else None,
        memberships=[Membership(org_id=m.org_id, org_name=m.name, tier=m.tier, active=m.active) for m in memberships],
    )


async def set_duty(technician_id: uuid.UUID, on_duty: bool, *, session: AsyncSession) -> Me:
    await session.execute(update(Technician).where(Technician.id == technician_id).values(on_duty=on_duty))
    await session.commit()
    return await me(technician_id, session=session)


async def register_device(technician_id: uuid.UUID, token: str, platform: str, *, session: AsyncSession) -> DeviceOut:
    now = datetime.now(UTC)
    await session.execute(
        insert(Device)
        .values(token=token, technician_id=technician_id, platform=platform, created_at=now, updated_at=now)
        .on_conflict_do_update(
            index_elements=[Device.token],
            set_={"technician_id": technician_id, "platform": platform, "updated_at": now},
        )
    )
    await session.commit()
    return DeviceOut(token=token, platform=platform)


async def remove_device(technician_id: uuid.UUID, token: str, *, session: AsyncSession) -> None:
    result = await session.execute(delete(Device).where(Device.token == token, Device.technician_id == technician_id))
    await session.commit()
    if result.rowcount != 1:
        raise NotFound("no such device token for this technician")
