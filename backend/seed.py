"""The demo: one organisation with ~50 technicians around Berlin, some on duty with fresh positions, a
requirement set and credentials in every state, an engagement policy in block mode, and a past of
completed jobs — rated, and counted for reliability — in which three technicians stand over one limit
each: so that `explain` shows every kind of reason, the candidates' rating and reliability components
differ, and the alerts list has something in it.

Idempotent: a second run finds the organisation and its technicians, refreshes the on-duty positions
(so that they are fresh again), records the same credentials again and lays down the same past again
(their dates relative to now) and prints the same API key, kept in a private file.
"""

from __future__ import annotations

import math
import random
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
from sqlalchemy import delete, insert, select, update

from backend.auth import hash_api_key
from backend.closing.pay import Pay, settle
from backend.compliance import engagement
from backend.compliance import services as compliance
from backend.compliance.schemas import CredentialPut, EngagementPolicyIn, Requirements
from backend.db.engine import make_engine, make_sessionmaker
from backend.db.geo import point
from backend.db.models import (
    ApiKey,
    Credential,
    Job,
    JobEvent,
    JobRating,
    JobTemplate,
    JobVisit,
    Organization,
    Payable,
    PoolMembership,
    Technician,
)
from backend.jobs.schemas import Dispatch
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


POLICY = EngagementPolicyIn(max_hours_per_week=40, max_consecutive_weeks=12, max_tenure_months=18, mode="block")
PAST = "demo-past"  # external_ref of the demo's completed jobs


def demo_past(i: int, now: datetime, rng: random.Random) -> list[tuple[datetime, float, int]]:
    """The i-th technician's completed jobs for the demo organisation: (check-in, hours, stars). Three of the
    fifty stand over one limit each of POLICY: 39 h in the last week, fourteen weeks in a row, twenty months."""
    day = timedelta(days=1)
    problem = i % 25
    if problem == 11:
        return [(now - (k + 1) * day, 7.8, 5) for k in range(5)]
    if problem == 13:
        return [(now - (7 * k + 1) * day, 3.0, 4) for k in range(14)]
    if problem == 15:
        return [(now - (15 * k + 20) * day, 4.0, 5) for k in range(40)]
    # Everyone else: a few jobs over the last three months, each technician with their own usual mark.
    usual = rng.choice([3, 4, 4, 5, 5])
    return [
        (now - rng.uniform(8, 90) * day, rng.choice([1.5, 2.0, 3.0]), min(5, max(1, usual + rng.choice([-1, 0, 0, 1]))))
        for _ in range(rng.randint(0, 8))
    ]


async def _lay_down_past(org_id, ids: list, now: datetime, session) -> None:
    """Completed jobs with their ratings (released), and reliability counters to go with them."""
    await session.execute(delete(Job).where(Job.org_id == org_id, Job.external_ref == PAST))
    rng = random.Random(11)
    for i, technician_id in enumerate(ids):
        past = demo_past(i, now, rng)
        late, declined, backouts = rng.choice([0, 0, 0, 1]), rng.randint(0, 3), rng.choice([0, 0, 0, 0, 1])
        for n, (start, hours, stars) in enumerate(past):
            end = start + timedelta(hours=hours)
            job_id = (
                await session.execute(
                    insert(Job)
                    .values(
                        org_id=org_id,
                        status="completed",
                        title="Past job",
                        external_ref=PAST,
                        location=point(*CITY),
                        # The first `late` of them were checked in after their window had closed.
                        window_start=start - timedelta(hours=3) if n < late else start,
                        window_end=start - timedelta(hours=1) if n < late else end,
                        estimated_hours=hours,
                        customer={"name": "Demo customer"},
                        dispatch=msgspec.to_builtins(Dispatch(auto=False)),
                        technician_id=technician_id,
                        tracking_token=secrets.token_urlsafe(32),
                        checked_in_at=start,
                        completed_at=end,
                        created_at=start - timedelta(days=2),
                        updated_at=end,
                    )
                    .returning(Job.id)
                )
            ).scalar_one()
            session.add(JobVisit(job_id=job_id, technician_id=technician_id, checked_in_at=start, completed_at=end))
            await session.execute(
                insert(JobRating).values(
                    job_id=job_id,
                    side="org",
                    stars=stars,
                    org_id=org_id,
                    technician_id=technician_id,
                    created_at=end,
                    released_at=end,
                )
            )
        done = len(past)
        await session.execute(
            update(PoolMembership)
            .where(PoolMembership.org_id == org_id, PoolMembership.technician_id == technician_id)
            .values(
                rating_count=done,
                rating_sum=sum(stars for _, _, stars in past),
                offers_answered=done + backouts + declined,
                offers_accepted=done + backouts,
                assignments=done + backouts,
                backouts=backouts,
                check_ins=done,
                on_time_check_ins=done - min(late, done),
                completions=done,
            )
        )


CLOSING = "demo-closing"  # external_ref of the demo's jobs of closing the work
TEMPLATE = {
    "title": "Annual boiler service",
    "description": "Service, flue gas reading, safety check.",
    "skills": ["hvac"],
    "estimated_hours": 2.0,
    "pay": {"type": "hourly", "currency": "EUR", "rate": "48.50", "max_hours": "4", "max_expenses": "60"},
    "tasks": [
        {"type": "checkbox", "label": "Flue gas reading within limits", "required": True},
        {"key": "photo", "type": "photo", "label": "Photo of the service label", "required": True},
        {"key": "signature", "type": "signature", "label": "Customer's signature", "required": False},
    ],
}
# (technician index, days ago, hours on site, pay terms, expenses, approved_by, paid reference)
CLOSED_JOBS = [
    (
        0,
        12,
        2.5,
        {"type": "hourly", "currency": "EUR", "rate": "48.50", "max_hours": "4"},
        ["18.40"],
        "organisation",
        "SEPA-2026-0412",
    ),
    (2, 10, 1.25, {"type": "fixed", "currency": "EUR", "amount": "95.00"}, [], "auto", None),
    (
        4,
        9,
        5.0,
        {
            "type": "blended",
            "currency": "EUR",
            "amount": "120.00",
            "fixed_hours": "2",
            "rate": "45.00",
            "max_hours": "4",
            "max_expenses": "30",
        },
        ["22.00", "14.90"],
        "organisation",
        None,
    ),
]


async def _lay_down_closing(org_id, ids: list, now: datetime, session) -> None:
    """A job template, three approved jobs with their payables (one paid) and one job sent back as incomplete."""
    await session.execute(delete(Job).where(Job.org_id == org_id, Job.external_ref == CLOSING))
    await session.execute(delete(JobTemplate).where(JobTemplate.org_id == org_id, JobTemplate.name == "Boiler service"))
    session.add(JobTemplate(org_id=org_id, name="Boiler service", fields=TEMPLATE, created_at=now, updated_at=now))

    def job(technician_id, status: str, start: datetime, hours: float, pay: dict, tasks: list) -> Job:
        end = start + timedelta(hours=hours)
        return Job(
            id=uuid.uuid4(),
            org_id=org_id,
            status=status,
            title="Annual boiler service",
            external_ref=CLOSING,
            location=point(*CITY),
            address="Karl-Marx-Allee 90, Berlin",
            window_start=start,
            window_end=start + timedelta(hours=4),
            estimated_hours=2.0,
            pay=pay,
            tasks=tasks,
            customer={"name": "Demo customer"},
            dispatch=msgspec.to_builtins(Dispatch(auto=False)),
            technician_id=technician_id,
            tracking_token=secrets.token_urlsafe(32),
            checked_in_at=start,
            completed_at=end,
            created_at=start - timedelta(days=2),
            updated_at=end,
        )

    def done(at: datetime) -> list[dict]:
        return [
            {
                **t,
                "key": t.get("key") or f"t{n + 1}",
                "value": True if t["type"] == "checkbox" else None,
                "done_at": at.isoformat() if t["type"] == "checkbox" else None,
            }
            for n, t in enumerate(TEMPLATE["tasks"])
        ]

    for index, days, hours, pay, expenses, by, reference in CLOSED_JOBS:
        technician_id = ids[index]
        start = now - timedelta(days=days)
        approved_at = start + timedelta(days=7 if by == "auto" else 1)
        row = job(technician_id, "approved", start, hours, pay, done(start))
        row.approved_at = approved_at
        session.add(row)
        await session.flush()
        session.add(
            JobVisit(job_id=row.id, technician_id=technician_id, checked_in_at=start, completed_at=row.completed_at)
        )
        settled = settle(msgspec.convert(pay, Pay), Decimal(str(hours)), [Decimal(e) for e in expenses])
        payable_id = uuid.uuid4()
        session.add(
            Payable(
                id=payable_id,
                job_id=row.id,
                org_id=org_id,
                technician_id=technician_id,
                currency=pay["currency"],
                hours=settled.hours,
                labour=settled.labour,
                expenses=settled.expenses,
                total=settled.total,
                status="paid" if reference else "approved",
                approved_at=approved_at,
                approved_by=by,
                paid_at=approved_at + timedelta(days=2) if reference else None,
                reference=reference,
                notes=settled.notes,
            )
        )
        session.add(
            JobEvent(job_id=row.id, type="approved", at=approved_at, data={"by": by, "payable_id": str(payable_id)})
        )

    # Sent back: the photo of the service label is missing.
    start = now - timedelta(days=2)
    row = job(ids[6], "incomplete", start, 1.5, TEMPLATE["pay"], done(start))
    session.add(row)
    await session.flush()
    session.add(JobVisit(job_id=row.id, technician_id=ids[6], checked_in_at=start, completed_at=row.completed_at))
    session.add(
        JobEvent(
            job_id=row.id,
            type="marked_incomplete",
            at=start + timedelta(hours=20),
            data={"reason": "No photo of the service label"},
        )
    )


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

            # The demo's members by Firebase uid; whoever is missing from the pool is onboarded (a person
            # some other organisation already knows joins this pool too).
            demo = demo_technicians()
            members = await session.execute(
                select(Technician.firebase_uid, Technician.id)
                .join(PoolMembership, PoolMembership.technician_id == Technician.id)
                .where(PoolMembership.org_id == org_id, Technician.firebase_uid.in_([d.firebase_uid for d in demo]))
            )
            ids = dict(members.tuples().all())
            for data in demo:
                if data.firebase_uid not in ids:
                    ids[data.firebase_uid] = (await technicians.onboard(org_id, data, session=session)).id

            now = datetime.now(UTC)
            await compliance.put_requirements(org_id, REQUIREMENTS, session=session)
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
            await engagement.put_policy(org_id, POLICY, now=now, session=session)
            await _lay_down_past(org_id, [ids[data.firebase_uid] for data in demo], now, session)
            await _lay_down_closing(org_id, [ids[data.firebase_uid] for data in demo], now, session)
            # The past above is the demo's engagement and reliability story, of jobs posted without pay: the
            # system is not to turn it into payables of nothing (a dispatcher can switch this on).
            await session.execute(update(Organization).where(Organization.id == org_id).values(auto_approve_days=0))

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
