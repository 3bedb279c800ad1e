"""The bounded PostGIS retrieval gives the same candidates, in the same order, as the pure core fed with
the whole pool (brute force over the same data, great-circle distances in plain Python, the job's required
credentials worked out from the requirement set in plain Python, engagement figures worked out from each
member's work history in plain Python) — and it walks the GiST indexes to do it."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from backend.db.engine import CONNECTION_OPTIONS
from matching import EngagementPolicy, JobSpec, MatchSettings, MemberSnapshot, WaveSpec, evaluate, retrieval
from matching.curation import COUNTERS, bayesian_rating, reliability
from matching.search import search

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CENTRE = (48.8566, 2.3522)
SKILLS = ["hvac", "electrical", "plumbing"]
CREDENTIALS = ["background_check", "insurance_liability", "cert:epa-608"]
TABLES = (
    "compliance_alerts, engagement_policies, credentials, org_requirements, job_events, offers, jobs, location_pings, pool_memberships,"
    " technicians, api_keys, organizations"
)


def _offset(km_north: float, km_east: float) -> tuple[float, float]:
    lat = CENTRE[0] + km_north / 111.195
    return lat, CENTRE[1] + km_east / (111.195 * math.cos(math.radians(CENTRE[0])))


def mostly(value: bool) -> st.SearchStrategy[bool]:
    return st.sampled_from([value, value, value, not value])


# Biased towards eligible members, so that pools often hold more of them than `pool_size` and the walk
# must widen past ineligible neighbours and other organisations' technicians.
member_strategy = st.fixed_dictionaries(
    {
        "home": st.one_of(
            st.tuples(st.floats(-40, 40), st.floats(-40, 40)), st.tuples(st.floats(-8, 8), st.floats(-8, 8))
        ),
        "live": st.one_of(
            st.none(), st.tuples(st.floats(-25, 25), st.floats(-25, 25)), st.tuples(st.floats(-4, 4), st.floats(-4, 4))
        ),
        "age_s": st.sampled_from([0, 0, 300, 600, 601, 3600]),
        "on_duty": mostly(True),
        "active": mostly(True),
        "tier": st.sampled_from(["preferred", "approved"]),
        "skills": st.one_of(st.just(set(SKILLS)), st.sets(st.sampled_from(SKILLS))),
        "service_radius_km": st.sampled_from([5.0, 30.0, 60.0, 60.0]),
        "speed_mps": st.one_of(st.none(), st.sampled_from([0.0, 0.5, 5.0, 14.0])),
        "busy": st.sampled_from([False, False, False, True, "ends_at_start", "starts_at_end"]),
        "offered": mostly(False),
        "other_org": mostly(False),
        # Credentials: mostly every kind valid, some records drawn on top. An expiry is in seconds from the
        # job window's end: 0 is in time, -1 is expired; None is no expiry.
        "good_standing": mostly(True),
        "good_until_s": st.sampled_from([None, None, 0, 0, -1, 3600]),
        "credentials": st.dictionaries(
            st.sampled_from(CREDENTIALS),
            st.tuples(
                st.sampled_from(["valid", "valid", "pending", "failed"]), st.sampled_from([None, 0, 0, -1, -1, 3600])
            ),
            max_size=3,
        ),
        # Also in the other organisation's pool, holding every credential there: that must not count here.
        "credentialed_elsewhere": mostly(False),
        # Work done for the organisation: (hours before NOW it ended, hours it lasted). The offsets sit on
        # the edges: 7 days (168 h), a 30-day gap (720 h), week boundaries.
        "work": st.lists(
            st.tuples(
                st.sampled_from([0.5, 3, 30, 100, 166, 167.5, 170, 400, 700, 720, 745, 1500, 3000, 6000]),
                st.sampled_from([0.5, 2.0, 8.0, 30.0]),
            ),
            max_size=6,
        ),
        # The same work done for the other organisation as well: it must not count here.
        "work_elsewhere": mostly(False),
        "ratings": st.integers(0, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(n, 5 * n))),
        "counters": st.lists(st.integers(0, 6), min_size=7, max_size=7),
    }
)
policy_strategy = st.fixed_dictionaries(
    {
        "max_hours_per_week": st.sampled_from([None, 3.0, 10.0, 40.0]),
        "max_consecutive_weeks": st.sampled_from([None, 1, 2, 3]),
        "max_tenure_months": st.sampled_from([None, 1, 3]),
        "mode": st.sampled_from(["warn", "block", "block"]),
    }
)
JOB_HOURS = 2.0


def _monday(t: datetime) -> datetime:
    return (t - timedelta(days=t.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)


def _months(since: datetime, until: datetime) -> int:
    months = (until.year - since.year) * 12 + until.month - since.month
    return months - 1 if (until.day, until.time()) < (since.day, since.time()) else months


def engagement_with_job(work: list[tuple[datetime, datetime]], job_start: datetime) -> dict[str, float]:
    """The documented figures (matching.engagement), brute force, with a JOB_HOURS job at job_start."""
    week_ago = NOW - timedelta(days=7)
    hours = sum((min(e, NOW) - max(s, week_ago)).total_seconds() / 3600 for s, e in work if e > week_ago and s < NOW)
    pieces = sorted([*work, (job_start, job_start + timedelta(hours=JOB_HOURS))])
    weeks = {_monday(s) for s, _ in pieces}
    run, week = 0, _monday(job_start)
    while week in weeks:
        run, week = run + 1, week - timedelta(days=7)
    since = last_end = None
    for s, e in pieces:
        if last_end is None or s - last_end > timedelta(days=30):
            since = s
        last_end = e if last_end is None else max(last_end, e)
    return {
        "hours_per_week": round(hours + JOB_HOURS, 2),
        "consecutive_weeks": run,
        "tenure": _months(since, job_start),
    }


def policy_of(policy: dict | None) -> EngagementPolicy | None:
    kinds = {"max_hours_per_week": "hours_per_week", "max_consecutive_weeks": "consecutive_weeks"}
    kinds["max_tenure_months"] = "tenure"
    limits = {kind: float(policy[field]) for field, kind in kinds.items() if policy and policy[field] is not None}
    return EngagementPolicy(limits=limits, block=policy["mode"] == "block") if limits else None


requirements_strategy = st.fixed_dictionaries(
    {
        "credentials": st.lists(st.sampled_from(CREDENTIALS), min_size=1, max_size=2, unique=True),
        "by_skill": st.dictionaries(
            st.sampled_from(SKILLS), st.lists(st.sampled_from(CREDENTIALS), max_size=2, unique=True), max_size=2
        ),
    }
)


def required_kinds(requirements: dict | None, skills) -> frozenset[str]:
    if requirements is None:
        return frozenset()
    kinds = set(requirements["credentials"])
    for skill in skills:
        kinds.update(requirements["by_skill"].get(skill, []))
    return frozenset(kinds)


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _store(
    conn: psycopg.Connection,
    members: list[dict],
    job: dict,
    requirements: dict | None = None,
    policy: dict | None = None,
) -> tuple[uuid.UUID, JobSpec, list[MemberSnapshot]]:
    """Write the generated world to PostGIS; return the org, the job (as the application passes it to
    matching: the organisation's rules are read by the search) and the snapshot brute force uses."""
    org, other = uuid.uuid4(), uuid.uuid4()
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'org'), (%s, 'other')", (org, other))
    if requirements is not None:
        conn.execute(
            "INSERT INTO org_requirements (org_id, credentials, by_skill) VALUES (%s, %s, %s)",
            (org, requirements["credentials"], psycopg.types.json.Jsonb(requirements["by_skill"])),
        )
        # The other organisation requires everything: its requirements must not apply here either.
        conn.execute("INSERT INTO org_requirements (org_id, credentials) VALUES (%s, %s)", (other, CREDENTIALS))
    if policy is not None:
        conn.execute(
            "INSERT INTO engagement_policies (org_id, max_hours_per_week, max_consecutive_weeks, max_tenure_months,"
            " mode) VALUES (%s, %s, %s, %s, %s)",
            (
                org,
                policy["max_hours_per_week"],
                policy["max_consecutive_weeks"],
                policy["max_tenure_months"],
                policy["mode"],
            ),
        )
    job_id = uuid.uuid4()
    lat, lon = _offset(0, 0)
    conn.execute(
        "INSERT INTO jobs (id, org_id, status, title, skills, location, window_start, window_end, estimated_hours,"
        " customer, dispatch, tracking_token) VALUES (%s, %s, 'open', 'job', %s, ST_GeogFromText(%s), %s, %s, %s,"
        " '{}', '{}', %s)",
        (
            job_id,
            org,
            sorted(job["skills"]),
            retrieval.point_wkt(lat, lon),
            job["start"],
            job["end"],
            JOB_HOURS,
            uuid.uuid4().hex,
        ),
    )
    snapshots = []

    def expiry(seconds: int | None) -> datetime | None:
        return None if seconds is None else job["end"] + timedelta(seconds=seconds)

    for i, m in enumerate(members):
        tid = uuid.uuid4()
        home = _offset(*m["home"])
        live = _offset(*m["live"]) if m["live"] else None
        recorded = NOW - timedelta(seconds=m["age_s"]) if live else None
        conn.execute(
            "INSERT INTO technicians (id, firebase_uid, name, on_duty, location, location_recorded_at, speed_mps)"
            " VALUES (%s, %s, 't', %s, ST_GeogFromText(%s), %s, %s)",
            (tid, f"uid-{tid}", m["on_duty"], retrieval.point_wkt(*live) if live else None, recorded, m["speed_mps"]),
        )
        conn.execute(
            "INSERT INTO pool_memberships (org_id, technician_id, tier, skills, service_radius_km, home, active,"
            f" rating_count, rating_sum, {', '.join(COUNTERS)})"
            " VALUES (%s, %s, %s, %s, %s, ST_GeogFromText(%s), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                other if m["other_org"] else org,
                tid,
                m["tier"],
                sorted(m["skills"]),
                m["service_radius_km"],
                retrieval.point_wkt(*home),
                m["active"],
                *m.get("ratings", (0, 0)),
                *m.get("counters", (0,) * len(COUNTERS)),
            ),
        )
        work = [(NOW - timedelta(hours=ago + hours), NOW - timedelta(hours=ago)) for ago, hours in m.get("work", ())]
        for holder, factor in [(other if m["other_org"] else org, 1)] + [(other, 3)] * m.get("work_elsewhere", False):
            for s, e in work:
                conn.execute(
                    "INSERT INTO jobs (id, org_id, status, title, location, window_start, window_end,"
                    " estimated_hours, customer, dispatch, tracking_token, technician_id, checked_in_at, completed_at)"
                    " VALUES (gen_random_uuid(), %s, 'completed', 'done', ST_GeogFromText(%s), %s, %s, 1, '{}', '{}',"
                    " %s, %s, %s, %s)",
                    (
                        holder,
                        retrieval.point_wkt(lat, lon),
                        s,
                        e + timedelta(hours=factor),
                        uuid.uuid4().hex,
                        tid,
                        s,
                        s + (e - s) * factor,
                    ),
                )
        credentials = {}
        if m["good_standing"]:
            credentials = {kind: ("valid", expiry(m["good_until_s"])) for kind in CREDENTIALS}
        for kind, (status, expiry_s) in m["credentials"].items():
            credentials[kind] = (status, expiry(expiry_s))
        holder = other if m["other_org"] else org
        for kind, (status, expires_at) in credentials.items():
            conn.execute(
                "INSERT INTO credentials (org_id, technician_id, kind, status, expires_at) VALUES (%s, %s, %s, %s, %s)",
                (holder, tid, kind, status, expires_at),
            )
        if m["credentialed_elsewhere"] and not m["other_org"]:
            conn.execute(
                "INSERT INTO pool_memberships (org_id, technician_id, tier, skills, service_radius_km, home)"
                " VALUES (%s, %s, 'preferred', %s, 500, ST_GeogFromText(%s))",
                (other, tid, SKILLS, retrieval.point_wkt(*home)),
            )
            for kind in CREDENTIALS:
                conn.execute(
                    "INSERT INTO credentials (org_id, technician_id, kind, status) VALUES (%s, %s, %s, 'valid')",
                    (other, tid, kind),
                )
        busy_windows: tuple = ()
        if m["busy"]:
            window = {
                # Windows that only touch the job's do not overlap it: the member is free.
                "ends_at_start": (job["start"] - timedelta(hours=2), job["start"]),
                "starts_at_end": (job["end"], job["end"] + timedelta(hours=2)),
            }.get(m["busy"], (job["start"] + timedelta(minutes=30 * (i % 3 - 1)), job["end"] + timedelta(hours=i % 2)))
            conn.execute(
                "INSERT INTO jobs (id, org_id, status, title, location, window_start, window_end, estimated_hours,"
                " customer, dispatch, tracking_token, technician_id) VALUES (%s, %s, 'assigned', 'other',"
                " ST_GeogFromText(%s), %s, %s, 1, '{}', '{}', %s, %s)",
                (uuid.uuid4(), org, retrieval.point_wkt(lat, lon), *window, uuid.uuid4().hex, tid),
            )
            busy_windows = (window,)
        if m["offered"]:
            conn.execute(
                "INSERT INTO offers (id, job_id, technician_id, wave, status, expires_at) VALUES (gen_random_uuid(), %s, %s, 1, 'declined', %s)",
                (job_id, tid, NOW),
            )
        if not m["other_org"]:
            snapshots.append(
                MemberSnapshot(
                    technician_id=tid,
                    tier=m["tier"],
                    active=m["active"],
                    skills=frozenset(m["skills"]),
                    service_radius_km=m["service_radius_km"],
                    home_lat=home[0],
                    home_lon=home[1],
                    on_duty=m["on_duty"],
                    location_lat=live[0] if live else None,
                    location_lon=live[1] if live else None,
                    location_recorded_at=recorded,
                    speed_mps=m["speed_mps"],
                    busy_windows=busy_windows,
                    already_offered=m["offered"],
                    credentials=credentials,
                    rating=bayesian_rating(*m.get("ratings", (0, 0))),
                    reliability=reliability(**dict(zip(COUNTERS, m.get("counters", (0,) * 7), strict=True))).score,
                    engagement=engagement_with_job(work, job["start"]),
                )
            )
    spec = JobSpec(
        job_id=job_id,
        skills=frozenset(job["skills"]),
        lat=lat,
        lon=lon,
        window_start=job["start"],
        window_end=job["end"],
    )
    return org, spec, snapshots


@pytest.fixture(scope="module")
def conn(migrated: str):
    with psycopg.connect(_dsn(migrated), autocommit=True) as connection:
        yield connection
        connection.execute(f"TRUNCATE {TABLES} CASCADE")


def _match(url: str, org: uuid.UUID, job: JobSpec, wave: WaveSpec, **options):
    """The application's own matching call, on its own event loop and connection."""

    async def run():
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                return await search(connection, org, job, wave, NOW, job_hours=JOB_HOURS, **options)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    # The size first: drawn as a plain list, most pools came out nearly empty.
    members=st.integers(0, 40).flatmap(lambda n: st.lists(member_strategy, min_size=n, max_size=n)),
    asap=st.booleans(),
    skills=st.sets(st.sampled_from(SKILLS), max_size=1),
    tiers=st.sampled_from([["preferred"], ["approved"], ["preferred", "approved"]]),
    radius_km=st.sampled_from([3.0, 20.0, 50.0, 50.0]),
    pool_size=st.integers(1, 6),
    limit=st.integers(1, 6),
    rare_skills_shortcut=st.booleans(),
    requirements=mostly(True).flatmap(lambda present: requirements_strategy if present else st.none()),
    policy=mostly(True).flatmap(lambda present: policy_strategy if present else st.none()),
)
def test_postgis_candidates_equal_brute_force(
    conn,
    migrated,
    members,
    asap,
    skills,
    tiers,
    radius_km,
    pool_size,
    limit,
    rare_skills_shortcut,
    requirements,
    policy,
) -> None:
    start = NOW + (timedelta(minutes=30) if asap else timedelta(days=1))
    job_data = {"skills": skills, "start": start, "end": start + timedelta(hours=3)}
    conn.execute(f"TRUNCATE {TABLES} CASCADE")
    org, spec, snapshots = _store(conn, members, job_data, requirements, policy)

    wave = WaveSpec(tiers=frozenset(tiers), radius_km=radius_km)
    # Both ways of widening a search: the longer walk, and measuring every member with the skills.
    got = _match(
        migrated,
        org,
        spec,
        wave,
        limit=limit,
        pool_size=pool_size,
        skilled_direct=5000 if rare_skills_shortcut else 0,
    )

    job = msgspec.structs.replace(
        spec, required_credentials=required_kinds(requirements, skills), policy=policy_of(policy)
    )
    # Brute force: every member of the pool, haversine distances computed in Python.
    expected = evaluate(job, wave, snapshots, NOW, settings=MatchSettings(pool_size=pool_size), limit=limit)

    assert [(c.technician_id, c.rank) for c in got.candidates] == [
        (c.technician_id, c.rank) for c in expected.candidates
    ]
    for g, e in zip(got.candidates, expected.candidates, strict=True):
        assert g.distance_m == pytest.approx(e.distance_m, abs=0.2)
        assert g.score == pytest.approx(e.score, abs=1e-5)
        assert g.warnings == e.warnings
        assert [(o.kind, o.limit) for o in g.over_limits] == [(o.kind, o.limit) for o in e.over_limits]
        assert [o.value for o in g.over_limits] == pytest.approx([o.value for o in e.over_limits], abs=0.01)
    # Those left out by engagement limits alone, whom the alerts are about, are the same members too.
    assert [w.technician_id for w in got.withheld] == [w.technician_id for w in expected.withheld]
    for g, e in zip(got.withheld, expected.withheld, strict=True):
        assert [(o.kind, o.limit) for o in g.over_limits] == [(o.kind, o.limit) for o in e.over_limits]
        assert [o.value for o in g.over_limits] == pytest.approx([o.value for o in e.over_limits], abs=0.01)

    # The SQL filters alone, unbounded, keep exactly the members the pure rules find eligible (the core
    # re-checks what the walk returns, so a filter that lets too many through shows only here). Engagement
    # limits are applied after the walk, so they are left out of this comparison.
    everyone = len(members) + 1
    unlimited = msgspec.structs.replace(job, policy=None)
    eligible = evaluate(unlimited, wave, snapshots, NOW, settings=MatchSettings(pool_size=everyone), limit=everyone)
    params = retrieval.query_params(
        org,
        job,
        wave,
        now=NOW,
        fresh_since=NOW - timedelta(minutes=10),
        job_hours=JOB_HOURS,
        pool_size=everyone,
        k=everyone,
    )
    for query in (retrieval.nearest_query(asap), retrieval.SKILLED_NEAREST):
        sql = str(query.compile(dialect=postgresql.psycopg.dialect()))
        rows = conn.cursor(row_factory=psycopg.rows.namedtuple_row).execute(sql, {**params, "asap": asap}).fetchall()
        found = {r.technician_id for r in rows if r.technician_id is not None}
        assert found == {c.technician_id for c in eligible.candidates}


# Members who are all eligible but for their engagement, close together: in block mode the walk must go on
# past those over a limit to fill the candidate set.
ELIGIBLE_BUT_FOR_ENGAGEMENT = {
    "live": None,
    "on_duty": True,
    "active": True,
    "tier": "preferred",
    "skills": set(SKILLS),
    "service_radius_km": 60.0,
    "busy": False,
    "offered": False,
    "good_standing": True,
    "good_until_s": None,
    "credentials": {},
}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    members=st.lists(member_strategy.map(lambda m: {**m, **ELIGIBLE_BUT_FOR_ENGAGEMENT}), min_size=1, max_size=25),
    pool_size=st.integers(1, 3),
    limit=st.integers(1, 3),
    policy=policy_strategy.map(lambda p: {**p, "mode": "block"}),
)
def test_blocked_members_make_the_walk_go_further(conn, migrated, members, pool_size, limit, policy) -> None:
    start = NOW + timedelta(days=1)
    conn.execute(f"TRUNCATE {TABLES} CASCADE")
    org, spec, snapshots = _store(
        conn, members, {"skills": set(), "start": start, "end": start + timedelta(hours=3)}, None, policy
    )
    wave = WaveSpec(tiers=frozenset({"preferred"}), radius_km=100)
    got = _match(migrated, org, spec, wave, limit=limit, pool_size=pool_size)
    job = msgspec.structs.replace(spec, policy=policy_of(policy))
    expected = evaluate(job, wave, snapshots, NOW, settings=MatchSettings(pool_size=pool_size), limit=limit)
    assert [c.technician_id for c in got.candidates] == [c.technician_id for c in expected.candidates]
    assert [w.technician_id for w in got.withheld] == [w.technician_id for w in expected.withheld]


def test_the_walk_widens_past_other_organisations_and_keeps_the_nearest(conn, migrated) -> None:
    """Twelve technicians of another organisation stand nearest the job; the walk must pass them, and the
    candidates are then the nearest eligible members, not any eligible ones."""
    conn.execute(f"TRUNCATE {TABLES} CASCADE")
    base = {
        "age_s": 0,
        "on_duty": True,
        "active": True,
        "tier": "preferred",
        "skills": {"hvac"},
        "service_radius_km": 60.0,
        "speed_mps": None,
        "busy": False,
        "offered": False,
        "good_standing": True,
        "good_until_s": None,
        "credentials": {},
        "credentialed_elsewhere": False,
    }
    others = [{**base, "home": (0.1 * i, 0), "live": (0.1 * i, 0), "other_org": True} for i in range(1, 13)]
    ours = [{**base, "home": (2 + i, 0), "live": (2 + i, 0), "other_org": False} for i in range(10)]
    start = NOW + timedelta(minutes=30)
    job = {"skills": {"hvac"}, "start": start, "end": start + timedelta(hours=2)}
    org, spec, snapshots = _store(conn, others + ours[::-1], job)
    wave = WaveSpec(tiers=frozenset({"preferred"}), radius_km=50)
    nearest = {m.technician_id for m in sorted(snapshots, key=lambda m: m.location_lat)[:2]}
    for skilled_direct in (0, 5000):  # the longer walk, then the rare-skills shortcut
        got = _match(migrated, org, spec, wave, limit=2, pool_size=2, skilled_direct=skilled_direct)
        assert {c.technician_id for c in got.candidates} == nearest


# An on-duty, fresh, eligible hvac member a few hundred metres from the job: tests vary it one field at a time.
NEARBY_HVAC_MEMBER = {
    "home": (1, 1),
    "live": (1, 1),
    "age_s": 0,
    "on_duty": True,
    "active": True,
    "tier": "preferred",
    "skills": {"hvac"},
    "service_radius_km": 30.0,
    "speed_mps": None,
    "busy": False,
    "offered": False,
    "other_org": False,
    "good_standing": True,
    "good_until_s": None,
    "credentials": {},
    "credentialed_elsewhere": False,
}


def test_explain_lists_every_member_left_out(conn, migrated) -> None:
    conn.execute(f"TRUNCATE {TABLES} CASCADE")
    base = NEARBY_HVAC_MEMBER
    members = [
        {**base, "credentials": {"insurance_liability": ("failed", None)}},  # not required: no matter
        {**base, "on_duty": False},
        {**base, "skills": set()},
        {**base, "live": (35, 35)},
        {**base, "active": False, "tier": "approved"},
        {**base, "busy": True, "offered": True},
        {**base, "credentials": {"background_check": ("pending", None)}},
        {**base, "credentials": {"cert:epa-608": ("valid", -1)}},  # a second short of the window's end
        {**base, "good_standing": False},
        {**base, "good_standing": False, "credentialed_elsewhere": True},  # another org's records do not count
    ]
    start = NOW + timedelta(minutes=30)
    requirements = {"credentials": ["background_check"], "by_skill": {"hvac": ["cert:epa-608"], "plumbing": ["nda"]}}
    job = {"skills": {"hvac"}, "start": start, "end": start + timedelta(hours=2)}
    org, spec, _ = _store(conn, members, job, requirements)
    wave = WaveSpec(tiers=frozenset({"preferred"}), radius_km=20)
    got = _match(migrated, org, spec, wave, limit=10, explain=True)
    assert len(got.candidates) == 1
    reasons = sorted(tuple(e.reasons) for e in got.excluded)
    missing_both = ("credential_missing:background_check", "credential_missing:cert:epa-608")
    assert reasons == sorted(
        [
            ("off_duty",),
            ("missing_skill:hvac",),
            ("out_of_radius",),
            ("inactive", "tier"),
            ("busy", "already_offered"),
            ("credential_not_valid:background_check",),
            ("credential_expired:cert:epa-608",),
            missing_both,
            missing_both,
        ]
    )
    # Without explain, the walk leaves the same members out.
    assert [c.technician_id for c in _match(migrated, org, spec, wave, limit=10).candidates] == [
        c.technician_id for c in got.candidates
    ]


def test_the_walk_uses_the_gist_indexes(conn) -> None:
    conn.execute(f"TRUNCATE {TABLES} CASCADE")
    org = uuid.uuid4()
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'big')", (org,))
    conn.execute(
        """
        WITH t AS (
            INSERT INTO technicians (id, firebase_uid, name, on_duty, location, location_recorded_at)
            SELECT gen_random_uuid(), 'u' || g, 't', g %% 5 = 0,
                   ST_SetSRID(ST_MakePoint(2.35 + random() - 0.5, 48.85 + random() - 0.5), 4326)::geography, now()
            FROM generate_series(1, 5000) g RETURNING id, location
        )
        INSERT INTO pool_memberships (org_id, technician_id, tier, skills, service_radius_km, home)
        SELECT %s, id, 'approved', '{hvac}', 50, location FROM t
        """,
        (org,),
    )
    conn.execute("ANALYZE technicians; ANALYZE pool_memberships")
    job = JobSpec(
        job_id=uuid.uuid4(),
        skills=frozenset({"hvac"}),
        lat=48.85,
        lon=2.35,
        window_start=NOW,
        window_end=NOW + timedelta(hours=1),
        required_credentials=frozenset({"background_check", "nda"}),
    )
    wave = WaveSpec(tiers=frozenset({"approved"}), radius_km=50)
    params = retrieval.query_params(
        org, job, wave, now=NOW, fresh_since=NOW - timedelta(days=1), job_hours=JOB_HOURS, pool_size=10, k=40
    )
    for query, index in (
        (retrieval.NEAREST_LIVE, "ix_technicians_location"),
        (retrieval.NEAREST_HOME, "ix_pool_memberships_home"),
    ):
        sql = str(query.compile(dialect=postgresql.psycopg.dialect()))
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params).fetchall())
        assert f"Index Scan using {index}" in plan, plan
        # The application runs it prepared, with a generic plan (backend.db.engine): auto_explain shows that one.
        with psycopg.connect(conn.info.dsn, autocommit=True, options=CONNECTION_OPTIONS) as app:
            plans: list[str] = []
            app.add_notice_handler(lambda notice, plans=plans: plans.append(notice.message_primary or ""))
            app.execute("LOAD 'auto_explain'")
            app.execute("SET auto_explain.log_min_duration = 0")
            app.execute("SET auto_explain.log_level = notice")
            app.execute(sql, params, prepare=True)
            assert f"Index Scan using {index}" in plans[-1], plans
    conn.execute(f"TRUNCATE {TABLES} CASCADE")


def test_the_edges_are_the_same_in_sql_and_in_the_rules(conn, migrated) -> None:
    """A live position exactly 10 minutes old is fresh, a second older stale; a job that ends as this one starts,
    or starts as it ends, does not make a member busy. The walk and explain (SQL) agree with the rules (Python)."""
    conn.execute(f"TRUNCATE {TABLES} CASCADE")
    base = NEARBY_HVAC_MEMBER
    members = [
        {**base, "age_s": 600},
        {**base, "age_s": 601},
        {**base, "busy": "ends_at_start"},
        {**base, "busy": "starts_at_end"},
        {**base, "busy": True},
    ]
    start = NOW + timedelta(minutes=30)  # ASAP: live positions count
    job = {"skills": {"hvac"}, "start": start, "end": start + timedelta(hours=2)}
    org, spec, snapshots = _store(conn, members, job)
    wave = WaveSpec(tiers=frozenset({"preferred"}), radius_km=20)
    ids = [m.technician_id for m in snapshots]

    got = _match(migrated, org, spec, wave, limit=10, explain=True)
    walked = _match(migrated, org, spec, wave, limit=10)
    expected = evaluate(spec, wave, snapshots, NOW, limit=10, explain=True)

    chosen = {c.technician_id for c in got.candidates}
    assert chosen == {ids[0], ids[2], ids[3]}
    assert {c.technician_id for c in walked.candidates} == chosen == {c.technician_id for c in expected.candidates}
    assert {e.technician_id: e.reasons for e in got.excluded} == {ids[1]: ["stale_location"], ids[4]: ["busy"]}
