"""`make bench-match`: ranked candidates over 1,000,000 technicians in one metro area.

Seeds (once; reused by later runs) a database `truckroll_bench_match` next to the development one:
one organisation, 1,000,000 technicians in a 60 km × 60 km area around Paris, 20 % on duty with a
fresh position, two or three of eight skills each. Then, for jobs at random points, it times the
application's own matching call (`backend.jobs.services.match`: the bounded KNN walk plus the ranking,
top 10) next to the floor measured on the same data and the same connection: a bare
`ORDER BY location <-> point LIMIT 10` on the same GiST index. A job needing a skill nobody has shows
how long a search that finds nobody takes.

Last line: `match: floor_p50_ms=<x> p50_ms=<x> p99_ms=<x> ratio_p50=<r> empty_ms=<x>`.
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
from backend.jobs import services
from backend.settings import DatabaseSettings, libpq_url
from bench.common import bench_database
from matching import WaveSpec, retrieval

TECHNICIANS = int(os.environ.get("BENCH_TECHNICIANS", "1000000"))
JOBS = int(os.environ.get("BENCH_JOBS", "400"))
CENTRE = (48.8566, 2.3522)
HALF_SIDE_DEG = (0.27, 0.41)  # about 30 km each way
SKILLS = ["hvac", "electrical", "plumbing", "networking", "pos_terminals", "printers", "ev_chargers", "security"]
DATABASE = "truckroll_bench_match"
ORG = uuid.UUID("00000000-0000-4000-8000-00000000b001")


def prepare() -> str:
    url = bench_database(DATABASE)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM pool_memberships WHERE org_id = %s", (ORG,)).fetchone()[0]
        if have == TECHNICIANS:
            print(f"bench-match: reusing {have:,} technicians in database {DATABASE}", flush=True)
        else:
            _seed(conn, have)
        # Fresh positions for the on-duty fifth, as a live fleet would have.
        conn.execute(
            "UPDATE technicians SET location_recorded_at = now() WHERE on_duty AND location_recorded_at < now() - interval '5 minutes'"
        )
        conn.execute("VACUUM ANALYZE technicians")
        conn.execute("VACUUM ANALYZE pool_memberships")
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


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(url: str) -> str:
    engine = make_engine(DatabaseSettings(url=url, pool_size=1))  # the app's own connection options
    rng = random.Random(11)
    now = datetime.now(UTC)
    wave = WaveSpec(tiers=frozenset({"preferred", "approved"}), radius_km=50)
    floor_sql = text("SELECT id FROM technicians ORDER BY location <-> CAST(:point AS geography) LIMIT 10")
    floor_ms: list[float] = []
    match_ms: list[float] = []
    empty_ms: list[float] = []
    try:
        async with AsyncSession(engine) as session:
            job_id = uuid.uuid4()
            await session.execute(
                text(
                    "INSERT INTO jobs (id, org_id, status, title, skills, location, window_start, window_end,"
                    " estimated_hours, customer, dispatch, tracking_token) VALUES (:id, :org, 'open', 'bench', :skills,"
                    " CAST(:point AS geography), :start, :end, 2, '{}', '{}', :token)"
                ),
                {
                    "id": job_id,
                    "org": ORG,
                    "skills": ["hvac"],
                    "point": retrieval.point_wkt(*CENTRE),
                    "start": now,
                    "end": now + timedelta(hours=3),
                    "token": uuid.uuid4().hex,
                },
            )
            await session.commit()
            row = await services.load(ORG, job_id, session=session)
            points = [
                (
                    CENTRE[0] + rng.uniform(-1, 1) * HALF_SIDE_DEG[0] * 0.8,
                    CENTRE[1] + rng.uniform(-1, 1) * HALF_SIDE_DEG[1] * 0.8,
                )
                for _ in range(JOBS)
            ]
            for warm_up in (True, False):
                for i, (lat, lon) in enumerate(points if not warm_up else points[:40]):
                    job_row = _Row(row.Job, lat, lon, skills=[SKILLS[i % len(SKILLS)]])
                    t0 = time.perf_counter()
                    await session.execute(floor_sql, {"point": retrieval.point_wkt(lat, lon)})
                    t1 = time.perf_counter()
                    result = await services.match(ORG, job_row, wave, now, limit=10, session=session)
                    t2 = time.perf_counter()
                    if not warm_up:
                        assert len(result.candidates) == 10, result
                        floor_ms.append((t1 - t0) * 1000)
                        match_ms.append((t2 - t1) * 1000)
            for lat, lon in points[:20]:
                job_row = _Row(row.Job, lat, lon, skills=["underwater_welding"])
                t0 = time.perf_counter()
                result = await services.match(ORG, job_row, wave, now, limit=10, session=session)
                empty_ms.append((time.perf_counter() - t0) * 1000)
                assert result.candidates == []
            await session.rollback()
            await session.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": job_id})
            await session.commit()
    finally:
        await engine.dispose()
    floor_p50, p50, p99 = _percentile(floor_ms, 0.5), _percentile(match_ms, 0.5), _percentile(match_ms, 0.99)
    empty = _percentile(empty_ms, 0.5)
    print(
        f"bench-match: {len(match_ms)} ASAP jobs; floor p50 {floor_p50:.2f} ms p99 {_percentile(floor_ms, 0.99):.2f} ms"
    )
    print(f"bench-match: candidates p50 {p50:.2f} ms p99 {p99:.2f} ms (mean {statistics.fmean(match_ms):.2f} ms)")
    print(f"bench-match: a search that finds nobody: p50 {empty:.1f} ms, max {max(empty_ms):.1f} ms")
    return (
        f"match: floor_p50_ms={floor_p50:.2f} p50_ms={p50:.2f} p99_ms={p99:.2f} "
        f"ratio_p50={p50 / floor_p50:.2f} empty_ms={max(empty_ms):.1f}"
    )


class _Row:
    """What `services.match` reads of a job row: the Job, its skills and its coordinates."""

    def __init__(self, job, lat: float, lon: float, *, skills: list[str]) -> None:
        self.Job = _JobView(job, skills)
        self.lat = lat
        self.lon = lon


class _JobView:
    def __init__(self, job, skills: list[str]) -> None:
        self.id = job.id
        self.skills = skills
        self.window_start = job.window_start
        self.window_end = job.window_end
        self.estimated_hours = job.estimated_hours  # read by matching when a policy is set


def main() -> None:
    url = prepare()
    line = asyncio.run(measure(url))
    print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
