"""The matching core's rules at their edges: eligibility, distance, ETA, score, order and the bounded pool."""

import math
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from matching import (
    JobSpec,
    MatchSettings,
    MemberSnapshot,
    WaveSpec,
    evaluate,
    exclusion_reasons,
    haversine_m,
    is_asap,
    score,
)

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
SITE = (48.8566, 2.3522)
SETTINGS = MatchSettings()
BOTH_TIERS = WaveSpec(tiers=frozenset({"preferred", "approved"}), radius_km=50)
METRES_PER_DEGREE = 6_371_008.8 * math.pi / 180


def north_of_site(metres: float) -> tuple[float, float]:
    """A point `metres` due north of the job site (along a meridian the great-circle distance is exact)."""
    return SITE[0] + metres / METRES_PER_DEGREE, SITE[1]


def job(
    start_in: timedelta = timedelta(days=1),
    hours: float = 3,
    skills: frozenset[str] = frozenset(),
    credentials: frozenset[str] = frozenset(),
) -> JobSpec:
    start = NOW + start_in
    return JobSpec(
        job_id=uuid.UUID(int=999),
        skills=skills,
        lat=SITE[0],
        lon=SITE[1],
        window_start=start,
        window_end=start + timedelta(hours=hours),
        required_credentials=credentials,
    )


ASAP = timedelta(minutes=30)


def member(
    n: int = 1, *, at_m: float = 1000, live_at_m: float | None = None, age_s: int = 60, **fields
) -> MemberSnapshot:
    """An eligible member `at_m` metres north of the site (home base), live `live_at_m` north (default: home)."""
    home = north_of_site(at_m)
    live = north_of_site(at_m if live_at_m is None else live_at_m)
    values = {
        "technician_id": uuid.UUID(int=n),
        "tier": "approved",
        "active": True,
        "skills": frozenset(),
        "service_radius_km": 100.0,
        "home_lat": home[0],
        "home_lon": home[1],
        "on_duty": True,
        "location_lat": live[0],
        "location_lon": live[1],
        "location_recorded_at": NOW - timedelta(seconds=age_s),
        "speed_mps": None,
    }
    values.update(fields)
    return MemberSnapshot(**values)


def reasons_for(m: MemberSnapshot, j: JobSpec, wave: WaveSpec = BOTH_TIERS) -> list[str]:
    """Why `evaluate` leaves the member out ([] when it ranks them instead)."""
    result = evaluate(j, wave, [m], NOW, explain=True)
    assert len(result.candidates) + len(result.excluded) == 1
    return result.excluded[0].reasons if result.excluded else []


def is_eligible(m: MemberSnapshot, j: JobSpec, wave: WaveSpec = BOTH_TIERS) -> bool:
    return reasons_for(m, j, wave) == []


def ids(result) -> list[int]:
    return [c.technician_id.int for c in result.candidates]


# --- ASAP ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start_in", "asap"),
    [
        (timedelta(hours=-1), True),  # already started
        (timedelta(0), True),
        (timedelta(hours=2) - timedelta(seconds=1), True),
        (timedelta(hours=2), False),  # exactly 2 h ahead is not ASAP
        (timedelta(days=3), False),
    ],
)
def test_asap_is_a_window_starting_less_than_two_hours_from_now(start_in, asap):
    assert is_asap(job(start_in), NOW, SETTINGS) is asap
    off_duty_without_location = member(on_duty=False, location_lat=None, location_lon=None, location_recorded_at=None)
    expected = ["off_duty", "stale_location"] if asap else []
    assert reasons_for(off_duty_without_location, job(start_in)) == expected


# --- each reason at its edge --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "fresh"),
    [
        (timedelta(minutes=10) - timedelta(microseconds=1), True),
        (timedelta(minutes=10), True),  # exactly 10 min old is still fresh (the module's doc)
        (timedelta(minutes=10) + timedelta(microseconds=1), False),
        (timedelta(minutes=10, seconds=1), False),
    ],
)
def test_location_exactly_ten_minutes_old_is_fresh_a_moment_more_is_stale(age, fresh):
    m = member(location_recorded_at=NOW - age)
    expected = [] if fresh else ["stale_location"]
    assert reasons_for(m, job(ASAP)) == expected
    distance = 1000.0 if fresh else None  # a stale position has no distance
    assert exclusion_reasons(m, job(ASAP), BOTH_TIERS, NOW, SETTINGS, distance) == expected


@pytest.mark.parametrize(("age_s", "fresh"), [(299, True), (300, True), (300.000001, False)])
def test_the_freshness_edge_follows_the_setting(age_s, fresh):
    five_minutes = MatchSettings(fresh_location_s=300)
    m = member(location_recorded_at=NOW - timedelta(seconds=age_s))
    result = evaluate(job(ASAP), BOTH_TIERS, [m], NOW, settings=five_minutes, explain=True)
    assert (len(result.candidates), [e.reasons for e in result.excluded]) == (
        (1, []) if fresh else (0, [["stale_location"]])
    )


@pytest.mark.parametrize("missing", ["location_lat", "location_lon", "location_recorded_at"])
def test_a_partly_known_location_is_stale(missing):
    assert reasons_for(member(**{missing: None}), job(ASAP)) == ["stale_location"]


def test_off_duty_only_matters_for_asap_jobs():
    assert reasons_for(member(on_duty=False), job(ASAP)) == ["off_duty"]
    assert is_eligible(member(on_duty=False, age_s=86_400), job())


def test_asap_distance_is_from_the_live_position_later_distance_from_home():
    far_home_near_now = member(at_m=300_000, live_at_m=2_000)
    (candidate,) = evaluate(job(ASAP), BOTH_TIERS, [far_home_near_now], NOW).candidates
    assert candidate.distance_m == pytest.approx(2_000, abs=0.1)
    assert reasons_for(far_home_near_now, job()) == ["out_of_radius"]


def test_no_radius_check_without_a_usable_live_position():
    stale_and_far = member(live_at_m=900_000, age_s=601)
    assert reasons_for(stale_and_far, job(ASAP)) == ["stale_location"]


@pytest.mark.parametrize(
    ("wave_km", "service_km", "at_m", "inside"),
    [
        (50, 100, 49_999, True),
        (50, 100, 50_001, False),  # the wave's radius binds
        (50, 20, 19_999, True),
        (50, 20, 20_001, False),  # the member's service radius binds
    ],
)
def test_radius_is_the_smaller_of_wave_and_service_radius(wave_km, service_km, at_m, inside):
    wave = WaveSpec(tiers=BOTH_TIERS.tiers, radius_km=wave_km)
    m = member(at_m=at_m, service_radius_km=service_km)
    assert reasons_for(m, job(), wave) == ([] if inside else ["out_of_radius"])


def test_distance_exactly_at_the_radius_is_inside():
    m = member()
    assert exclusion_reasons(m, job(), BOTH_TIERS, NOW, SETTINGS, 50_000.0) == []
    assert exclusion_reasons(m, job(), BOTH_TIERS, NOW, SETTINGS, 50_000.001) == ["out_of_radius"]
    assert exclusion_reasons(m, job(), BOTH_TIERS, NOW, SETTINGS, None) == []


@pytest.mark.parametrize(
    ("busy_from", "busy_to", "busy"),
    [
        (timedelta(hours=-2), timedelta(0), False),  # ends as the job starts
        (timedelta(hours=3), timedelta(hours=5), False),  # starts as the job ends
        (timedelta(hours=-2), timedelta(seconds=1), True),
        (timedelta(hours=3) - timedelta(seconds=1), timedelta(hours=5), True),
        (timedelta(hours=1), timedelta(hours=2), True),  # inside
        (timedelta(hours=-1), timedelta(hours=4), True),  # around
    ],
)
def test_busy_windows_overlap_half_open(busy_from, busy_to, busy):
    j = job(hours=3)
    m = member(
        busy_windows=(
            (j.window_start + timedelta(hours=10), j.window_start + timedelta(hours=11)),
            (j.window_start + busy_from, j.window_start + busy_to),
        )
    )
    assert reasons_for(m, j) == (["busy"] if busy else [])


def test_one_reason_per_missing_skill_sorted():
    # Enough skills that a set's own order is unlikely to look sorted by chance.
    j = job(skills=frozenset({"pos", "network", "hvac", "cabling", "alarm", "printer"}))
    assert reasons_for(member(skills=frozenset({"network", "cctv"})), j) == [
        "missing_skill:alarm",
        "missing_skill:cabling",
        "missing_skill:hvac",
        "missing_skill:pos",
        "missing_skill:printer",
    ]
    assert is_eligible(member(skills=j.skills | {"cctv"}), j)


def test_tier_inactive_and_already_offered():
    preferred_only = WaveSpec(tiers=frozenset({"preferred"}), radius_km=50)
    assert reasons_for(member(tier="approved"), job(), preferred_only) == ["tier"]
    assert is_eligible(member(tier="preferred"), job(), preferred_only)
    assert reasons_for(member(active=False), job()) == ["inactive"]
    assert reasons_for(member(already_offered=True), job()) == ["already_offered"]


def test_all_reasons_are_collected_in_the_documented_order():
    j = job(ASAP, skills=frozenset({"pos", "hvac"}), credentials=frozenset({"nda", "background_check"}))
    everything_wrong = member(
        active=False,
        on_duty=False,
        age_s=3600,
        busy_windows=((j.window_start, j.window_end),),
        already_offered=True,
        credentials={"nda": ("pending", None)},
    )
    preferred_only = WaveSpec(tiers=frozenset({"preferred"}), radius_km=50)
    assert reasons_for(everything_wrong, j, preferred_only) == [
        "inactive",
        "tier",
        "off_duty",
        "stale_location",
        "missing_skill:hvac",
        "missing_skill:pos",
        "busy",
        "already_offered",
        "credential_missing:background_check",
        "credential_not_valid:nda",
    ]
    later = job(skills=frozenset({"pos"}))
    far = member(
        at_m=80_000, active=False, busy_windows=((later.window_start, later.window_end),), already_offered=True
    )
    assert exclusion_reasons(far, later, preferred_only, NOW, SETTINGS, 80_000.0) == [
        "inactive",
        "tier",
        "missing_skill:pos",
        "out_of_radius",
        "busy",
        "already_offered",
    ]


# --- credentials --------------------------------------------------------------------------------------


def test_a_credential_expiring_exactly_as_the_window_ends_is_in_time_a_second_earlier_is_expired():
    j = job(hours=3, credentials=frozenset({"insurance_liability"}))
    in_time = member(credentials={"insurance_liability": ("valid", j.window_end)})
    assert is_eligible(in_time, j)
    one_second_short = member(credentials={"insurance_liability": ("valid", j.window_end - timedelta(seconds=1))})
    assert reasons_for(one_second_short, j) == ["credential_expired:insurance_liability"]
    # Valid when the work starts is not enough: it must last the whole window.
    mid_window = member(credentials={"insurance_liability": ("valid", j.window_start + timedelta(hours=1))})
    assert reasons_for(mid_window, j) == ["credential_expired:insurance_liability"]
    assert is_eligible(member(credentials={"insurance_liability": ("valid", None)}), j)  # never expires


@pytest.mark.parametrize(
    ("held", "reason"),
    [
        (None, "credential_missing:nda"),
        (("pending", None), "credential_not_valid:nda"),
        (("failed", None), "credential_not_valid:nda"),
        # Not valid comes first: a failed check that would also have expired is reported as not valid.
        (("failed", NOW - timedelta(days=1)), "credential_not_valid:nda"),
        (("valid", NOW - timedelta(days=1)), "credential_expired:nda"),
        (("valid", NOW + timedelta(days=400)), None),
    ],
)
def test_each_required_credential_must_be_held_valid_and_unexpired(held, reason):
    m = member(credentials={} if held is None else {"nda": held})
    assert reasons_for(m, job(credentials=frozenset({"nda"}))) == ([] if reason is None else [reason])
    assert is_eligible(m, job())  # a job that requires nothing does not look


def test_one_reason_per_credential_sorted_by_kind_and_unrequired_ones_ignored():
    j = job(credentials=frozenset({"nda", "cert:forklift", "background_check", "drug_screen", "cert:epa-608"}))
    m = member(
        credentials={
            "nda": ("valid", j.window_end - timedelta(hours=1)),
            "drug_screen": ("valid", None),  # in good standing: no reason
            "cert:epa-608": ("pending", None),
            "insurance_liability": ("failed", None),  # not required
        }
    )
    assert reasons_for(m, j) == [
        "credential_missing:background_check",
        "credential_not_valid:cert:epa-608",
        "credential_missing:cert:forklift",
        "credential_expired:nda",
    ]


# --- distance, ETA, score -----------------------------------------------------------------------------


def test_haversine_on_the_mean_earth_radius():
    assert haversine_m(0, 0, 1, 0) == pytest.approx(111_195.08, abs=0.01)
    assert haversine_m(0, 179.5, 0, -179.5) == pytest.approx(111_195.08, abs=0.01)  # across the antimeridian
    assert haversine_m(10, 20, -10, -160) == pytest.approx(math.pi * 6_371_008.8)  # antipodes
    assert haversine_m(*SITE, *SITE) == 0
    paris_london = haversine_m(*SITE, 51.5074, -0.1278)
    assert paris_london == pytest.approx(343_500, rel=0.001)  # the usual 343.5 km
    assert paris_london == haversine_m(51.5074, -0.1278, *SITE)


@pytest.mark.parametrize(
    ("speed", "eta"),
    [
        (None, 1560),  # 10 km × 1.3 at 30 km/h
        (0.99, 1560),  # not moving
        (1.0, 13000),
        (10.0, 1300),
    ],
)
def test_eta_uses_recent_speed_only_when_moving(speed, eta):
    assert SETTINGS.eta.seconds(10_000, speed) == eta


def test_eta_of_a_later_job_ignores_the_recent_speed():
    fast = member(at_m=10_000, speed_mps=10.0)
    assert evaluate(job(ASAP), BOTH_TIERS, [fast], NOW).candidates[0].eta_s == 1300
    assert evaluate(job(), BOTH_TIERS, [fast], NOW).candidates[0].eta_s == 1560


@pytest.mark.parametrize(
    ("fields", "eta_s", "expected"),
    [
        ({"tier": "preferred", "rating": 5.0, "reliability": 1.0}, 0, 1.0),
        ({"tier": "approved", "rating": 1.0, "reliability": 0.0}, 3600, 0.0),
        ({"tier": "approved", "rating": 1.0, "reliability": 0.0}, 99_999, 0.0),
        ({"tier": "approved"}, 1800, 0.45),  # unrated and without history count as halfway
        ({"tier": "preferred", "rating": 4.0, "reliability": 0.9}, 900, 0.375 + 0.15 + 0.18 + 0.1),
    ],
)
def test_score_is_the_documented_weighted_sum(fields, eta_s, expected):
    value, components = score(member(**fields), eta_s, SETTINGS)
    assert value == pytest.approx(expected, abs=1e-9)
    assert set(components) == {"proximity", "rating", "reliability", "tier"}
    assert round(sum(components.values()), 6) == value


def test_components_are_the_contributions_and_add_up_to_the_score():
    m = member(at_m=7_000, tier="preferred", rating=4.3, reliability=0.77)
    (candidate,) = evaluate(job(), BOTH_TIERS, [m], NOW).candidates
    assert candidate.eta_s == round(7_000 * 1.3 / (30 / 3.6))
    assert candidate.components == {
        "proximity": round(0.5 * (1 - candidate.eta_s / 3600), 6),
        "rating": round(0.2 * 3.3 / 4, 6),
        "reliability": round(0.2 * 0.77, 6),
        "tier": 0.1,
    }
    assert round(sum(candidate.components.values()), 6) == candidate.score
    assert candidate.warnings == []


def test_settings_refuse_weights_that_break_the_zero_to_one_score():
    with pytest.raises(ValueError):
        MatchSettings(weight_tier=0.2)
    with pytest.raises(ValueError):
        MatchSettings(weight_proximity=0.8, weight_tier=-0.2)


# --- order, pool, limit, explain ----------------------------------------------------------------------


def test_higher_score_beats_nearer():
    near_unrated = member(1, at_m=1_000)
    far_star = member(2, at_m=10_000, tier="preferred", rating=5.0, reliability=1.0)
    result = evaluate(job(), BOTH_TIERS, [near_unrated, far_star], NOW)
    assert ids(result) == [2, 1]
    assert [c.rank for c in result.candidates] == [1, 2]
    assert result.candidates[0].score > result.candidates[1].score


def test_equal_scores_go_nearest_first_then_by_id():
    # Beyond an hour away proximity is 0, so these all score the same.
    members = [member(5, at_m=45_000), member(3, at_m=46_000), member(4, at_m=45_000), member(2, at_m=46_000)]
    assert ids(evaluate(job(), BOTH_TIERS, members, NOW)) == [4, 5, 2, 3]
    assert ids(evaluate(job(), BOTH_TIERS, list(reversed(members)), NOW)) == [4, 5, 2, 3]


def test_ids_order_as_uuids_which_is_their_string_order():
    low = uuid.UUID("0fffffff-ffff-4fff-bfff-ffffffffffff")
    high = uuid.UUID("a0000000-0000-4000-8000-000000000000")
    members = [member(technician_id=high), member(technician_id=low)]
    assert [c.technician_id for c in evaluate(job(), BOTH_TIERS, members, NOW).candidates] == [low, high]


def test_scores_are_rounded_before_sorting():
    # Without rounding, the second member's extra 1e-9 of rating would put it first despite being farther.
    nearer = member(1, at_m=10_000.0, rating=4.2)
    farther_by_noise = member(2, at_m=10_000.1, rating=4.2 + 1e-9)
    result = evaluate(job(), BOTH_TIERS, [farther_by_noise, nearer], NOW)
    assert ids(result) == [1, 2]
    assert result.candidates[0].score == result.candidates[1].score


def test_only_the_pool_size_nearest_eligible_members_are_ranked():
    settings = MatchSettings(pool_size=2)
    members = [
        member(5, at_m=1_000),
        member(2, at_m=2_000),
        member(1, at_m=3_000, tier="preferred", rating=5.0, reliability=1.0),  # best, but third nearest
        member(4, at_m=500, active=False),  # nearer but ineligible: does not take a place in the pool
    ]
    assert ids(evaluate(job(), BOTH_TIERS, members, NOW, settings=settings)) == [5, 2]
    assert ids(evaluate(job(), BOTH_TIERS, members, NOW)) == [1, 5, 2]


def test_pool_ties_at_its_edge_go_to_the_lower_id():
    members = [member(7, at_m=1_000), member(6, at_m=1_000)]
    assert ids(evaluate(job(), BOTH_TIERS, members, NOW, settings=MatchSettings(pool_size=1))) == [6]


def test_limit_returns_the_top_of_the_ranking():
    members = [member(n, at_m=1_000 * n) for n in range(1, 6)]
    assert ids(evaluate(job(), BOTH_TIERS, members, NOW, limit=2)) == [1, 2]
    assert [c.rank for c in evaluate(job(), BOTH_TIERS, members, NOW, limit=3).candidates] == [1, 2, 3]
    assert evaluate(job(), BOTH_TIERS, members, NOW, limit=0).candidates == []
    with pytest.raises(ValueError):
        evaluate(job(), BOTH_TIERS, members, NOW, limit=-1)


def test_explain_lists_every_ineligible_member_by_id_and_only_with_explain():
    members = [
        member(9, active=False),
        member(1),
        member(3, already_offered=True),
        member(2, at_m=90_000),
        member(4, at_m=2_000),  # eligible, but beyond the pool: neither a candidate nor excluded
    ]
    plain = evaluate(job(), BOTH_TIERS, members, NOW, settings=MatchSettings(pool_size=1))
    assert plain.excluded == []
    explained = evaluate(job(), BOTH_TIERS, members, NOW, settings=MatchSettings(pool_size=1), explain=True)
    assert ids(explained) == [1]
    assert [(e.technician_id.int, e.reasons) for e in explained.excluded] == [
        (2, ["out_of_radius"]),
        (3, ["already_offered"]),
        (9, ["inactive"]),
    ]


def test_precomputed_distances_replace_haversine():
    j = job()
    members = [member(1, at_m=10_000), member(2, at_m=20_000), member(3, at_m=30_000)]
    result = evaluate(j, BOTH_TIERS, members, NOW, distances={uuid.UUID(int=1): 60_000.0, uuid.UUID(int=2): 1_000.0})
    assert ids(result) == [2, 3]  # member 1 is out of radius by the given distance; member 3 falls back
    assert [c.distance_m for c in result.candidates] == [1_000.0, pytest.approx(30_000, abs=0.1)]
    assert result.candidates[0].eta_s == round(1_000 * 1.3 / (30 / 3.6))


def test_precomputed_distance_is_ignored_without_a_usable_live_position():
    stale = member(1, age_s=601)
    result = evaluate(job(ASAP), BOTH_TIERS, [stale], NOW, explain=True, distances={uuid.UUID(int=1): 1.0})
    assert result.excluded[0].reasons == ["stale_location"]


def packages_loaded_by(imports: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after running `imports`."""
    code = f"{imports}; import sys; print(' '.join({{m.split('.')[0] for m in sys.modules}}))"
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(run.stdout.split())


def test_matching_never_imports_the_application():
    every_module = (
        "import importlib, pkgutil, matching; "
        "[importlib.import_module(f'matching.{m.name}') for m in pkgutil.iter_modules(matching.__path__)]"
    )
    loaded = packages_loaded_by(every_module)
    assert "matching" in loaded
    assert not loaded & {"backend", "litestar"}


def test_the_rules_need_no_database():
    loaded = packages_loaded_by("import matching.candidates")
    assert not loaded & {"backend", "litestar", "sqlalchemy", "geoalchemy2", "psycopg"}
