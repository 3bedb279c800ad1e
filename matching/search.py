"""The geo-matching search: a job's ranked candidates under a wave, from the database, in one call.

`search` carries out the contract of `matching.retrieval` on a connection: a bounded KNN walk that widens
while it finds too few, with the organisation's rules and the engagement figures of the members it keeps
in the same statement, then the pure core (`matching.candidates.evaluate`) on the result. In the common
case that is one round trip.

A walk reads positions in KNN order until it holds the members it wants, up to WALK_PER_MEMBER positions
per member of the pool (reading only as many as it takes). When that finds too few inside the radius, the
next walk is longer (2 to 8 times, by the share of eligible members found). After two walks, or one that
found nobody, when fewer than SKILLED_DIRECT members have the job's skills, they are all measured instead
(exact, and cheap for rare skills: a search that finds nobody stays short). Past MAX_WALK positions a
search gives what it found: only a pool where many members have the skills but nearly all are busy gets
there.

In block mode a member over an engagement limit does not count towards the candidate set: the walk keeps a
few more members than the pool holds (a quarter more, at least 2), and when more of them than that are over
a limit it goes on for as many more, until the pool is full or nobody else is eligible.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

import msgspec
from psycopg import AsyncConnection as Driver
from psycopg.rows import namedtuple_row
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.ext.asyncio import AsyncConnection

from matching import retrieval
from matching.candidates import (
    DEFAULT_SETTINGS,
    JobSpec,
    MatchResult,
    MatchSettings,
    WaveSpec,
    evaluate,
    is_asap,
    over_limits,
)

WALK_PER_MEMBER = 8
SKILLED_DIRECT = 5000
MAX_WALK = 32768


async def search(
    connection: AsyncConnection,
    org_id: uuid.UUID,
    job: JobSpec,
    wave: WaveSpec,
    now: datetime,
    *,
    limit: int,
    job_hours: float,
    explain: bool = False,
    pool_size: int | None = None,
    only: uuid.UUID | None = None,
    settings: MatchSettings = DEFAULT_SETTINGS,
    skilled_direct: int = SKILLED_DIRECT,
) -> MatchResult:
    """Ranked candidates for `job` (of `job_hours` estimated hours) under `wave`, in `org_id`'s pool.

    `pool_size`: how many of the nearest eligible members are ranked (default: two per place offered, at
    least 20). `explain`: every member of the pool is evaluated, and those left out are listed with their
    reasons; `only` narrows that to one member (a dispatcher's direct assignment). `skilled_direct`: below
    this many members with the job's skills, a long search measures them all instead of walking on.
    The job's required credentials and policy are the organisation's, read with the walk (those on `job`
    are ignored). The statements run on `connection`'s driver connection, in its transaction.
    """
    asap = is_asap(job, now, settings)
    pool_size = pool_size or max(2 * limit, 20)
    settings = msgspec.structs.replace(settings, pool_size=pool_size)
    params = retrieval.query_params(
        org_id,
        job,
        wave,
        now=now,
        fresh_since=now - timedelta(seconds=settings.fresh_location_s),
        job_hours=job_hours,
        pool_size=pool_size,
        spare=max(2, pool_size // 4),
        k=0,
    )
    driver = (await connection.get_raw_connection()).driver_connection
    if explain:
        rows = await _rows(driver, retrieval.WHOLE_POOL, {**params, "asap": asap, "only": only})
    else:
        rows = await _walk(driver, params, wave, asap, skilled_direct)
    if not rows:
        return evaluate(job, wave, [], now, settings=settings, limit=limit, explain=explain)
    # The organisation's rules came with the rows.
    required, policy = retrieval.rules_of(rows[0])
    job = msgspec.structs.replace(job, required_credentials=required, policy=policy)
    members = retrieval.snapshots(rows, explained=explain)
    while policy is not None and policy.block and not explain and len(rows) >= rows[0].wanted:
        blocked = sum(1 for m in members if over_limits(m.engagement, policy))
        if len(rows) - blocked >= pool_size:
            break
        rows = await _walk(driver, {**params, "pool_size": pool_size + blocked}, wave, asap, skilled_direct)
        members = retrieval.snapshots(rows)
    distances = {r.technician_id: r.distance_m for r in rows if r.distance_m is not None}
    return evaluate(job, wave, members, now, settings=settings, limit=limit, explain=explain, distances=distances)


async def _walk(driver: Driver, params: dict, wave: WaveSpec, asap: bool, skilled_direct: int):
    """The nearest eligible members (before engagement limits) the walk wants, walking further while needed."""
    k = min(params["pool_size"] * WALK_PER_MEMBER, MAX_WALK)
    walks = 0
    while True:
        params = {**params, "k": k}
        rows = await _rows(driver, retrieval.nearest_query(asap), params)
        walks += 1
        if k >= MAX_WALK or not retrieval.needs_wider_walk(rows, k=k, radius_km=wave.radius_km):
            break
        # A second, longer walk usually suffices; after that, or when the first found nobody, rare skills
        # are the likely reason.
        if walks >= 2 or rows[0].technician_id is None:
            skilled = (await _rows(driver, retrieval.SKILLED_COUNT, {**params, "cap": skilled_direct}))[0].skilled
            if skilled < skilled_direct:
                rows = await _rows(driver, retrieval.SKILLED_NEAREST, {**params, "asap": asap})
                break
        k = min(k * _growth(rows, rows[0].wanted), MAX_WALK)
    return [r for r in rows if r.technician_id is not None]


def _growth(rows, wanted: int) -> int:
    """How much longer the next walk is: by what the last one found, with room to spare (2 to 8 times)."""
    found = sum(1 for r in rows if r.technician_id is not None)
    return 8 if found == 0 else min(8, max(2, math.ceil(1.5 * wanted / found)))


# The statements run on the driver's connection under the SQLAlchemy one, in psycopg's own format (converted
# once, here): building SQLAlchemy's result objects for a walk's ~40 columns cost a tenth of the search.
_SQL = {
    id(statement): str(statement.compile(dialect=PGDialect_psycopg()))
    for statement in (
        retrieval.NEAREST_LIVE,
        retrieval.NEAREST_HOME,
        retrieval.SKILLED_COUNT,
        retrieval.SKILLED_NEAREST,
        retrieval.WHOLE_POOL,
    )
}


async def _rows(driver: Driver, statement: TextClause, params: dict) -> list:
    async with driver.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(_SQL[id(statement)], params)
        return await cursor.fetchall()
