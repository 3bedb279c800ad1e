"""`evaluate` against a deliberately naive re-statement of the rules, over random pools, jobs and waves.

The reference below shares no code with `matching`: it re-derives the distance (in the atan2 form), reads the
rules straight from API.md and the module docstring, and sorts with plain `sorted` on string ids.
"""

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from matching import JobSpec, MatchSettings, MemberSnapshot, WaveSpec, evaluate

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
SKILLS = ["hvac", "network", "pos", "printer"]
CREDENTIALS = ["background_check", "cert:forklift", "nda"]
TIERS = ["preferred", "approved"]


# --- the reference ------------------------------------------------------------------------------------


def great_circle_m(lat1, lon1, lat2, lon2):
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.atan2(math.sqrt(h), math.sqrt(1 - h))


def naive_evaluate(job, wave, members, now, pool_size, limit, distances):
    asap = (job.window_start - now).total_seconds() < 2 * 3600
    eligible, excluded = [], []
    for m in members:
        located = None not in (m.location_lat, m.location_lon, m.location_recorded_at)
        fresh = located and (now - m.location_recorded_at).total_seconds() <= 10 * 60
        distance = None
        if not asap:
            distance = great_circle_m(m.home_lat, m.home_lon, job.lat, job.lon)
        elif fresh:
            distance = great_circle_m(m.location_lat, m.location_lon, job.lat, job.lon)
        if distance is not None and m.technician_id in distances:
            distance = distances[m.technician_id]

        reasons = []
        if not m.active:
            reasons.append("inactive")
        if m.tier not in wave.tiers:
            reasons.append("tier")
        if asap and not m.on_duty:
            reasons.append("off_duty")
        if asap and not fresh:
            reasons.append("stale_location")
        for skill in sorted(job.skills):
            if skill not in m.skills:
                reasons.append("missing_skill:" + skill)
        if distance is not None and distance > 1000 * min(wave.radius_km, m.service_radius_km):
            reasons.append("out_of_radius")
        for start, end in m.busy_windows:
            if max(start, job.window_start) < min(end, job.window_end):
                reasons.append("busy")
                break
        if m.already_offered:
            reasons.append("already_offered")
        for kind in sorted(job.required_credentials):
            if kind not in m.credentials:
                reasons.append("credential_missing:" + kind)
                continue
            status, expires_at = m.credentials[kind]
            if status in ("pending", "failed"):
                reasons.append("credential_not_valid:" + kind)
            elif expires_at is not None and (job.window_end - expires_at).total_seconds() > 0:
                reasons.append("credential_expired:" + kind)

        if reasons:
            excluded.append((str(m.technician_id), reasons))
        else:
            eligible.append((distance, str(m.technician_id), m))

    pool = sorted(eligible, key=lambda row: (row[0], row[1]))[:pool_size]
    ranked = []
    for distance, technician_id, m in pool:
        moving = asap and m.speed_mps is not None and m.speed_mps >= 1.0
        eta = round(distance * 1.3 / (m.speed_mps if moving else 30 / 3.6))
        parts = {
            "proximity": round(0.5 * (1 - min(eta / 3600, 1)), 6),
            "rating": round(0.2 * (0.5 if m.rating is None else (m.rating - 1) / 4), 6),
            "reliability": round(0.2 * (0.5 if m.reliability is None else m.reliability), 6),
            "tier": round(0.1 if m.tier == "preferred" else 0.0, 6),
        }
        total = round(parts["proximity"] + parts["rating"] + parts["reliability"] + parts["tier"], 6)
        ranked.append({"id": technician_id, "score": total, "distance": distance, "eta": eta, "parts": parts})
    ranked.sort(key=lambda row: (-row["score"], row["distance"], row["id"]))
    return ranked[:limit], sorted(excluded)


# --- random pools, jobs and waves ---------------------------------------------------------------------
# Strategies are built once, here: building them inside the draw loop made generation the slow part.


def maybe(strategy):
    return st.none() | strategy


def mostly(value: bool):
    """True (or False) nine times in ten, so that enough members are eligible for ties and a full pool."""
    return st.integers(0, 9).map(lambda n: value if n else not value)


# Offsets in degrees from the job site (within ~100 km). A few fixed spots, the site itself among them,
# make exact distance ties, hence ties broken by id.
OFFSET = st.sampled_from([(0.0, 0.0), (0.05, 0.1), (-0.1, 0.02)]) | st.tuples(
    st.floats(-0.9, 0.9), st.floats(-1.2, 1.2)
)
# A credential's expiry, from the job window's end: at it (in time), a second before, well before, after.
CREDENTIAL = st.tuples(
    st.sampled_from(["valid", "valid", "valid", "pending", "failed"]),
    st.sampled_from([None, 0, -1, 1, -86_400 * 40]) | st.integers(-86_400, 86_400),
)
BUSY = st.tuples(
    st.sampled_from(["ends_at_start", "starts_at_end", "anywhere"]),
    st.integers(1, 4 * 3600),  # length
    st.integers(-24 * 3600, 24 * 3600),  # start, from the job's start, when anywhere
)
DRAFT = st.fixed_dictionaries(
    {
        "technician_id": st.uuids(),
        "tier": st.sampled_from(TIERS),
        "active": mostly(True),
        "has_job_skills": mostly(True),
        "skills": st.frozensets(st.sampled_from(SKILLS)),
        "service_radius_km": st.sampled_from([30.0, 80.0, 150.0]) | st.floats(1, 150),
        "home": OFFSET,
        "on_duty": mostly(True),
        "live": maybe(OFFSET),
        "age_s": st.sampled_from([0, 600, 601, -60, 3600]) | st.integers(0, 900),
        "speed_mps": maybe(st.sampled_from([0.0, 0.99, 1.0, 15.0]) | st.floats(0, 40)),
        "busy": st.lists(BUSY, max_size=2),
        "already_offered": mostly(False),
        # Mostly every kind held valid without expiry, with some records drawn on top.
        "good_standing": mostly(True),
        "credentials": st.dictionaries(st.sampled_from(CREDENTIALS), CREDENTIAL, max_size=2),
        "rating": maybe(st.sampled_from([1.0, 3.0, 4.5, 5.0]) | st.floats(1, 5)),
        "reliability": maybe(st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1)),
        # A twin of the member before: the same but for the id (a tie in score and distance), or also a metre
        # further north (mostly the same ETA, so a tie in score alone).
        "twin": st.sampled_from([None] * 6 + ["exact", "a metre away"]),
        # Some distances come "from PostGIS", a little off the sphere (also for members that have none).
        "distance_factor": maybe(st.floats(0.99, 1.01)),
    }
)
SCENARIO = st.tuples(
    # The pool comes first and its size is drawn first: either way round, most pools had under ten members.
    st.sampled_from(range(61)).flatmap(
        lambda n: st.lists(DRAFT, min_size=n, max_size=n, unique_by=lambda draft: draft["technician_id"])
    ),
    st.tuples(st.floats(-60, 60), st.floats(-180, 180)),  # anywhere but the poles, the antimeridian included
    st.sampled_from([-3600, 0, 7199, 7200, 7201, 86_400]) | st.integers(-3 * 3600, 6 * 3600),  # start from now
    st.integers(1800, 8 * 3600),  # window length
    st.frozensets(st.sampled_from(SKILLS), max_size=3),
    st.sampled_from([frozenset(TIERS), frozenset({"preferred"}), frozenset({"approved"}), frozenset(TIERS)]),
    st.sampled_from([20.0, 50.0, 150.0]) | st.floats(0.5, 150),
    st.frozensets(st.sampled_from(CREDENTIALS), max_size=3),  # required credentials
)


def build(scenario):
    drafts, (lat, lon), start_s, length_s, skills, tiers, radius_km, required = scenario
    start = NOW + timedelta(seconds=start_s)
    job = JobSpec(
        job_id=uuid.UUID(int=0),
        skills=skills,
        lat=lat,
        lon=lon,
        window_start=start,
        window_end=start + timedelta(seconds=length_s),
        required_credentials=required,
    )
    wave = WaveSpec(tiers=tiers, radius_km=radius_km)

    def place(offset):
        return lat + offset[0], (lon + offset[1] + 180) % 360 - 180

    def busy_window(kind, length_s, begin_s):
        length = timedelta(seconds=length_s)
        if kind == "ends_at_start":
            return (job.window_start - length, job.window_start)
        if kind == "starts_at_end":
            return (job.window_end, job.window_end + length)
        begin = job.window_start + timedelta(seconds=begin_s)
        return (begin, begin + length)

    members, distances = [], {}
    for previous, d in zip([None, *drafts], drafts, strict=False):
        if d["twin"] == "exact" and previous is not None:
            d = {**previous, "technician_id": d["technician_id"]}
        elif d["twin"] == "a metre away" and previous is not None:
            d = {**previous, "technician_id": d["technician_id"], "distance_factor": None}
            d["home"] = (d["home"][0] + 1e-5, d["home"][1])
            d["live"] = None if d["live"] is None else (d["live"][0] + 1e-5, d["live"][1])
        home = place(d["home"])
        live = None if d["live"] is None else place(d["live"])
        credentials = {kind: ("valid", None) for kind in CREDENTIALS} if d["good_standing"] else {}
        for kind, (status, expiry_s) in d["credentials"].items():
            expires_at = None if expiry_s is None else job.window_end + timedelta(seconds=expiry_s)
            credentials[kind] = (status, expires_at)
        members.append(
            MemberSnapshot(
                technician_id=d["technician_id"],
                tier=d["tier"],
                active=d["active"],
                skills=d["skills"] | (skills if d["has_job_skills"] else frozenset()),
                service_radius_km=d["service_radius_km"],
                home_lat=home[0],
                home_lon=home[1],
                on_duty=d["on_duty"],
                location_lat=None if live is None else live[0],
                location_lon=None if live is None else live[1],
                location_recorded_at=None if live is None else NOW - timedelta(seconds=d["age_s"]),
                speed_mps=d["speed_mps"],
                busy_windows=tuple(busy_window(*busy) for busy in d["busy"]),
                already_offered=d["already_offered"],
                credentials=credentials,
                rating=d["rating"],
                reliability=d["reliability"],
            )
        )
        if d["distance_factor"] is not None:
            distances[d["technician_id"]] = great_circle_m(*home, lat, lon) * d["distance_factor"]
    return job, wave, members, distances


def show_coverage(members, result, excluded, pool_size, limit):
    """What the examples exercised, for `pytest --hypothesis-show-statistics`."""
    eligible = len(members) - len(excluded)
    event(f"eligible: {'0' if not eligible else '1-5' if eligible <= 5 else '6+'}")
    event(f"pool cut: {eligible > pool_size}")
    event(f"limit cut: {min(eligible, pool_size) > limit}")
    scores = [c.score for c in result.candidates]
    places = [(c.score, c.distance_m) for c in result.candidates]
    event(f"score tie: {len(set(scores)) < len(scores)}")
    event(f"score and distance tie: {len(set(places)) < len(places)}")
    for reason in sorted({reason.split(":")[0] for _, reasons in excluded for reason in reasons}):
        event(reason)


def edge_draft(n: int, **fields) -> dict:
    """A member at the job site, eligible for any job of the examples below but for what `fields` change."""
    return {
        "technician_id": uuid.UUID(int=n),
        "tier": "preferred",
        "active": True,
        "has_job_skills": True,
        "skills": frozenset(),
        "service_radius_km": 30.0,
        "home": (0.0, 0.0),
        "on_duty": True,
        "live": (0.01, 0.0),
        "age_s": 0,
        "speed_mps": None,
        "busy": [],
        "already_offered": False,
        "good_standing": True,
        "credentials": {},
        "rating": None,
        "reliability": None,
        "twin": None,
        "distance_factor": None,
        **fields,
    }


# A live position exactly 10 min old is fresh (the module's doc, API.md); a microsecond or a second more is
# stale: members on both sides of the edge, for an ASAP job and for one exactly 2 h ahead (not ASAP, where
# freshness does not matter). Hypothesis reaches these edges only by chance.
FRESHNESS_EDGE = [edge_draft(n, age_s=age) for n, age in enumerate([599, 600, 600.000001, 601, 3600], 1)]


def edge_scenario(start_s: int):
    return build((FRESHNESS_EDGE, (48.85, 2.35), start_s, 3600, frozenset(), frozenset(TIERS), 50.0, frozenset()))


@settings(max_examples=150, deadline=None)
@example(scenario=edge_scenario(0), pool_size=25, limit=30, use_distances=False)
@example(scenario=edge_scenario(7199), pool_size=25, limit=30, use_distances=True)
@example(scenario=edge_scenario(7200), pool_size=25, limit=30, use_distances=False)
@given(
    scenario=SCENARIO.map(build),
    pool_size=st.integers(1, 25),
    limit=st.integers(0, 30),
    use_distances=st.booleans(),
)
def test_evaluate_matches_the_naive_reference(scenario, pool_size, limit, use_distances):
    job, wave, members, distances = scenario
    distances = distances if use_distances else {}
    result = evaluate(
        job,
        wave,
        members,
        NOW,
        settings=MatchSettings(pool_size=pool_size),
        limit=limit,
        explain=True,
        distances=distances or None,
    )
    expected, expected_excluded = naive_evaluate(job, wave, members, NOW, pool_size, limit, distances)
    show_coverage(members, result, expected_excluded, pool_size, limit)

    assert [str(c.technician_id) for c in result.candidates] == [row["id"] for row in expected]
    assert [c.rank for c in result.candidates] == list(range(1, len(expected) + 1))
    for candidate, row in zip(result.candidates, expected, strict=True):
        assert candidate.eta_s == row["eta"]
        assert candidate.score == pytest.approx(row["score"], abs=1e-9)
        assert candidate.distance_m == pytest.approx(row["distance"], abs=0.05 + 1e-6)
        assert candidate.components == pytest.approx(row["parts"], abs=1e-9)
        assert 0 <= candidate.score <= 1
        assert round(sum(candidate.components.values()), 6) == candidate.score
        assert candidate.warnings == []
    assert [(str(e.technician_id), e.reasons) for e in result.excluded] == expected_excluded

    # Without explain, the same candidates and no exclusions.
    plain = evaluate(
        job, wave, members, NOW, settings=MatchSettings(pool_size=pool_size), limit=limit, distances=distances or None
    )
    assert plain.candidates == result.candidates
    assert plain.excluded == []
