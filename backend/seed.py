"""The demo: one organisation with ~50 technicians around Berlin, some on duty with fresh positions, a
requirement set and credentials in every state (so that `explain` shows each credential reason and the
alerts list has something in it).

Idempotent: a second run finds the organisation and its technicians, refreshes the on-duty positions
(so that they are fresh again), records the same credentials again (their dates relative to now) and prints
the same API key, kept in a private file.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from backend.auth import hash_api_key
from backend.compliance import services as compliance
from backend.compliance.schemas import CredentialPut, Requirements
from backend.db.engine import make_engine, make_sessionmaker
from backend.db.geo import point
from backend.db.models import ApiKey, Credential, Organization, Technician
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
REQUIREMENTS = Requirements(
    credentials=["background_check", "contractor_agreement"],
    by_skill={"hvac": ["cert:epa-608"], "electrical": ["insurance_liability"], "ev_chargers": ["cert:ev-installer"]},
)


def demo_credentials(i: int, data: TechnicianCreate, now: datetime) -> dict[str, CredentialPut | None]:
    """The credentials of the i-th demo technician: most in good standing, two of the fifty with each problem
    (None: no record of that kind)."""
    day = timedelta(days=1)
    issued = now - 300 * day
    good = CredentialPut(status="valid", issued_at=issued, expires_at=now + 700 * day, reference=f"DEMO-{i + 1:02d}")
    out: dict[str, CredentialPut | None] = {
        "background_check": good,
        "contractor_agreement": CredentialPut(status="valid", issued_at=issued),
        "insurance_liability": good,
    }
    for skill in data.skills:
        for kind in REQUIREMENTS.by_skill.get(skill, []):
            out[kind] = good
    problem = i % 25
    if problem == 1:
        out["background_check"] = CredentialPut(status="pending", reference="requested")
    elif problem == 3:
        out["contractor_agreement"] = None
    elif problem == 5:
        out["background_check"] = CredentialPut(status="valid", issued_at=issued, expires_at=now - 3 * day)
    elif problem == 7:
        out["insurance_liability"] = CredentialPut(status="valid", issued_at=issued, expires_at=now + 12 * day)
    elif problem == 9:
        out["background_check"] = CredentialPut(status="failed", reference="adverse finding")
    return out


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

            now = datetime.now(UTC)
            await compliance.put_requirements(org_id, REQUIREMENTS, session=session)
            uids = [data.firebase_uid for data in demo]
            rows = await session.execute(
                select(Technician.firebase_uid, Technician.id).where(Technician.firebase_uid.in_(uids))
            )
            ids = dict(rows.tuples().all())
            for i, data in enumerate(demo):
                for kind, credential in demo_credentials(i, data, now).items():
                    technician_id = ids[data.firebase_uid]
                    if credential is None:
                        await session.execute(
                            delete(Credential).where(
                                Credential.org_id == org_id,
                                Credential.technician_id == technician_id,
                                Credential.kind == kind,
                            )
                        )
                    else:
                        await compliance.put_credential(
                            org_id, technician_id, kind, credential, now=now, session=session
                        )
            await compliance.raise_credential_alerts(now, session=session)

            rng = random.Random(7)
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
