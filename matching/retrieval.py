"""The PostGIS side of matching: fetch the pool members `evaluate` needs, without scanning the pool.

The nearest-neighbour walk comes first (`ORDER BY position <-> job LIMIT k` on the GiST index), and the
eligibility filters are applied to its result: a `WHERE ST_DWithin(...)` next to the KNN makes the planner
choose a bitmap scan that is two orders of magnitude slower (DESIGN.md). When the `k` nearest positions
hold fewer than `pool_size` eligible members but do not reach past the radius yet, `k` grows and the
walk is repeated, so the result is exactly the `pool_size` nearest eligible members (the contract
described in `matching.candidates`). The index orders by distance alone, so members sharing a place (a
depot, say) may be cut at the walk's edge in any order: when the last member kept stands at the edge, the
walk is widened too, as the pure core breaks such ties by id.

Distances are measured on the sphere (`<->` on geography, and `ST_Distance(a, b, false)`): the same great circle, on
the same mean Earth radius, as `matching.candidates.haversine_m`, so the walk, the filters and the pure
core agree to the millimetre.

Credentials are checked in the same filter, for walked rows only: a member must hold each of the job's
required kinds (`JobSpec.required_credentials`) with status `valid` and no expiry before the window ends.
The snapshot carries the member's records of those kinds, so that the pure core reaches the same verdict
(and `explain` can say which credential is missing, not valid or expired).

Live positions (`technicians.location`) serve ASAP jobs; home bases (`pool_memberships.home`) serve
later ones. Both columns have GiST indexes. Only table and column names are known here: the module
imports no application code.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import TextClause, text

from matching.candidates import JobSpec, MemberSnapshot, WaveSpec
from matching.curation import bayesian_rating, reliability

_BUSY = """
    EXISTS (
        SELECT 1 FROM jobs j
        WHERE j.technician_id = {who} AND j.id <> :job_id
          AND j.status IN ('assigned', 'en_route', 'on_site')
          AND j.window_start < :window_end AND j.window_end > :window_start
    )
"""
_OFFERED = "EXISTS (SELECT 1 FROM offers o WHERE o.job_id = :job_id AND o.technician_id = {who})"
# Holds every required credential in good standing: one probe of the credentials' primary key per walked
# row, and none at all when the job requires nothing.
_CREDENTIALED = """
    (cardinality(CAST(:credentials AS text[])) = 0 OR (
        SELECT count(*) FROM credentials c
        WHERE c.org_id = :org_id AND c.technician_id = {who} AND c.kind = ANY(CAST(:credentials AS text[]))
          AND c.status = 'valid' AND (c.expires_at IS NULL OR c.expires_at >= :window_end)
    ) = cardinality(CAST(:credentials AS text[])))
"""
# The member's records of the required kinds, for the snapshot (parallel arrays, ordered by kind).
_CREDENTIALS_OF = """
    CROSS JOIN LATERAL (
        SELECT array_agg(c.kind ORDER BY c.kind) AS credential_kinds,
               array_agg(c.status ORDER BY c.kind) AS credential_statuses,
               array_agg(c.expires_at ORDER BY c.kind) AS credential_expiries
        FROM credentials c
        WHERE c.org_id = :org_id AND c.technician_id = {who} AND c.kind = ANY(CAST(:credentials AS text[]))
    ) cr
"""

# The membership and availability rules of `matching.candidates`, applied to the walked rows `w`.
_ELIGIBLE = f"""
    w.active AND w.tier = ANY(:tiers) AND w.skills @> CAST(:skills AS text[])
    AND w.distance_m <= LEAST(:radius_km, w.service_radius_km) * 1000
    AND NOT {_BUSY.format(who="w.technician_id")} AND NOT {_OFFERED.format(who="w.technician_id")}
    AND {_CREDENTIALED.format(who="w.technician_id")}
"""

# What the ranking reads of a member besides distance: the rating and reliability counters.
_CURATION = """m.rating_count, m.rating_sum, m.offers_answered, m.offers_accepted, m.assignments, m.backouts,
    m.check_ins, m.on_time_check_ins, m.completions"""

_SNAPSHOT = """
    e.technician_id, e.tier, e.active, e.skills, e.service_radius_km,
    e.rating_count, e.rating_sum, e.offers_answered, e.offers_accepted, e.assignments, e.backouts,
    e.check_ins, e.on_time_check_ins, e.completions,
    ST_Y(e.home::geometry) AS home_lat, ST_X(e.home::geometry) AS home_lon,
    t.on_duty, ST_Y(t.location::geometry) AS location_lat, ST_X(t.location::geometry) AS location_lon,
    t.location_recorded_at, t.speed_mps, e.distance_m,
    cr.credential_kinds, cr.credential_statuses, cr.credential_expiries
"""

# ASAP: walk the live positions of on-duty technicians (a partial GiST index holds exactly those; any
# organisation's technicians share it), then keep this organisation's eligible members.
NEAREST_LIVE = text(
    f"""
WITH near AS (
    SELECT t.id, t.location_recorded_at, t.location <-> CAST(:point AS geography) AS distance_m
    FROM technicians t
    WHERE t.on_duty AND t.location IS NOT NULL
    ORDER BY t.location <-> CAST(:point AS geography)
    LIMIT :k
),
walk AS (SELECT count(*) AS walked, max(distance_m) AS reach FROM near),
eligible AS (
    SELECT w.* FROM (
        SELECT m.*, near.distance_m
        FROM near
        -- A lookup by primary key for each walked position (LIMIT keeps the planner from turning the
        -- walk's few thousand rows into a scan of the whole pool).
        CROSS JOIN LATERAL (
            SELECT m.technician_id, m.tier, m.active, m.skills, m.service_radius_km, m.home, {_CURATION}
            FROM pool_memberships m WHERE m.org_id = :org_id AND m.technician_id = near.id LIMIT 1
        ) m
        WHERE near.location_recorded_at >= :fresh_since
    ) w
    WHERE {_ELIGIBLE}
    ORDER BY w.distance_m, w.technician_id
    LIMIT :pool_size
)
SELECT walk.walked, walk.reach, {_SNAPSHOT}
FROM walk LEFT JOIN eligible e ON true LEFT JOIN technicians t ON t.id = e.technician_id
{_CREDENTIALS_OF.format(who="e.technician_id")}
"""
)

# Later jobs: walk this organisation's home bases.
NEAREST_HOME = text(
    f"""
WITH near AS (
    SELECT m.technician_id, m.tier, m.active, m.skills, m.service_radius_km, m.home, {_CURATION},
           m.home <-> CAST(:point AS geography) AS distance_m
    FROM pool_memberships m
    WHERE m.org_id = :org_id
    ORDER BY m.home <-> CAST(:point AS geography)
    LIMIT :k
),
walk AS (SELECT count(*) AS walked, max(distance_m) AS reach FROM near),
eligible AS (
    SELECT w.* FROM near w
    WHERE {_ELIGIBLE}
    ORDER BY w.distance_m, w.technician_id
    LIMIT :pool_size
)
SELECT walk.walked, walk.reach, {_SNAPSHOT}
FROM walk LEFT JOIN eligible e ON true LEFT JOIN technicians t ON t.id = e.technician_id
{_CREDENTIALS_OF.format(who="e.technician_id")}
"""
)

# When the walk finds too few, the job's skills may be rare in the pool: then it is cheaper (and exact) to
# measure every member who has them. This counts them, up to a cap, through the GIN index on skills.
SKILLED_COUNT = text(
    """
SELECT count(*) AS skilled FROM (
    SELECT 1 FROM pool_memberships m
    WHERE m.org_id = :org_id AND m.skills @> CAST(:skills AS text[]) AND m.active
    LIMIT :cap
) s
"""
)

SKILLED_NEAREST = text(
    f"""
WITH eligible AS (
    SELECT w.* FROM (
        SELECT m.technician_id, m.tier, m.active, m.skills, m.service_radius_km, m.home, {_CURATION},
               ST_Distance(CASE WHEN :asap THEN t.location ELSE m.home END, CAST(:point AS geography), false)
                   AS distance_m
        FROM pool_memberships m JOIN technicians t ON t.id = m.technician_id
        WHERE m.org_id = :org_id AND m.skills @> CAST(:skills AS text[])
          AND (NOT :asap OR (t.on_duty AND t.location IS NOT NULL AND t.location_recorded_at >= :fresh_since))
    ) w
    WHERE {_ELIGIBLE}
    ORDER BY w.distance_m, w.technician_id
    LIMIT :pool_size
)
SELECT 0 AS walked, NULL::float8 AS reach, {_SNAPSHOT}
FROM eligible e JOIN technicians t ON t.id = e.technician_id
{_CREDENTIALS_OF.format(who="e.technician_id")}
"""
)

# `explain`: every member of the pool, with what makes them busy or already offered and their credentials.
WHOLE_POOL = text(
    f"""
SELECT m.technician_id, m.tier, m.active, m.skills, m.service_radius_km, {_CURATION},
    ST_Y(m.home::geometry) AS home_lat, ST_X(m.home::geometry) AS home_lon,
    t.on_duty, ST_Y(t.location::geometry) AS location_lat, ST_X(t.location::geometry) AS location_lon,
    t.location_recorded_at, t.speed_mps,
    ST_Distance(CASE WHEN :asap THEN t.location ELSE m.home END, CAST(:point AS geography), false) AS distance_m,
    ARRAY(
        SELECT ARRAY[j.window_start, j.window_end] FROM jobs j
        WHERE j.technician_id = m.technician_id AND j.id <> :job_id
          AND j.status IN ('assigned', 'en_route', 'on_site')
          AND j.window_start < :window_end AND j.window_end > :window_start
    ) AS busy_windows,
    {_OFFERED.format(who="m.technician_id")} AS already_offered,
    cr.credential_kinds, cr.credential_statuses, cr.credential_expiries
FROM pool_memberships m JOIN technicians t ON t.id = m.technician_id
{_CREDENTIALS_OF.format(who="m.technician_id")}
WHERE m.org_id = :org_id
"""
)


def point_wkt(lat: float, lon: float) -> str:
    return f"SRID=4326;POINT({lon!r} {lat!r})"


def query_params(
    org_id: uuid.UUID, job: JobSpec, wave: WaveSpec, *, fresh_since: datetime, pool_size: int, k: int
) -> dict:
    return {
        "org_id": org_id,
        "job_id": job.job_id,
        "point": point_wkt(job.lat, job.lon),
        "tiers": sorted(wave.tiers),
        "skills": sorted(job.skills),
        "credentials": sorted(job.required_credentials),
        "radius_km": wave.radius_km,
        "window_start": job.window_start,
        "window_end": job.window_end,
        "fresh_since": fresh_since,
        "pool_size": pool_size,
        "k": k,
    }


def needs_wider_walk(rows: Sequence, *, k: int, pool_size: int, radius_km: float) -> bool:
    """True when the walk stopped before finding `pool_size` eligible members or leaving the radius, or
    when the last member it kept stands as far as it went (others just as far, with lower ids, may lie
    beyond the walk)."""
    walked, reach = rows[0].walked, rows[0].reach
    if walked < k or reach is None:
        return False
    found = [r for r in rows if r.technician_id is not None]
    if len(found) < pool_size:
        return reach <= radius_km * 1000
    return max(r.distance_m for r in found) >= reach


def snapshot(row) -> MemberSnapshot:
    return MemberSnapshot(
        technician_id=row.technician_id,
        tier=row.tier,
        active=row.active,
        skills=frozenset(row.skills),
        service_radius_km=row.service_radius_km,
        home_lat=row.home_lat,
        home_lon=row.home_lon,
        on_duty=row.on_duty,
        location_lat=row.location_lat,
        location_lon=row.location_lon,
        location_recorded_at=row.location_recorded_at,
        speed_mps=row.speed_mps,
        busy_windows=tuple((w[0], w[1]) for w in getattr(row, "busy_windows", None) or ()),
        already_offered=bool(getattr(row, "already_offered", False)),
        credentials=_credentials(row),
        rating=bayesian_rating(row.rating_count, row.rating_sum),
        reliability=reliability(
            offers_answered=row.offers_answered,
            offers_accepted=row.offers_accepted,
            assignments=row.assignments,
            backouts=row.backouts,
            check_ins=row.check_ins,
            on_time_check_ins=row.on_time_check_ins,
            completions=row.completions,
        ).score,
    )


def _credentials(row) -> dict[str, tuple[str, datetime | None]]:
    # A member with no record of any required kind gets NULL aggregates.
    kinds, statuses, expiries = row.credential_kinds or (), row.credential_statuses or (), row.credential_expiries or ()
    return {kind: (status, expires_at) for kind, status, expires_at in zip(kinds, statuses, expiries, strict=True)}


def nearest_query(asap: bool) -> TextClause:
    return NEAREST_LIVE if asap else NEAREST_HOME
