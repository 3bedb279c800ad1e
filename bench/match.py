"""`make bench-match`: ranked candidates over 1,000,000 technicians in one metro area.

Seeds (once; reused by later runs) a database `truckroll_bench_match` next to the development one:
one organisation, 1,000,000 technicians in a 60 km × 60 km area around Paris, 20 % on duty with a
fresh position, two or three of eight skills each. Then, for ASAP jobs at random points, it times the
matching search (`matching.search.search`: the bounded KNN walk plus the ranking, top 10) next to the floor
measured on the same data and the same connection: a bare `ORDER BY location <-> point LIMIT 10` on the
same GiST index. A job needing a skill nobody has shows how long a search that finds nobody takes.

A second organisation has the same technicians in its pool under the rules of a realistic one: a
requirement set (two credentials for everyone, a certificate for three of the skills; some members'
records are pending or expired) and an engagement policy in block mode. The on-duty members (those an ASAP
job reaches) have a history of completed work for it: a third of them worked a run of 1 to 20 weeks up to
this week or the last, a few hours a few times a week, some nearly full time; so that some members found
are over a limit and the search walks on past them. The same jobs are timed there, with their own floor.

Last lines:
`match: floor_p50_ms=<x> p50_ms=<x> p99_ms=<x> ratio_p50=<r> empty_ms=<x>`
`match_rules: floor_p50_ms=<x> p50_ms=<x> p99_ms=<x> ratio_p50=<r>`.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.engine import make_engine
from backend.settings import DatabaseSettings, libpq_url
from bench.common import bench_database
from matching import JobSpec, WaveSpec, retrieval
from matching.search import search

TECHNICIANS = int(os.environ.get("BENCH_TECHNICIANS", "1000000"))
JOBS = int(os.environ.get("BENCH_JOBS", "400"))
CENTRE = (48.8566, 2.3522)
HALF_SIDE_DEG = (0.27, 0.41)  # about 30 km each way
SKILLS = ["hvac", "electrical", "plumbing", "networking", "pos_terminals", "printers", "ev_chargers", "security"]
DATABASE = "truckroll_bench_match"
ORG = uuid.UUID("00000000-0000-4000-8000-00000000b001")
# The organisation with rules, and its rules.
ORG_RULES = uuid.UUID("00000000-0000-4000-8000-00000000b002")
GENERAL_CREDENTIALS = ["background_check", "contractor_agreement"]
CERTIFICATES = {"hvac": "cert:epa-608", "electrical": "cert:electrical", "ev_chargers": "cert:ev-charging"}
POLICY = {"max_hours_per_week": 40.0, "max_consecutive_weeks": 16, "max_tenure_months": 12, "mode": "block"}
JOB_HOURS = 2.0


def prepare() -> str:
    url = bench_database(DATABASE)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM pool_memberships WHERE org_id = %s", (ORG,)).fetchone()[0]
        if have == TECHNICIANS:
            print(f"bench-match: reusing {have:,} technicians in database {DATABASE}", flush=True)
        else:
            _seed(conn, have)
        _prepare_rules(conn)
        # Fresh positions for the on-duty fifth, as a live fleet would have.
        conn.execute(
            "UPDATE technicians SET location_recorded_at = now() WHERE on_duty AND location_recorded_at < now() - interval '5 minutes'"
        )
        conn.execute("VACUUM ANALYZE technicians")
        conn.execute("VACUUM ANALYZE pool_memberships")
        conn.execute("VACUUM ANALYZE credentials")
        conn.execute("VACUUM ANALYZE jobs")
    return url


def _seed(conn: psycopg.Connection, have: int) -> None:
    if have:
        conn.execute("TRUNCATE technicians, pool_memberships, organizations CASCADE")
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'bench') ON CONFLICT DO NOTHING", (ORG,))
    chunk = 100_000
    started = time.perf_counter()
    for offset in range(0, TECHNICIANS, chunk):
        n = min(chunk, TECHNICIANS - offset)
        conn.execute(
            """
            WITH t AS (
                INSERT INTO technicians (id, firebase_uid, name, on_duty, location, location_recorded_at, speed_mps, created_at)
                SELECT gen_random_uuid(), 'bench-' || (%(offset)s + g), 'Bench Technician', random() < 0.2,
                       ST_SetSRID(ST_MakePoint(%(lon)s + (random() * 2 - 1) * %(dlon)s,
                                               %(lat)s + (random() * 2 - 1) * %(dlat)s), 4326)::geography,
                       now() - interval '2 hours', (random() * 12)::float8, now()
                FROM generate_series(1, %(n)s) g
                RETURNING id, location
            )
            INSERT INTO pool_memberships (org_id, technician_id, tier, skills, service_radius_km, home, created_at)
            SELECT %(org)s, id,
                   CASE WHEN random() < 0.3 THEN 'preferred' ELSE 'approved' END,
                   ARRAY(SELECT s FROM unnest(%(skills)s::text[]) s WHERE t.id IS NOT NULL ORDER BY random() LIMIT 2 + (random() * 1.4)::int),
                   (ARRAY[15, 25, 40, 60])[1 + floor(random() * 4)::int],
                   ST_Project(location, random() * 8000, radians(random() * 360)), now()
            FROM t
            """,
            {
                "offset": offset,
                "n": n,
                "lat": CENTRE[0],
                "lon": CENTRE[1],
                "dlat": HALF_SIDE_DEG[0],
                "dlon": HALF_SIDE_DEG[1],
                "org": ORG,
                "skills": SKILLS,
            },
        )
        done = offset + n
        rate = done / (time.perf_counter() - started)
        print(f"bench-match: seeded {done:,}/{TECHNICIANS:,} technicians ({rate:,.0f}/s)", flush=True)


def _prepare_rules(conn: psycopg.Connection) -> None:
    """The organisation with rules: seeded once; its work history again once it is a few days old."""
    have = conn.execute("SELECT count(*) FROM pool_memberships WHERE org_id = %s", (ORG_RULES,)).fetchone()[0]
    if have != TECHNICIANS:
        _seed_rules(conn)
    last = conn.execute(
        "SELECT max(completed_at) > now() - interval '2 days' FROM jobs WHERE org_id = %s AND status = 'completed'",
        (ORG_RULES,),
    ).fetchone()[0]
    if not last:
        # Consecutive weeks and hours are counted back from now: an old history no longer says the same.
        conn.execute("DELETE FROM jobs WHERE org_id = %s", (ORG_RULES,))
        _seed_history(conn)
    else:
        print("bench-match: reusing the organisation with rules", flush=True)


def _seed_rules(conn: psycopg.Connection) -> None:
    started = time.perf_counter()
    conn.execute("DELETE FROM organizations WHERE id = %s", (ORG_RULES,))
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'bench with rules')", (ORG_RULES,))
    conn.execute(
        "INSERT INTO org_requirements (org_id, credentials, by_skill) VALUES (%s, %s, %s)",
        (ORG_RULES, GENERAL_CREDENTIALS, psycopg.types.json.Jsonb({k: [v] for k, v in CERTIFICATES.items()})),
    )
    conn.execute(
        "INSERT INTO engagement_policies (org_id, max_hours_per_week, max_consecutive_weeks, max_tenure_months, mode)"
        " VALUES (%(org)s, %(max_hours_per_week)s, %(max_consecutive_weeks)s, %(max_tenure_months)s, %(mode)s)",
        {"org": ORG_RULES, **POLICY},
    )
    conn.execute(
        "INSERT INTO pool_memberships (org_id, technician_id, tier, skills, service_radius_km, home, created_at)"
        " SELECT %s, technician_id, tier, skills, service_radius_km, home, created_at"
        " FROM pool_memberships WHERE org_id = %s",
        (ORG_RULES, ORG),
    )
    print(f"bench-match: organisation with rules: pool copied ({time.perf_counter() - started:.0f} s)", flush=True)
    # Every member has a record of each required kind, most of them in good standing: 3 % pending, and the
    # expiring kinds (background check, certificates) expire within a year, some already.
    conn.execute(
        """
        INSERT INTO credentials (org_id, technician_id, kind, status, expires_at)
        SELECT m.org_id, m.technician_id, c.kind,
               CASE WHEN random() < 0.03 THEN 'pending' ELSE 'valid' END,
               CASE WHEN c.kind <> 'contractor_agreement' THEN now() + (random() * 380 - 15) * interval '1 day' END
        FROM pool_memberships m
        CROSS JOIN LATERAL (
            SELECT kind FROM unnest(%(general)s::text[]) kind
            UNION ALL
            SELECT x.cert FROM unnest(%(skills)s::text[], %(certs)s::text[]) x(skill, cert)
            WHERE x.skill = ANY(m.skills)
        ) c
        WHERE m.org_id = %(org)s
        """,
        {
            "org": ORG_RULES,
            "general": GENERAL_CREDENTIALS,
            "skills": list(CERTIFICATES),
            "certs": list(CERTIFICATES.values()),
        },
    )
    print(f"bench-match: organisation with rules: credentials ({time.perf_counter() - started:.0f} s)", flush=True)


def _seed_history(conn: psycopg.Connection) -> None:
    """Completed work for a third of the on-duty members: a run of 1 to 20 weeks ending this week or the
    last, 1 to 3 jobs of 2 to 8 hours a week (6 of 6 to 9 hours for one in ten)."""
    started = time.perf_counter()
    conn.execute(
        """
        INSERT INTO jobs (id, org_id, status, title, location, window_start, window_end, estimated_hours,
                          customer, dispatch, tracking_token, technician_id, checked_in_at, completed_at,
                          created_at, updated_at)
        SELECT gen_random_uuid(), %(org)s, 'completed', 'bench history', w.home, w.s, w.s + interval '10 hours',
               w.hours, '{}', '{}', gen_random_uuid()::text, w.technician_id, w.s,
               w.s + make_interval(secs => w.hours * 3600), w.s, w.s
        FROM (
            SELECT m.technician_id, m.home,
                   date_trunc('week', now()) - (m.last_week + week) * interval '7 days'
                       + floor(random() * 6) * interval '1 day' + (7 + random() * 3) * interval '1 hour' AS s,
                   CASE WHEN m.heavy THEN 6 + random() * 3 ELSE 2 + random() * 6 END AS hours
            FROM (
                SELECT m.technician_id, m.home, (random() < 0.5)::int AS last_week,
                       1 + floor(random() * 20)::int AS weeks, random() < 0.1 AS heavy
                FROM pool_memberships m JOIN technicians t ON t.id = m.technician_id
                WHERE m.org_id = %(org)s AND t.on_duty AND random() < 0.33
            ) m
            CROSS JOIN LATERAL generate_series(0, m.weeks - 1) week
            -- (`week` in the bound: drawn again for each week, not once per member)
            CROSS JOIN LATERAL generate_series(1, CASE WHEN m.heavy THEN 6 ELSE 1 + floor(random() * 3)::int END
                                                      + 0 * week) n
        ) w
        WHERE w.s + make_interval(secs => w.hours * 3600) < now()
        """,
        {"org": ORG_RULES},
    )
    done = conn.execute("SELECT count(*) FROM jobs WHERE org_id = %s", (ORG_RULES,)).fetchone()[0]
    print(f"bench-match: organisation with rules: {done:,} jobs of history ({time.perf_counter() - started:.0f} s)")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(url: str) -> list[str]:
    engine = make_engine(DatabaseSettings(url=url, pool_size=1))  # the app's own connection options
    rng = random.Random(11)
    now = datetime.now(UTC)
    wave = WaveSpec(tiers=frozenset({"preferred", "approved"}), radius_km=50)
    floor_sql = text("SELECT id FROM technicians ORDER BY location <-> CAST(:point AS geography) LIMIT 10")
    points = [
        (
            CENTRE[0] + rng.uniform(-1, 1) * HALF_SIDE_DEG[0] * 0.8,
            CENTRE[1] + rng.uniform(-1, 1) * HALF_SIDE_DEG[1] * 0.8,
        )
        for _ in range(JOBS)
    ]

    def job(lat: float, lon: float, skill: str) -> JobSpec:
        return JobSpec(
            job_id=uuid.uuid4(),
            skills=frozenset({skill}),
            lat=lat,
            lon=lon,
            window_start=now,
            window_end=now + timedelta(hours=3),
        )

    lines = []
    try:
        async with AsyncSession(engine) as session:
            connection = await session.connection()

            async def timed(org: uuid.UUID) -> tuple[list[float], list[float], int]:
                """The floor and the search for each job, one after the other on the same connection; and in how
                many searches someone was left out for being over an engagement limit."""
                floor_ms: list[float] = []
                match_ms: list[float] = []
                withheld = 0
                for warm_up in (True, False):
                    for i, (lat, lon) in enumerate(points if not warm_up else points[:40]):
                        t0 = time.perf_counter()
                        await session.execute(floor_sql, {"point": retrieval.point_wkt(lat, lon)})
                        t1 = time.perf_counter()
                        result = await search(
                            connection,
                            org,
                            job(lat, lon, SKILLS[i % len(SKILLS)]),
                            wave,
                            now,
                            limit=10,
                            job_hours=JOB_HOURS,
                        )
                        t2 = time.perf_counter()
                        if not warm_up:
                            assert len(result.candidates) == 10, result
                            floor_ms.append((t1 - t0) * 1000)
                            match_ms.append((t2 - t1) * 1000)
                            withheld += bool(result.withheld)
                return floor_ms, match_ms, withheld

            floor_ms, match_ms, _ = await timed(ORG)
            empty_ms: list[float] = []
            for lat, lon in points[:20]:
                t0 = time.perf_counter()
                result = await search(
                    connection, ORG, job(lat, lon, "underwater_welding"), wave, now, limit=10, job_hours=JOB_HOURS
                )
                empty_ms.append((time.perf_counter() - t0) * 1000)
                assert result.candidates == []
            floor_p50, p50, p99 = _percentile(floor_ms, 0.5), _percentile(match_ms, 0.5), _percentile(match_ms, 0.99)
            empty = _percentile(empty_ms, 0.5)
            print(
                f"bench-match: {len(match_ms)} ASAP jobs; floor p50 {floor_p50:.2f} ms"
                f" p99 {_percentile(floor_ms, 0.99):.2f} ms"
            )
            print(
                f"bench-match: candidates p50 {p50:.2f} ms p99 {p99:.2f} ms (mean {statistics.fmean(match_ms):.2f} ms)"
            )
            print(f"bench-match: a search that finds nobody: p50 {empty:.1f} ms, max {max(empty_ms):.1f} ms")
            lines.append(
                f"match: floor_p50_ms={floor_p50:.2f} p50_ms={p50:.2f} p99_ms={p99:.2f} "
                f"ratio_p50={p50 / floor_p50:.2f} empty_ms={max(empty_ms):.1f}"
            )

            floor_ms, match_ms, withheld = await timed(ORG_RULES)
            floor_p50, p50, p99 = _percentile(floor_ms, 0.5), _percentile(match_ms, 0.5), _percentile(match_ms, 0.99)
            print(
                f"bench-match: with requirements and a block policy: candidates p50 {p50:.2f} ms p99 {p99:.2f} ms"
                f" (mean {statistics.fmean(match_ms):.2f} ms; floor p50 {floor_p50:.2f} ms);"
                f" someone over a limit left out in {withheld} of {len(match_ms)} searches"
            )
            lines.append(
                f"match_rules: floor_p50_ms={floor_p50:.2f} p50_ms={p50:.2f} p99_ms={p99:.2f} "
                f"ratio_p50={p50 / floor_p50:.2f}"
            )
            await session.rollback()
    finally:
        await engine.dispose()
    return lines


def main() -> None:
    url = prepare()
    for line in asyncio.run(measure(url)):
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
