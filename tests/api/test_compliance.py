"""Organisation: compliance — credentials per organisation, requirement sets and what they do to matching,
the daily expiry alerts."""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from backend.compliance.services import raise_credential_alerts
from backend.db.engine import make_engine, make_sessionmaker
from backend.queue import Runtime
from backend.settings import Settings
from backend.tasks import make_queue
from tests.api.jobs_helpers import count, get_job, parse, post_job, technician
from tests.helpers import new_org, onboard

# Far enough ahead that the app's own daily alert run (real time) never sees these credentials.
NOW = datetime(2031, 3, 1, 4, 5, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat()


async def put_credential(client: AsyncTestClient, org: dict, tech_id: str, kind: str, **body) -> dict:
    response = await client.put(f"/v1/technicians/{tech_id}/credentials/{kind}", json=body, headers=org)
    assert response.status_code == 200, response.text
    return response.json()


async def credentials_of(client: AsyncTestClient, org: dict, tech_id: str) -> list[dict]:
    response = await client.get(f"/v1/technicians/{tech_id}/credentials", headers=org)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def set_requirements(client: AsyncTestClient, org: dict, **body) -> dict:
    response = await client.put("/v1/org/requirements", json=body, headers=org)
    assert response.status_code == 200, response.text
    return response.json()


# --- credentials -----------------------------------------------------------------------------------------


async def test_a_credential_is_recorded_replaced_and_listed_by_kind(client: AsyncTestClient) -> None:
    org = await new_org(client)
    tech = await onboard(client, org, "ana")
    issued, expires = datetime(2026, 1, 10, tzinfo=UTC), datetime(2027, 1, 10, tzinfo=UTC)

    recorded = await put_credential(
        client,
        org,
        tech["id"],
        "background_check",
        status="valid",
        issued_at=iso(issued),
        expires_at=iso(expires),
        reference="BG-2026-0042",
    )
    assert recorded["kind"] == "background_check"
    assert recorded["status"] == "valid"
    assert parse(recorded["issued_at"]) == issued
    assert parse(recorded["expires_at"]) == expires
    assert recorded["reference"] == "BG-2026-0042"
    await put_credential(client, org, tech["id"], "nda", status="pending")
    await put_credential(client, org, tech["id"], "cert:epa-608", status="valid")

    # PUT replaces the record of that kind whole: what is omitted is no longer there.
    await put_credential(client, org, tech["id"], "background_check", status="failed")

    assert await credentials_of(client, org, tech["id"]) == [
        {"kind": "background_check", "status": "failed", "issued_at": None, "expires_at": None, "reference": None},
        {"kind": "cert:epa-608", "status": "valid", "issued_at": None, "expires_at": None, "reference": None},
        {"kind": "nda", "status": "pending", "issued_at": None, "expires_at": None, "reference": None},
    ]


@pytest.mark.parametrize(
    ("kind", "accepted"),
    [
        ("insurance_liability", True),
        ("contractor_agreement", True),
        ("drug_screen", True),
        ("cert:" + "a" * 64, True),
        ("cert:osha_30.v2-b", True),
        ("passport", False),
        ("cert:", False),
        ("cert:" + "a" * 65, False),
        ("cert:Forklift", False),
        ("cert:fork lift", False),
        ("NDA", False),
    ],
)
async def test_credential_kinds(client: AsyncTestClient, db: psycopg.Connection, kind: str, accepted: bool) -> None:
    org = await new_org(client)
    tech = await onboard(client, org, "ana")
    response = await client.put(
        f"/v1/technicians/{tech['id']}/credentials/{kind}", json={"status": "valid"}, headers=org
    )
    if accepted:
        assert response.status_code == 200, response.text
        assert response.json()["kind"] == kind
    else:
        assert response.status_code == 422, response.text
        assert repr(kind) in response.json()["detail"]
        assert count(db, "SELECT count(*) FROM credentials") == 0


async def test_credential_bodies_are_validated(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    tech = await onboard(client, org, "ana")
    url = f"/v1/technicians/{tech['id']}/credentials/nda"
    day = datetime(2026, 5, 1, tzinfo=UTC)

    response = await client.put(
        url, json={"status": "valid", "issued_at": iso(day), "expires_at": iso(day - timedelta(seconds=1))}, headers=org
    )
    assert response.status_code == 422, response.text
    assert "expires_at" in response.json()["detail"]
    for body, field in [
        ({}, "status"),
        ({"status": "expired"}, "status"),
        ({"status": "valid", "expires_at": "2026-05-01T00:00:00"}, "expires_at"),  # no offset
        ({"status": "valid", "reference": "x" * 201}, "reference"),
        ({"status": "valid", "colour": "red"}, "colour"),
    ]:
        response = await client.put(url, json=body, headers=org)
        assert response.status_code == 400, (body, response.text)
        assert field in response.json()["detail"], (body, response.json())
    assert count(db, "SELECT count(*) FROM credentials") == 0

    # Issued and expiring at the same moment is not "before".
    same = await put_credential(client, org, tech["id"], "nda", status="valid", issued_at=iso(day), expires_at=iso(day))
    assert parse(same["expires_at"]) == day


async def test_credentials_belong_to_the_organisation_that_recorded_them(client: AsyncTestClient) -> None:
    acme, other, stranger = await new_org(client, "Acme"), await new_org(client, "Other"), await new_org(client, "Nope")
    tech = await onboard(client, acme, "shared")
    await onboard(client, other, "shared")  # the same person, in a second pool
    await put_credential(client, acme, tech["id"], "nda", status="valid")

    assert await credentials_of(client, other, tech["id"]) == []
    await put_credential(client, other, tech["id"], "nda", status="failed")
    assert [c["status"] for c in await credentials_of(client, acme, tech["id"])] == ["valid"]

    # An organisation whose pool the technician is not in cannot read or write their credentials.
    response = await client.get(f"/v1/technicians/{tech['id']}/credentials", headers=stranger)
    assert response.status_code == 404
    response = await client.put(
        f"/v1/technicians/{tech['id']}/credentials/nda", json={"status": "valid"}, headers=stranger
    )
    assert response.status_code == 404
    assert [c["status"] for c in await credentials_of(client, acme, tech["id"])] == ["valid"]


# --- requirement sets ------------------------------------------------------------------------------------


async def test_requirements_are_stored_normalised_and_replaced_whole(client: AsyncTestClient) -> None:
    org, other = await new_org(client, "Acme"), await new_org(client, "Other")
    response = await client.get("/v1/org/requirements", headers=org)
    assert response.status_code == 200
    assert response.json() == {"credentials": [], "by_skill": {}}

    stored = await set_requirements(
        client,
        org,
        credentials=["nda", "background_check", "nda"],
        by_skill={" HVAC ": ["cert:epa-608"], "hvac": ["insurance_liability"], "Electrical": ["cert:electrician"]},
    )
    expected = {
        "credentials": ["background_check", "nda"],
        "by_skill": {"electrical": ["cert:electrician"], "hvac": ["cert:epa-608", "insurance_liability"]},
    }
    assert stored == expected
    assert (await client.get("/v1/org/requirements", headers=org)).json() == expected
    assert (await client.get("/v1/org/requirements", headers=other)).json() == {"credentials": [], "by_skill": {}}

    # An unknown kind is refused, named, and changes nothing.
    for body, key in [
        ({"credentials": ["nda", "passport"]}, "credentials[1]"),
        ({"by_skill": {"hvac": ["cert:Gas"]}}, "by_skill.hvac[0]"),
    ]:
        response = await client.put("/v1/org/requirements", json=body, headers=org)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail.startswith(key) and ("'passport'" in detail or "'cert:Gas'" in detail), detail
    assert (await client.get("/v1/org/requirements", headers=org)).json() == expected

    assert await set_requirements(client, org, credentials=["nda"]) == {"credentials": ["nda"], "by_skill": {}}


# --- what they do to matching ----------------------------------------------------------------------------


async def test_candidates_leave_out_technicians_without_the_required_credentials(client: AsyncTestClient) -> None:
    org = await new_org(client)
    await set_requirements(client, org, credentials=["background_check"], by_skill={"hvac": ["cert:epa-608"]})
    job = await post_job(client, org, auto=False, hours=2)  # needs hvac
    window_end = parse(job["window"]["end"])
    far = iso(window_end + timedelta(days=365))

    ids = {}
    for uid, km in [("ok", 1), ("edge", 2), ("no_cert", 3), ("pending", 4), ("short", 5), ("nothing", 6)]:
        ids[uid], _ = await technician(client, org, uid, km=km, device=False)
    for uid in ("ok", "edge", "no_cert", "pending", "short"):
        await put_credential(client, org, ids[uid], "background_check", status="valid", expires_at=far)
    await put_credential(client, org, ids["ok"], "cert:epa-608", status="valid")
    await put_credential(client, org, ids["edge"], "cert:epa-608", status="valid", expires_at=iso(window_end))
    await put_credential(client, org, ids["pending"], "cert:epa-608", status="pending")
    short = iso(window_end - timedelta(seconds=1))
    await put_credential(client, org, ids["short"], "cert:epa-608", status="valid", expires_at=short)

    response = await client.get(f"/v1/jobs/{job['id']}/candidates?explain=true", headers=org)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["technician_id"] for c in body["items"]] == [ids["ok"], ids["edge"]]
    assert {e["technician_id"]: e["reasons"] for e in body["excluded"]} == {
        ids["no_cert"]: ["credential_missing:cert:epa-608"],
        ids["pending"]: ["credential_not_valid:cert:epa-608"],
        ids["short"]: ["credential_expired:cert:epa-608"],
        ids["nothing"]: ["credential_missing:background_check", "credential_missing:cert:epa-608"],
    }
    # The same without explain (the bounded walk filters in SQL).
    plain = (await client.get(f"/v1/jobs/{job['id']}/candidates", headers=org)).json()
    assert [c["technician_id"] for c in plain["items"]] == [ids["ok"], ids["edge"]]

    # A job that does not need hvac does not need the hvac certificate.
    electrical = await post_job(client, org, auto=False, skills=["electrical"])
    plain = (await client.get(f"/v1/jobs/{electrical['id']}/candidates", headers=org)).json()
    assert {c["technician_id"] for c in plain["items"]} == {
        ids[u] for u in ("ok", "edge", "no_cert", "pending", "short")
    }

    # A dispatcher cannot assign around the requirements either.
    response = await client.post(f"/v1/jobs/{job['id']}/assign", json={"technician_id": ids["short"]}, headers=org)
    assert response.status_code == 409, response.text
    assert response.json()["extra"]["reasons"] == ["credential_expired:cert:epa-608"]


async def test_a_posted_job_is_offered_only_to_technicians_in_good_standing(client: AsyncTestClient) -> None:
    org = await new_org(client)
    await set_requirements(client, org, credentials=["nda"])
    good, _ = await technician(client, org, "good", km=2)
    unsigned, _ = await technician(client, org, "unsigned", km=1)  # nearer, but without the NDA
    await put_credential(client, org, good, "nda", status="valid")

    job = await post_job(client, org)

    offered = [o["technician_id"] for o in (await get_job(client, org, job["id"]))["offers"]]
    assert offered == [good], {"unsigned": unsigned, "good": good}


# --- the daily expiry alerts -----------------------------------------------------------------------------


@pytest.fixture
async def sessionmaker(settings: Settings):
    engine = make_engine(settings.database)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def alerts(client: AsyncTestClient, org: dict, **params) -> dict:
    response = await client.get("/v1/compliance/alerts", params=params, headers=org)
    assert response.status_code == 200, response.text
    return response.json()


def summary(page: dict, names: dict[str, str]) -> list[tuple[str, str, str]]:
    """(technician, alert kind, credential kind) of each alert, in the order listed."""
    return [(names[a["technician_id"]], a["kind"], a["value"]) for a in page["items"]]


async def test_expiring_and_expired_credentials_are_alerted_once_each(client: AsyncTestClient, sessionmaker) -> None:
    org, other = await new_org(client, "Acme"), await new_org(client, "Other")
    names = {}
    for uid in ("ana", "ben", "cem", "dora"):
        names[(await onboard(client, org, uid))["id"]] = uid
    ana, ben, cem, dora = list(names)
    await onboard(client, other, "ana")
    day = timedelta(days=1)
    records = [
        (ana, "insurance_liability", "valid", NOW + 30 * day),  # exactly 30 days ahead: expiring
        (ana, "nda", "valid", NOW + 30 * day + timedelta(seconds=1)),  # a second more: not yet
        (ben, "background_check", "valid", NOW - timedelta(seconds=1)),  # expired
        (ben, "drug_screen", "valid", NOW),  # expires now: still valid, expiring
        (cem, "cert:epa-608", "pending", NOW + day),  # not valid anyway: nobody is told it expires
        (cem, "nda", "valid", None),  # never expires
        (dora, "nda", "failed", NOW - day),
    ]
    for tech_id, kind, status, expires in records:
        await put_credential(
            client, org, tech_id, kind, status=status, expires_at=None if expires is None else iso(expires)
        )
    await put_credential(client, other, ana, "nda", status="valid", expires_at=iso(NOW + day))  # the other org's

    async with sessionmaker() as session:
        # Three for this organisation, one for the other.
        assert await raise_credential_alerts(NOW, session=session) == 4

    page = await alerts(client, org)
    assert sorted(summary(page, names)) == [
        ("ana", "credential_expiring", "insurance_liability"),
        ("ben", "credential_expired", "background_check"),
        ("ben", "credential_expiring", "drug_screen"),
    ]
    expired = next(a for a in page["items"] if a["kind"] == "credential_expired")
    assert parse(expired["limit"]) == (NOW - timedelta(seconds=1)).replace(microsecond=0)
    assert parse(expired["at"]) == NOW
    assert "job_id" not in expired
    assert set(expired) == {"id", "technician_id", "kind", "value", "limit", "at"}
    assert summary(await alerts(client, other), {ana: "ana"}) == [("ana", "credential_expiring", "nda")]

    # Run again (a retried or duplicated run), nothing new is raised.
    async with sessionmaker() as session:
        assert await raise_credential_alerts(NOW, session=session) == 0
    assert len((await alerts(client, org))["items"]) == 3
    # Three days on: ana's NDA comes within 30 days; her insurance is still only expiring (alerted already);
    # ben's drug screen has expired by now.
    later = NOW + 3 * day
    async with sessionmaker() as session:
        assert await raise_credential_alerts(later, session=session) == 3  # two here, the other org's NDA expired
    new = await alerts(client, org, since=iso(later))
    assert sorted(summary(new, names)) == [
        ("ana", "credential_expiring", "nda"),
        ("ben", "credential_expired", "drug_screen"),
    ]

    # Renewed insurance (a new expiry) is alerted again when that one comes near.
    await put_credential(client, org, ana, "insurance_liability", status="valid", expires_at=iso(NOW + 60 * day))
    async with sessionmaker() as session:
        assert await raise_credential_alerts(NOW + 29 * day, session=session) == 0
        assert await raise_credential_alerts(NOW + 31 * day, session=session) == 2
    assert sorted(summary(await alerts(client, org, since=iso(NOW + 31 * day)), names)) == [
        ("ana", "credential_expired", "nda"),
        ("ana", "credential_expiring", "insurance_liability"),
    ]


async def test_alerts_are_listed_oldest_first_a_page_at_a_time(client: AsyncTestClient, sessionmaker) -> None:
    org = await new_org(client)
    names = {}
    for uid in ("ana", "ben", "cem"):
        tech_id = (await onboard(client, org, uid))["id"]
        names[tech_id] = uid
        await put_credential(client, org, tech_id, "nda", status="valid", expires_at=iso(NOW + timedelta(days=10)))
    async with sessionmaker() as session:
        assert await raise_credential_alerts(NOW, session=session) == 3
        assert await raise_credential_alerts(NOW + timedelta(days=11), session=session) == 3

    seen, cursor = [], None
    while True:
        page = await alerts(client, org, limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6 and len({a["id"] for a in seen}) == 6
    assert [a["kind"] for a in seen] == ["credential_expiring"] * 3 + ["credential_expired"] * 3
    assert [parse(a["at"]) for a in seen] == sorted(parse(a["at"]) for a in seen)

    assert len((await alerts(client, org, since=iso(NOW + timedelta(days=1))))["items"]) == 3
    for params in ({"since": "2031-03-01T00:00:00"}, {"limit": 0}, {"cursor": "nonsense"}):
        response = await client.get("/v1/compliance/alerts", params=params, headers=org)
        assert response.status_code == 400, (params, response.text)


async def test_an_inactive_technician_is_not_alerted_about(client: AsyncTestClient, sessionmaker) -> None:
    org = await new_org(client)
    tech = await onboard(client, org, "ana", active=False)
    await put_credential(client, org, tech["id"], "nda", status="valid", expires_at=iso(NOW + timedelta(days=1)))
    async with sessionmaker() as session:
        assert await raise_credential_alerts(NOW, session=session) == 0
    assert (await alerts(client, org))["items"] == []


async def test_the_daily_queue_task_raises_the_alerts_at_its_scheduled_time(
    client: AsyncTestClient, sessionmaker, settings: Settings
) -> None:
    org = await new_org(client)
    tech = await onboard(client, org, "ana")
    await put_credential(client, org, tech["id"], "nda", status="valid", expires_at=iso(NOW + timedelta(days=5)))
    queue = make_queue(settings.database.url)
    [periodic] = [p for p in queue.periodic_registry.periodic_tasks.values() if p.task.name == "credential_alerts"]
    minute, hour, *every_day = periodic.cron.split()
    assert every_day == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()

    runtime = Runtime(sessionmaker=sessionmaker, sender=None)  # type: ignore[arg-type]
    await periodic.task.func(
        types.SimpleNamespace(additional_context={"runtime": runtime}), timestamp=int(NOW.timestamp())
    )

    [alert] = (await alerts(client, org))["items"]
    assert (alert["kind"], alert["value"], parse(alert["at"])) == ("credential_expiring", "nda", NOW)
