"""Who may be offered a job, and in which order: the pure part of the geo-matching core.

The database layer loads a snapshot of the pool (`MemberSnapshot`) and calls `evaluate`; nothing here
does I/O, so the same rules serve `GET /v1/jobs/{id}/candidates`, dispatch waves and direct assignment.

Where distance is measured from
    A job is *ASAP* when its window starts less than `asap_horizon_s` (2 h) after `now`, or has already
    started; a window starting exactly 2 h from now is not ASAP. For an ASAP job a member must be on duty
    with a live location at most `fresh_location_s` (10 min) old — exactly 10 min is still fresh — and the
    distance is measured from that live position. Without such a position (none, or a stale one) the member
    is excluded as `stale_location` and has no distance, so no radius check is made. For a later job the
    distance is measured from the member's home base, and duty and location do not matter.

Eligibility
    `exclusion_reasons` lists every reason a member is left out, in this fixed order: `inactive`, `tier`,
    `off_duty`, `stale_location`, `missing_skill:<skill>` (one per missing skill, sorted), `out_of_radius`
    (distance > min(wave radius, member's service radius)), `busy` (one of the member's other jobs overlaps
    the window; windows are half-open, so touching is not overlapping), `already_offered`, then one reason
    per credential the job requires that the member does not hold in good standing, sorted by kind:
    `credential_missing:<kind>` (no record), `credential_not_valid:<kind>` (pending or failed),
    `credential_expired:<kind>` (valid, but it expires before the window ends; expiring exactly at the
    window's end is in time). Credentials are the organisation's own records (`MemberSnapshot.credentials`);
    which kinds a job requires (the organisation's general set plus those of each of the job's skills) is
    decided by the caller (`JobSpec.required_credentials`).

Co-employment guardrails
    With an engagement policy on the job (`JobSpec.policy`), each member's engagement figures *including
    the new job* (`MemberSnapshot.engagement`: `hours_per_week`, `consecutive_weeks`, `tenure`; worked out by
    the database layer) are compared with the policy's limits; a figure strictly above its limit is over it
    (reaching the limit exactly is allowed). In `block` mode each limit passed is one more reason,
    `engagement_limit:<kind>` in that order, after the credential reasons; in `warn` mode the member stays
    eligible and the candidate carries `warnings: ["engagement_limit:<kind>", ...]`. Either way the figures
    over a limit are reported (`Candidate.over_limits`, `MatchResult.withheld`) for the compliance alerts.
    `withheld` lists the members left out by engagement limits alone who would otherwise have been in the
    candidate set: no further away than its farthest member (any of them, when the set is not full).

Distance and ETA
    Great-circle distance (haversine on the mean Earth radius). PostGIS geography measures on the WGS84
    spheroid, which differs by up to ~0.3 %; the database layer passes in `distances` the figures it ordered
    by, so that the pool it retrieved and the pool computed here are the same members. `Candidate.distance_m`
    is reported to the decimetre. The ETA is `settings.eta` (`matching.eta.EtaModel`: distance × 1.3 at the
    member's recent speed when moving, else 30 km/h) in whole seconds; the recent speed counts only when the
    distance is measured from a live position (an ASAP job): a later job's trip starts from home.

Score — a weighted sum in [0, 1] (weights are settings: non-negative, adding up to 1):
    proximity    0.5 × (1 − min(eta_s / proximity_horizon_s, 1))   an ETA of an hour or more counts 0
    rating       0.2 × (rating − 1) / 4                             value 0.5 when unrated
    reliability  0.2 × reliability                                  value 0.5 without history
    tier         0.1 × (1 if preferred else 0)
    (rating and reliability are clamped to 1..5 and 0..1 first.)
    Each contribution is rounded to 6 decimals and reported in `Candidate.components`; the score is their
    sum rounded to 6 decimals, so the components add up to the score and float noise cannot reorder ties.

Bounded retrieval — the contract the database layer mirrors
    The candidate set is the `pool_size` NEAREST ELIGIBLE members (by distance, ties by technician id),
    and only those are ranked by score: ordered by score descending, then distance ascending, then
    technician id ascending; `limit` of them are returned, ranked from 1. A member further away than the
    `pool_size`-th nearest eligible one is never a candidate, however well rated. This is what bounds the
    PostGIS query: it walks the KNN order (`ORDER BY position <-> job, id`), filters eligibility, and may stop
    once it holds `pool_size` eligible members (or passes the wave's radius); feeding `evaluate` that subset
    gives the same candidates as feeding it the whole pool. `explain` is the exception: it reports the
    members it is given, so it needs the whole pool. It lists the ineligible members only (ordered by id);
    an eligible member beyond the pool or below `limit` is in neither list.

Technician ids are ordered as UUIDs (their 128-bit value), which is also the order of their canonical
lower-case strings and PostgreSQL's `uuid` order.
"""

from __future__ import annotations

import heapq
import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import msgspec

from matching.eta import EtaModel

PREFERRED = "preferred"
EARTH_MEAN_RADIUS_M = 6_371_008.8


class MemberSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One pool member as the database sees them now."""

    technician_id: uuid.UUID
    tier: str  # "preferred" | "approved"
    active: bool
    skills: frozenset[str]  # lower-case
    service_radius_km: float
    home_lat: float
    home_lon: float
    on_duty: bool
    location_lat: float | None
    location_lon: float | None
    location_recorded_at: datetime | None
    speed_mps: float | None  # recent speed from pings
    busy_windows: tuple[tuple[datetime, datetime], ...] = ()  # the member's other active jobs
    already_offered: bool = False  # had an offer for this job already
    rating: float | None = None  # Bayesian average 1..5; None: unrated
    reliability: float | None = None  # 0..1; None: no history
    # kind -> (status, expires_at) of the credentials the organisation recorded; only the kinds the job
    # requires are consulted, so a caller may pass just those.
    credentials: Mapping[str, tuple[str, datetime | None]] = msgspec.field(default_factory=dict)
    # Engagement figures with the job being matched added (see EngagementPolicy); only read with a policy.
    engagement: Mapping[str, float] = msgspec.field(default_factory=dict)


ENGAGEMENT_LIMITS = ("hours_per_week", "consecutive_weeks", "tenure")


class EngagementPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """An organisation's co-employment limits: kind (one of ENGAGEMENT_LIMITS) -> the highest figure allowed."""

    limits: Mapping[str, float]
    block: bool  # False: warn


class OverLimit(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # one of ENGAGEMENT_LIMITS
    value: float  # the member's figure with the job
    limit: float


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    job_id: uuid.UUID
    skills: frozenset[str]  # lower-case
    lat: float
    lon: float
    window_start: datetime
    window_end: datetime
    required_credentials: frozenset[str] = frozenset()  # credential kinds a member must hold in good standing
    policy: EngagementPolicy | None = None


class WaveSpec(msgspec.Struct, frozen=True, kw_only=True):
    tiers: frozenset[str]
    radius_km: float


class MatchSettings(msgspec.Struct, frozen=True, kw_only=True):
    asap_horizon_s: int = 7200
    fresh_location_s: int = 600
    eta: EtaModel = EtaModel()
    pool_size: int = 100
    proximity_horizon_s: int = 3600
    weight_proximity: float = 0.5
    weight_rating: float = 0.2
    weight_reliability: float = 0.2
    weight_tier: float = 0.1

    def __post_init__(self) -> None:
        weights = (self.weight_proximity, self.weight_rating, self.weight_reliability, self.weight_tier)
        # The score is documented as lying in [0, 1]; other weights would silently break that promise.
        if min(weights) < 0 or not math.isclose(sum(weights), 1.0):
            raise ValueError("score weights must be non-negative and add up to 1")
        if self.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if self.proximity_horizon_s <= 0:
            raise ValueError("proximity_horizon_s must be positive")


DEFAULT_SETTINGS = MatchSettings()


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    technician_id: uuid.UUID
    rank: int
    score: float
    distance_m: float  # to the decimetre
    eta_s: int
    components: dict[str, float]  # contribution of each part of the score; they add up to it
    warnings: list[str] = msgspec.field(default_factory=list)
    over_limits: list[OverLimit] = msgspec.field(default_factory=list)  # in warn mode


class Excluded(msgspec.Struct, frozen=True, kw_only=True):
    technician_id: uuid.UUID
    reasons: list[str]
    over_limits: list[OverLimit] = msgspec.field(default_factory=list)  # with a policy, in either mode


class Withheld(msgspec.Struct, frozen=True, kw_only=True):
    """A member the job is not offered to because of engagement limits alone (block mode)."""

    technician_id: uuid.UUID
    distance_m: float
    over_limits: list[OverLimit]


class MatchResult(msgspec.Struct, frozen=True, kw_only=True):
    candidates: list[Candidate]
    excluded: list[Excluded]  # only with explain=True; ordered by technician id
    withheld: list[Withheld] = msgspec.field(default_factory=list)  # ordered by distance, then id


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres on a sphere of the Earth's mean radius."""
    phi1 = math.radians(lat1)
    phi2 = math.radians(lat2)
    a = (
        math.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_MEAN_RADIUS_M * math.asin(math.sqrt(min(a, 1.0)))


def is_asap(job: JobSpec, now: datetime, settings: MatchSettings = DEFAULT_SETTINGS) -> bool:
    return job.window_start - now < timedelta(seconds=settings.asap_horizon_s)


def exclusion_reasons(
    member: MemberSnapshot,
    job: JobSpec,
    wave: WaveSpec,
    now: datetime,
    settings: MatchSettings,
    distance_m: float | None,
) -> list[str]:
    """Every reason the member may not be offered the job, in the documented order; [] when eligible.

    `distance_m` is measured from the member's live position (ASAP) or home; None (no usable position)
    skips the radius check.
    """
    fresh = _has_fresh_location(member, now - timedelta(seconds=settings.fresh_location_s))
    return _exclusion_reasons(member, job, wave, is_asap(job, now, settings), fresh, distance_m)


# `evaluate` runs the rules below once per pool member: they take what is the same for the whole pool
# (ASAP or not, the freshness cutoff) precomputed, which keeps 1,000 members within a couple of milliseconds.


def _has_fresh_location(member: MemberSnapshot, fresh_since: datetime) -> bool:
    recorded_at = member.location_recorded_at
    return (
        recorded_at is not None
        and recorded_at >= fresh_since
        and member.location_lat is not None
        and member.location_lon is not None
    )


def _origin(member: MemberSnapshot, asap: bool, fresh_since: datetime) -> tuple[float, float] | None:
    if not asap:
        return member.home_lat, member.home_lon
    if _has_fresh_location(member, fresh_since):
        return member.location_lat, member.location_lon  # type: ignore[return-value]
    return None


def _exclusion_reasons(
    member: MemberSnapshot, job: JobSpec, wave: WaveSpec, asap: bool, fresh: bool, distance_m: float | None
) -> list[str]:
    reasons: list[str] = []
    if not member.active:
        reasons.append("inactive")
    if member.tier not in wave.tiers:
        reasons.append("tier")
    if asap:
        if not member.on_duty:
            reasons.append("off_duty")
        if not fresh:
            reasons.append("stale_location")
    if not job.skills <= member.skills:
        reasons.extend(f"missing_skill:{skill}" for skill in sorted(job.skills - member.skills))
    if distance_m is not None and distance_m > min(wave.radius_km, member.service_radius_km) * 1000:
        reasons.append("out_of_radius")
    if member.busy_windows and any(
        start < job.window_end and job.window_start < end for start, end in member.busy_windows
    ):
        reasons.append("busy")
    if member.already_offered:
        reasons.append("already_offered")
    if job.required_credentials:
        reasons.extend(_credential_reasons(member, job))
    if job.policy is not None and job.policy.block:
        reasons.extend(f"engagement_limit:{over.kind}" for over in over_limits(member.engagement, job.policy))
    return reasons


def over_limits(figures: Mapping[str, float], policy: EngagementPolicy) -> list[OverLimit]:
    """The policy's limits that a member's engagement figures (with the job) pass, in ENGAGEMENT_LIMITS order."""
    return [
        OverLimit(kind=kind, value=figures.get(kind, 0.0), limit=policy.limits[kind])
        for kind in ENGAGEMENT_LIMITS
        if kind in policy.limits and figures.get(kind, 0.0) > policy.limits[kind]
    ]


def _credential_reasons(member: MemberSnapshot, job: JobSpec) -> list[str]:
    reasons = []
    for kind in sorted(job.required_credentials):
        held = member.credentials.get(kind)
        if held is None:
            reasons.append(f"credential_missing:{kind}")
        elif held[0] != "valid":
            reasons.append(f"credential_not_valid:{kind}")
        elif held[1] is not None and held[1] < job.window_end:
            reasons.append(f"credential_expired:{kind}")
    return reasons


def score(
    member: MemberSnapshot, eta_s: int, settings: MatchSettings = DEFAULT_SETTINGS
) -> tuple[float, dict[str, float]]:
    """The member's score for a job reached in `eta_s`, and each component's contribution to it."""
    rating = 0.5 if member.rating is None else (min(max(member.rating, 1.0), 5.0) - 1.0) / 4.0
    reliability = 0.5 if member.reliability is None else min(max(member.reliability, 0.0), 1.0)
    components = {
        "proximity": round(settings.weight_proximity * (1.0 - min(eta_s / settings.proximity_horizon_s, 1.0)), 6),
        "rating": round(settings.weight_rating * rating, 6),
        "reliability": round(settings.weight_reliability * reliability, 6),
        "tier": round(settings.weight_tier * (1.0 if member.tier == PREFERRED else 0.0), 6),
    }
    return round(sum(components.values()), 6), components


def evaluate(
    job: JobSpec,
    wave: WaveSpec,
    members: Iterable[MemberSnapshot],
    now: datetime,
    *,
    settings: MatchSettings = DEFAULT_SETTINGS,
    limit: int = 10,
    explain: bool = False,
    distances: Mapping[uuid.UUID, float] | None = None,
) -> MatchResult:
    """The job's ranked candidates under `wave` (see the module docstring for the rules).

    `distances` (technician id -> metres from where the distance is measured) overrides the haversine distance, so the database
    layer can use PostGIS's own figures; it is ignored for members without a usable position.
    """
    if limit < 0:
        raise ValueError("limit must not be negative")
    asap = is_asap(job, now, settings)
    fresh_since = now - timedelta(seconds=settings.fresh_location_s)
    eligible: list[tuple[float, uuid.UUID, MemberSnapshot]] = []
    excluded: list[Excluded] = []
    limited: list[tuple[float, uuid.UUID, MemberSnapshot]] = []  # left out by engagement limits alone
    for member in members:
        position = _origin(member, asap, fresh_since)
        distance: float | None = None
        if position is not None:
            distance = distances.get(member.technician_id) if distances is not None else None
            if distance is None:
                distance = haversine_m(position[0], position[1], job.lat, job.lon)
        # On an ASAP job a known position is a fresh one; on a later job freshness is not asked.
        reasons = _exclusion_reasons(member, job, wave, asap, position is not None, distance)
        if reasons:
            if explain:
                over = over_limits(member.engagement, job.policy) if job.policy is not None else []
                excluded.append(Excluded(technician_id=member.technician_id, reasons=reasons, over_limits=over))
            if all(reason.startswith("engagement_limit:") for reason in reasons):
                limited.append((distance, member.technician_id, member))  # type: ignore[arg-type]
        else:
            eligible.append((distance, member.technician_id, member))  # type: ignore[arg-type]

    pool = heapq.nsmallest(settings.pool_size, eligible, key=lambda entry: (entry[0], entry[1]))
    ranked = []
    for distance, technician_id, member in pool:
        eta_s = settings.eta.seconds(distance, member.speed_mps if asap else None)
        member_score, components = score(member, eta_s, settings)
        ranked.append((member_score, distance, technician_id, eta_s, components, member))
    ranked.sort(key=lambda entry: (-entry[0], entry[1], entry[2]))

    warn = job.policy is not None and not job.policy.block
    candidates = []
    for rank, (member_score, distance, technician_id, eta_s, components, member) in enumerate(ranked[:limit], start=1):
        over = over_limits(member.engagement, job.policy) if warn else []  # type: ignore[arg-type]
        candidates.append(
            Candidate(
                technician_id=technician_id,
                rank=rank,
                score=member_score,
                distance_m=round(distance, 1),
                eta_s=eta_s,
                components=components,
                warnings=[f"engagement_limit:{o.kind}" for o in over],
                over_limits=over,
            )
        )
    excluded.sort(key=lambda entry: entry.technician_id.int)
    edge = (pool[-1][0], pool[-1][1]) if len(pool) >= settings.pool_size else None
    withheld = [
        Withheld(
            technician_id=technician_id,
            distance_m=round(distance, 1),
            over_limits=over_limits(member.engagement, job.policy),
        )  # type: ignore[arg-type]
        for distance, technician_id, member in sorted(limited, key=lambda entry: (entry[0], entry[1]))
        if edge is None or (distance, technician_id) <= edge
    ]
    return MatchResult(candidates=candidates, excluded=excluded, withheld=withheld)
