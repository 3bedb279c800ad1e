"""The demo: one organisation with ~50 technicians around Berlin, some on duty with fresh positions.

Idempotent: a second run finds the organisation and its technicians, refreshes the on-duty positions
(so that they are fresh again) and prints the same API key, kept in a private file.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

from sqlalchemy import select, update

from backend.auth import hash_api_key
from backend.db.engine import make_engine, make_sessionmaker
from backend.db.geo import point
from backend.db.models import ApiKey, Organization, Technician
from backend.orgs import services as orgs
from backend.schemas import LatLon
from backend.settings import Settings
from backend.technicians import services as technicians
from backend.technicians.schemas import TechnicianCreate

DEMO_ORG = "Truckroll Demo Dispatch"
CITY = (52.5200, 13.4050)  # Berlin
SKILLS = ["hvac", "electrical", "plumbing", "networking", "pos_terminals", "printers", "ev_chargers"]
FIRST = ["Ana", "Ben", "Chiara", "Deniz", "Emil", "Fatma", "Greta", "Hugo", "Ilse", "Jonas", "Karim", "Lena"]
LAST = ["Albrecht", "Braun", "Cakir", "Dietz", "Engel", "Fischer", "Graf", "Hahn", "Iversen", "Jansen"]
TECHNICIANS = 50
ON_DUTY = 20


def _offset(lat: float, lon: float, km: float, bearing: float) -> tuple[float, float]:
    dlat = km / 111.32 * math.cos(bearing)
    dlon = km / (111.32 * math.cos(math.radians(lat))) * math.sin(bearing)
    return lat + dlat, lon + dlon


def demo_technicians() -> list[TechnicianCreate]:
    rng = random.Random(42)
    out = []
    for i in range(TECHNICIANS):
        lat, lon = _offset(*CITY, km=rng.uniform(0.5, 18), bearing=rng.uniform(0, 2 * math.pi))
        out.append(
            TechnicianCreate(
                name=f"{FIRST[i % len(FIRST)]} {LAST[(i * 7) % len(LAST)]}",
                firebase_uid=f"demo-tech-{i + 1:02d}",
                skills=rng.sample(SKILLS, k=rng.randint(1, 3)),
                home=LatLon(lat=round(lat, 6), lon=round(lon, 6)),
                service_radius_km=rng.choice([15.0, 25.0, 40.0]),
                tier="preferred" if i % 3 == 0 else "approved",
                email=f"demo-tech-{i + 1:02d}@example.com",
            )
        )
    return out


async def seed_demo(settings: Settings, *, known_key: str | None) -> str:
    """Returns the demo organisation's API key: `known_key` when it is still valid, else a new one."""
    engine = make_engine(settings.database)
    try:
        async with make_sessionmaker(engine)() as session:
            org_id = await session.scalar(select(Organization.id).where(Organization.name == DEMO_ORG))
            key = known_key
            key_valid = (
                key is not None
                and org_id is not None
                and await session.scalar(
                    select(ApiKey.id).where(
                        ApiKey.org_id == org_id, ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None)
                    )
                )
            )
            if org_id is None:
                org, _, key = await orgs.create_org(DEMO_ORG, {"demo": True}, session=session)
                org_id = org.id
            elif not key_valid:
                _, key = await orgs.issue_api_key(org_id, session=session)
                await session.commit()

            known = set((await session.scalars(select(Technician.firebase_uid))).all())
            demo = demo_technicians()
            for data in demo:
                if data.firebase_uid not in known:
                    await technicians.onboard(org_id, data, session=session)

            rng = random.Random(7)
            now = datetime.now(UTC)
            for data in demo[:ON_DUTY]:
                lat, lon = _offset(data.home.lat, data.home.lon, km=rng.uniform(0, 3), bearing=rng.uniform(0, 6.28))
                await session.execute(
                    update(Technician)
                    .where(Technician.firebase_uid == data.firebase_uid)
                    .values(on_duty=True, location=point(lat, lon), location_recorded_at=now, speed_mps=0.0)
                )
            await session.commit()
            return key
    finally:
        await engine.dispose()
