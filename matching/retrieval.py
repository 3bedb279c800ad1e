"""The PostGIS side of matching: fetch the pool members `evaluate` needs, without scanning the pool.

The nearest-neighbour walk comes first (`ORDER BY position <-> job LIMIT k` on the GiST index), and the
eligibility filters are applied to its result: a `WHERE ST_DWithin(...)` next to the KNN makes the planner
choose a bitmap scan that is two orders of magnitude slower (DESIGN.md). The walk's positions are read in
the index's order, and reading stops once it holds the members it wants (`_walk`). When the `k` nearest
positions hold fewer eligible members than that but do not reach past the radius yet, `k` grows and the
walk is repeated, so the result is exactly the nearest eligible members (the contract described in
`matching.candidates`). The index orders by distance alone, so members sharing a place (a depot, say) may
be cut at the walk's edge in any order: those as far as the last one kept are kept too, and when more may
stand beyond the walk's end, the walk is widened, as the pure core breaks such ties by id.

Distances are measured on the sphere (`<->` on geography, and `ST_Distance(a, b, false)`): the same great circle, on
the same mean Earth radius, as `matching.candidates.haversine_m`, so the walk, the filters and the pure
core agree to the millimetre.

The organisation's rules come with the walk, in the same statement (a matching call is one round trip in
the common case): which credential kinds the job requires — the organisation's general set and each of the
job's skills' (`org_requirements`) — and its engagement policy (`engagement_policies`). Every row returned
carries them (`rules_of`). Credentials are checked in the same filter, for walked rows only: a member must
hold each required kind with status `valid` and no expiry before the window ends. The snapshot carries the
member's records of those kinds, so that the pure core reaches the same verdict (and `explain` can say which
credential is missing, not valid or expired). Engagement limits are not part of the walk's filter: with a
policy, the figures (`matching.engagement`) are worked out in the same statement for the members it keeps,
and in block mode it keeps a few more members than the pool holds, as some may be over a limit
(`matching.search` walks on when more are).

Live positions (`technicians.location`) serve ASAP jobs; home bases (`pool_memberships.home`) serve
later ones. Both columns have GiST indexes. Only table and column names are known here: the module
imports no application code.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import TextClause, text

from matching.candidates import EngagementPolicy, JobSpec, MemberSnapshot, WaveSpec
from matching.curation import COUNTERS, bayesian_rating, reliability_score
from matching.engagement import FIGURES_OF, Engagement
from matching.lifecycle import ACTIVE, sql_list


def _statement(sql: str) -> TextClause:
    # One line: psycopg caches the conversion of a query to PostgreSQL's format only up to 4 KB of text.
    return text(re.sub(r"\s+", " ", sql).strip())


# The job's required credential kinds (sorted, distinct) and the organisation's engagement policy.
_RULES = """
rules AS (
    SELECT ARRAY(
               SELECT DISTINCT kind FROM (
                   SELECT unnest(r.credentials) AS kind
                   UNION ALL
                   SELECT jsonb_array_elements_text(r.by_skill -> s.skill)
                   FROM unnest(CAST(:skills AS text[])) AS s(skill)
               ) k
               ORDER BY kind
           ) AS required_credentials,
           p.mode AS policy_mode, p.max_hours_per_week, p.max_consecutive_weeks, p.max_tenure_months
    FROM (SELECT 1) AS one
    LEFT JOIN org_requirements r ON r.org_id = :org_id
    LEFT JOIN engagement_policies p ON p.org_id = :org_id
)"""
_RULES_COLUMNS = "rules.required_credentials, rules.policy_mode, rules.max_hours_per_week, rules.max_consecutive_weeks, rules.max_tenure_months"
# Policy column -> the kind of limit it sets (`engagement_limit:<kind>`, the alert's kind).
POLICY_LIMITS = {
    "max_hours_per_week": "hours_per_week",
    "max_consecutive_weeks": "consecutive_weeks",
    "max_tenure_months": "tenure",
}

# Another active job of {who} whose window overlaps the job's (windows that only touch do not overlap).
_OVERLAPPING = f"""
    j.technician_id = {{who}} AND j.id <> :job_id
    AND j.status IN ({sql_list(ACTIVE)})
    AND j.window_start < :window_end AND j.window_end > :window_start
"""
_BUSY = f"EXISTS (SELECT 1 FROM jobs j WHERE {_OVERLAPPING})"
BUSY = _statement(f"SELECT {_BUSY.format(who='CAST(:technician_id AS uuid)')}")
"""Whether the technician holds another active job overlapping the window (params: technician_id, job_id,
window_start, window_end): the rule of the walk, asked of one technician when an offer is accepted."""
_OFFERED = "EXISTS (SELECT 1 FROM offers o WHERE o.job_id = :job_id AND o.technician_id = {who})"
# The member's records of the required kinds, for the snapshot (parallel arrays, ordered by kind), and how
# many of them are in good standing: one probe of the credentials' primary key per walked row that the
# other rules let through, and none at all when the job requires nothing.
_CREDENTIALS_OF = """
    CROSS JOIN LATERAL (
        SELECT array_agg(c.kind ORDER BY c.kind) AS credential_kinds,
               array_agg(c.status ORDER BY c.kind) AS credential_statuses,
               array_agg(c.expires_at ORDER BY c.kind) AS credential_expiries,
               count(*) FILTER (WHERE c.status = 'valid' AND (c.expires_at IS NULL OR c.expires_at >= :window_end))
                   AS credentials_held
        FROM credentials c
        WHERE c.org_id = :org_id AND c.technician_id = {who} AND c.kind = ANY((SELECT required_credentials FROM rules)::text[])
          AND (SELECT cardinality(required_credentials) FROM rules) > 0
    ) cr
"""
_CREDENTIAL_COLUMNS = "cr.credential_kinds, cr.credential_statuses, cr.credential_expiries, cr.credentials_held"

# With an engagement policy, each member's engagement figures with the job added (`matching.engagement`);
# none are worked out without one.
_FIGURES = f"""
    LEFT JOIN LATERAL (
        SELECT f.* FROM {FIGURES_OF.format(who="{who}")} f
        WHERE rules.policy_mode IS NOT NULL AND {{who}} IS NOT NULL
        OFFSET 0 /* a subquery of its own, so that its condition is checked before its work */
    ) f ON true
"""
_FIGURES_COLUMNS = "f.hours_last_7d, f.consecutive_weeks, f.tenure_months, f.jobs_completed"
# How many eligible members a walk keeps: `pool_size`, and in block mode `spare` more, as some of them may
# be over an engagement limit (which only their figures tell, worked out for those kept).
_WANTED = "(SELECT :pool_size + CASE WHEN policy_mode = 'block' THEN :spare ELSE 0 END FROM rules)"

# The membership and availability rules of `matching.candidates`, applied to the walked rows `w`.
_ELIGIBLE = f"""
    w.active AND w.tier = ANY(:tiers) AND w.skills @> CAST(:skills AS text[])
    AND w.distance_m <= LEAST(:radius_km, w.service_radius_km) * 1000
    AND NOT {_BUSY.format(who="w.technician_id")} AND NOT {_OFFERED.format(who="w.technician_id")}
    AND (SELECT cardinality(required_credentials) FROM rules) IN (0, w.credentials_held)
"""


# What the ranking reads of a member besides distance: the rating and reliability counters.
def _curation(alias: str) -> str:
    return ", ".join(f"{alias}.{column}" for column in ("rating_count", "rating_sum", *COUNTERS))


_CURATION = _curation("m")

_SNAPSHOT = f"""
    e.technician_id, e.tier, e.active, e.skills, e.service_radius_km,
    {_curation("e")},
    ST_Y(e.home::geometry) AS home_lat, ST_X(e.home::geometry) AS home_lon,
    {{t}}.on_duty, ST_Y({{t}}.location::geometry) AS location_lat, ST_X({{t}}.location::geometry) AS location_lon,
    {{t}}.location_recorded_at, {{t}}.speed_mps, e.distance_m,
    e.credential_kinds, e.credential_statuses, e.credential_expiries, {_FIGURES_COLUMNS}
"""


# A walk: the positions in `near` are read in the KNN order of the GiST index, and kept while eligible until
# `wanted` are found (with those as far as the last one: ties, broken by id in the pure core). Nothing is
# sorted, so only as much of the walk is read as it takes: `k` bounds it. Each kept member carries its
# position in the walk (`n`) and the distance of the next position (`next_distance`), which say whether
# members just as far as the last one kept may lie beyond the walk. When it finds too few, `walked` and
# `reach` (how many positions there were, and the farthest) say whether a longer walk may find more; they
# are counted only then.
def _walk(positions: str, members: str, t: str) -> TextClause:
    """A walk over `positions` (distance_m, in KNN order, up to :k); `members` selects the member rows from
    them (`{near}`: the positions, numbered); `t`: where the technicians' columns come from."""
    near = f"""(
        SELECT p.*, row_number() OVER walk AS n, lead(p.distance_m) OVER walk AS next_distance
        FROM ({positions}) p
        WINDOW walk AS (ORDER BY p.distance_m)
    ) near"""
    technicians = "LEFT JOIN technicians t ON t.id = e.technician_id" if t == "t" else ""
    return _statement(
        f"""
WITH {_RULES},
kept AS (
    SELECT w.* FROM ({members.format(near=near)}) w
    WHERE {_ELIGIBLE}
    ORDER BY w.distance_m
    FETCH FIRST {_WANTED} ROWS WITH TIES
),
walk AS (
    SELECT count(*) AS walked, max(distance_m) AS reach FROM ({positions}) p
    WHERE (SELECT count(*) FROM kept) < {_WANTED}
)
SELECT walk.walked, walk.reach, {_WANTED} AS wanted, e.n, e.next_distance, {_RULES_COLUMNS}, {_SNAPSHOT.format(t=t)}
FROM walk CROSS JOIN rules LEFT JOIN kept e ON true {technicians}
{_FIGURES.format(who="e.technician_id")}
"""
    )


# ASAP: walk the live positions of on-duty technicians (a partial GiST index holds exactly those; any
# organisation's technicians share it), then keep this organisation's eligible members. The walk reads each
# technician's row anyway, so what the snapshot needs of it comes along. The membership is a lookup by
# primary key for each walked position (LIMIT keeps the planner from turning the walk into a scan of the
# whole pool).
NEAREST_LIVE = _walk(
    """
    SELECT t.id, t.on_duty, t.location, t.location_recorded_at, t.speed_mps,
           t.location <-> CAST(:point AS geography) AS distance_m
    FROM technicians t
    WHERE t.on_duty AND t.location IS NOT NULL
    ORDER BY t.location <-> CAST(:point AS geography)
    LIMIT :k
    """,
    f"""
    SELECT m.*, near.distance_m, near.on_duty, near.location, near.location_recorded_at, near.speed_mps,
           near.n, near.next_distance, {_CREDENTIAL_COLUMNS}
    FROM {{near}}
    CROSS JOIN LATERAL (
        SELECT m.technician_id, m.tier, m.active, m.skills, m.service_radius_km, m.home, {_CURATION}
        FROM pool_memberships m WHERE m.org_id = :org_id AND m.technician_id = near.id LIMIT 1
    ) m
    {_CREDENTIALS_OF.format(who="m.technician_id")}
    WHERE near.location_recorded_at >= :fresh_since
    """,
    "e",
)

# Later jobs: walk this organisation's home bases.
NEAREST_HOME = _walk(
    f"""
    SELECT m.technician_id, m.tier, m.active, m.skills, m.service_radius_km, m.home, {_CURATION},
           m.home <-> CAST(:point AS geography) AS distance_m
    FROM pool_memberships m
    WHERE m.org_id = :org_id
    ORDER BY m.home <-> CAST(:point AS geography)
    LIMIT :k
    """,
    f"SELECT near.*, {_CREDENTIAL_COLUMNS} FROM {{near}} {_CREDENTIALS_OF.format(who='near.technician_id')}",
    "t",
)

# When the walk finds too few, the job's skills may be rare in the pool: then it is cheaper (and exact) to
# measure every member who has them. This counts them, up to a cap, through the GIN index on skills.
SKILLED_COUNT = _statement(
    """
SELECT count(*) AS skilled FROM (
    SELECT 1 FROM pool_memberships m
    WHERE m.org_id = :org_id AND m.skills @> CAST(:skills AS text[]) AND m.active
    LIMIT :cap
) s
"""
)

SKILLED_NEAREST = _statement(
    f"""
WITH {_RULES},
eligible AS (
    SELECT w.* FROM (
        SELECT m.technician_id, m.tier, m.active, m.skills, m.service_radius_km, m.home, {_CURATION},
               ST_Distance(CASE WHEN :asap THEN t.location ELSE m.home END, CAST(:point AS geography), false)
                   AS distance_m,
               {_CREDENTIAL_COLUMNS}
        FROM pool_memberships m JOIN technicians t ON t.id = m.technician_id
        {_CREDENTIALS_OF.format(who="m.technician_id")}
        WHERE m.org_id = :org_id AND m.skills @> CAST(:skills AS text[])
          AND (NOT :asap OR (t.on_duty AND t.location IS NOT NULL AND t.location_recorded_at >= :fresh_since))
    ) w
    WHERE {_ELIGIBLE}
    ORDER BY w.distance_m, w.technician_id
    LIMIT {_WANTED}
)
SELECT 0 AS walked, NULL::float8 AS reach, {_WANTED} AS wanted, {_RULES_COLUMNS}, {_SNAPSHOT.format(t="t")}
FROM eligible e JOIN technicians t ON t.id = e.technician_id CROSS JOIN rules
{_FIGURES.format(who="e.technician_id")}
"""
)

# `explain`: every member of the pool (or only the one a dispatcher names), with what makes them busy or
# already offered and their credentials.
WHOLE_POOL = _statement(
    f"""
WITH {_RULES}
SELECT {_RULES_COLUMNS}, m.technician_id, m.tier, m.active, m.skills, m.service_radius_km, {_CURATION},
    ST_Y(m.home::geometry) AS home_lat, ST_X(m.home::geometry) AS home_lon,
    t.on_duty, ST_Y(t.location::geometry) AS location_lat, ST_X(t.location::geometry) AS location_lon,
    t.location_recorded_at, t.speed_mps,
    ST_Distance(CASE WHEN :asap THEN t.location ELSE m.home END, CAST(:point AS geography), false) AS distance_m,
    ARRAY(
        SELECT ARRAY[j.window_start, j.window_end] FROM jobs j WHERE {_OVERLAPPING.format(who="m.technician_id")}
    ) AS busy_windows,
    {_OFFERED.format(who="m.technician_id")} AS already_offered,
    cr.credential_kinds, cr.credential_statuses, cr.credential_expiries, {_FIGURES_COLUMNS}
FROM pool_memberships m JOIN technicians t ON t.id = m.technician_id CROSS JOIN rules
{_CREDENTIALS_OF.format(who="m.technician_id")}
{_FIGURES.format(who="m.technician_id")}
WHERE m.org_id = :org_id AND (CAST(:only AS uuid) IS NULL OR m.technician_id = CAST(:only AS uuid))
"""
)


def point_wkt(lat: float, lon: float) -> str:
    return f"SRID=4326;POINT({lon!r} {lat!r})"


def query_params(
    org_id: uuid.UUID,
    job: JobSpec,
    wave: WaveSpec,
    *,
    now: datetime,
    fresh_since: datetime,
    job_hours: float,
    pool_size: int,
    k: int,
    spare: int = 0,
) -> dict:
    return {
        "org_id": org_id,
        "job_id": job.job_id,
        "point": point_wkt(job.lat, job.lon),
        "tiers": sorted(wave.tiers),
        "skills": sorted(job.skills),
        "radius_km": wave.radius_km,
        "window_start": job.window_start,
        "window_end": job.window_end,
        "fresh_since": fresh_since,
        "pool_size": pool_size,
        "spare": spare,
        "k": k,
        # For the engagement figures: the job is a piece of work of `job_hours` from its window's start.
        "now": now,
        "job_start": job.window_start,
        "job_hours": job_hours,
    }


def needs_wider_walk(rows: Sequence, *, k: int, radius_km: float) -> bool:
    """True when a longer walk may find what this one did not: it found fewer eligible members than it
    wanted, walked all `k` positions and stayed inside the radius; or members just as far as the last one
    kept may stand beyond it (the next position is as far, or there is none past the `k`-th)."""
    found = [r for r in rows if r.technician_id is not None]
    if len(found) < rows[0].wanted:
        walked, reach = rows[0].walked, rows[0].reach
        return walked >= k and reach is not None and reach <= radius_km * 1000
    last = max(found, key=lambda r: r.n)
    if last.next_distance is None:
        return last.n >= k
    return last.next_distance <= last.distance_m


def rules_of(row) -> tuple[frozenset[str], EngagementPolicy | None]:
    """The job's required credential kinds and the organisation's engagement policy (None when it sets no
    limit), from any returned row."""
    limits = {
        kind: float(value) for column, kind in POLICY_LIMITS.items() if (value := getattr(row, column)) is not None
    }
    policy = EngagementPolicy(limits=limits, block=row.policy_mode == "block") if row.policy_mode and limits else None
    return frozenset(row.required_credentials), policy


def snapshots(rows: Sequence, *, explained: bool = False) -> list[MemberSnapshot]:
    """The members in a query's rows, with their engagement figures when the organisation has a policy;
    `explained`: WHOLE_POOL rows, which also say what makes a member busy or already offered (a walk has
    filtered those out already).

    Columns are read by position, looked up once per result: by name, on up to a few hundred rows of ~35
    columns, they cost a tenth of a matching call."""
    if not rows:
        return []
    at = {name: i for i, name in enumerate(rows[0]._fields)}
    (technician_id, tier, active, skills, radius, home_lat, home_lon, on_duty, lat, lon, recorded_at, speed) = (
        at[name]
        for name in (
            "technician_id",
            "tier",
            "active",
            "skills",
            "service_radius_km",
            "home_lat",
            "home_lon",
            "on_duty",
            "location_lat",
            "location_lon",
            "location_recorded_at",
            "speed_mps",
        )
    )
    rating_count, rating_sum = at["rating_count"], at["rating_sum"]
    counters = [(name, at[name]) for name in COUNTERS]
    kinds, statuses, expiries = at["credential_kinds"], at["credential_statuses"], at["credential_expiries"]
    busy, offered = (at["busy_windows"], at["already_offered"]) if explained else (None, None)
    figures = [at[name] for name in ("hours_last_7d", "consecutive_weeks", "tenure_months", "jobs_completed")]
    out = []
    for row in rows:
        engaged = row[figures[0]] is not None
        out.append(
            MemberSnapshot(
                technician_id=row[technician_id],
                tier=row[tier],
                active=row[active],
                skills=frozenset(row[skills]),
                service_radius_km=row[radius],
                home_lat=row[home_lat],
                home_lon=row[home_lon],
                on_duty=row[on_duty],
                location_lat=row[lat],
                location_lon=row[lon],
                location_recorded_at=row[recorded_at],
                speed_mps=row[speed],
                busy_windows=tuple((w[0], w[1]) for w in row[busy] or ()) if explained else (),
                already_offered=bool(row[offered]) if explained else False,
                # A member with no record of any required kind gets NULL aggregates.
                credentials={
                    kind: (status, expires_at)
                    for kind, status, expires_at in zip(
                        row[kinds] or (), row[statuses] or (), row[expiries] or (), strict=True
                    )
                },
                rating=bayesian_rating(row[rating_count], row[rating_sum]),
                reliability=reliability_score(**{name: row[i] for name, i in counters}),
                engagement=Engagement.of(*(row[i] for i in figures)).by_limit() if engaged else {},
            )
        )
    return out


def nearest_query(asap: bool) -> TextClause:
    return NEAREST_LIVE if asap else NEAREST_HOME
