"""The great-circle ETA: distance × detour at the technician's own speed when moving, else the city's;
one model for the candidates' `eta_s` and the tracking link's; and the router chosen by configuration."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from backend.jobs.onsite import geofence
from backend.settings import SettingsError, load_settings
from backend.tracking.eta import GreatCircleRouter, OsrmRouter, Point, great_circle_m, open_router
from matching import EtaModel, JobSpec, MatchSettings, MemberSnapshot, WaveSpec, evaluate

BERLIN = Point(52.5200, 13.4050)
PARIS = Point(48.8566, 2.3522)


def test_great_circle_distances() -> None:
    assert great_circle_m(BERLIN, BERLIN) == 0
    # One degree of latitude on the mean-radius sphere is 111.195 km.
    assert great_circle_m(Point(0, 0), Point(1, 0)) == pytest.approx(111_195, abs=1)
    # Across the equator and the antimeridian alike.
    assert great_circle_m(Point(0, 179.5), Point(0, -179.5)) == pytest.approx(111_195, abs=1)
    assert great_circle_m(Point(-0.5, 10), Point(0.5, 10)) == pytest.approx(111_195, abs=1)
    # Berlin to Paris is about 878 km as the crow flies, the same either way.
    assert great_circle_m(BERLIN, PARIS) == pytest.approx(877_500, rel=0.002)
    assert great_circle_m(PARIS, BERLIN) == pytest.approx(great_circle_m(BERLIN, PARIS))
    # Antipodes: half the circumference, without a domain error from rounding.
    assert great_circle_m(Point(0, 0), Point(0, 180)) == pytest.approx(20_015_115, rel=1e-6)


async def test_a_moving_technician_is_expected_at_their_own_speed_over_the_detoured_distance() -> None:
    router = GreatCircleRouter()
    origin, site = Point(0, 0), Point(0.1, 0)  # 11,119.5 m

    estimate = await router.eta(origin, site, 15.0)

    assert estimate.distance_m == pytest.approx(11_119.5 * 1.3, rel=1e-4)
    assert estimate.duration_s == pytest.approx(11_119.5 * 1.3 / 15.0, rel=1e-4)  # ~964 s


@pytest.mark.parametrize("speed", [None, 0.0, 0.99])
async def test_standing_still_or_unknown_speed_uses_the_city_default_of_30_kmh(speed: float | None) -> None:
    router = GreatCircleRouter()
    origin, site = Point(0, 0), Point(0.1, 0)

    estimate = await router.eta(origin, site, speed)

    assert estimate.duration_s == pytest.approx(11_119.5 * 1.3 / (30 / 3.6), rel=1e-4)  # ~1735 s


async def test_detour_city_speed_and_moving_threshold_are_configurable() -> None:
    router = GreatCircleRouter(EtaModel(detour_factor=1.5, city_speed_kmh=18.0, moving_speed_mps=3.0))
    origin, site = Point(0, 0), Point(0.1, 0)

    assert (await router.eta(origin, site, 2.9)).duration_s == pytest.approx(11_119.5 * 1.5 / 5.0, rel=1e-4)
    assert (await router.eta(origin, site, 3.0)).duration_s == pytest.approx(11_119.5 * 1.5 / 3.0, rel=1e-4)


async def test_arriving_takes_no_time() -> None:
    estimate = await GreatCircleRouter().eta(BERLIN, BERLIN, None)
    assert (estimate.distance_m, estimate.duration_s) == (0, 0)


@pytest.mark.parametrize("model", [EtaModel(), EtaModel(detour_factor=1.5, city_speed_kmh=18.0, moving_speed_mps=3.0)])
@pytest.mark.parametrize("speed", [None, 0.0, 2.9, 3.0, 12.0])
async def test_a_candidates_eta_is_the_one_the_customer_is_shown_for_the_same_trip(
    model: EtaModel, speed: float | None
) -> None:
    now = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
    origin, site = Point(52.53, 13.40), Point(52.50, 13.42)
    member = MemberSnapshot(
        technician_id=uuid.UUID(int=1),
        tier="approved",
        active=True,
        skills=frozenset(),
        service_radius_km=50.0,
        home_lat=origin.lat,
        home_lon=origin.lon,
        on_duty=True,
        location_lat=origin.lat,
        location_lon=origin.lon,
        location_recorded_at=now,
        speed_mps=speed,
    )
    asap = JobSpec(
        job_id=uuid.UUID(int=9),
        skills=frozenset(),
        lat=site.lat,
        lon=site.lon,
        window_start=now,
        window_end=now + timedelta(hours=2),
    )
    wave = WaveSpec(tiers=frozenset({"approved"}), radius_km=50)

    [candidate] = evaluate(asap, wave, [member], now, settings=MatchSettings(eta=model)).candidates
    shown = await GreatCircleRouter(model).eta(origin, site, speed)

    assert candidate.eta_s == round(shown.duration_s)


@pytest.mark.parametrize(
    ("speed", "eta"),
    [
        (None, 1560),  # 10 km × 1.3 at 30 km/h
        (0.99, 1560),  # not moving
        (1.0, 13000),
        (10.0, 1300),
    ],
)
def test_the_model_in_whole_seconds(speed: float | None, eta: int) -> None:
    assert EtaModel().seconds(10_000, speed) == eta


@pytest.mark.parametrize("field", ["detour_factor", "city_speed_kmh", "moving_speed_mps"])
def test_a_model_with_a_figure_that_is_not_positive_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EtaModel(**{field: 0.0})


def test_geofence_is_the_larger_of_150_m_and_the_fix_accuracy() -> None:
    site = Point(0, 0)
    at_149 = Point(149 / 111_195, 0)
    at_151 = Point(151 / 111_195, 0)
    assert geofence(site, at_149, 10)[0] == "verified"
    assert geofence(site, at_151, 10)[0] == "outside"
    assert geofence(site, at_151, 200) == ("verified", pytest.approx(151, abs=0.1), 200)


async def test_the_router_is_chosen_by_configuration() -> None:
    settings = load_settings({"TRUCKROLL_ETA_DETOUR_FACTOR": "1.5", "TRUCKROLL_ETA_CITY_SPEED_KMH": "18"})
    async with open_router(settings.tracking) as router:
        assert isinstance(router, GreatCircleRouter)
        assert router.model == settings.tracking.eta == EtaModel(detour_factor=1.5, city_speed_kmh=18.0)
        assert router.model.speed_mps(None) == pytest.approx(5.0)

    settings = load_settings({"TRUCKROLL_ROUTER": "osrm", "TRUCKROLL_OSRM_URL": "http://osrm.internal:5000/"})
    async with open_router(settings.tracking) as router:
        assert isinstance(router, OsrmRouter)
        assert router.base_url == "http://osrm.internal:5000"
        assert router.client.timeout.read == 2.0
        assert isinstance(router.fallback, GreatCircleRouter)
        assert router.fallback.model == settings.tracking.eta
    assert router.client.is_closed


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"TRUCKROLL_ROUTER": "osrm"}, "TRUCKROLL_OSRM_URL"),
        ({"TRUCKROLL_ROUTER": "valhalla"}, "TRUCKROLL_ROUTER"),
        ({"TRUCKROLL_ROUTER": "osrm", "TRUCKROLL_OSRM_URL": "osrm.internal"}, "TRUCKROLL_OSRM_URL"),
        ({"TRUCKROLL_ETA_DETOUR_FACTOR": "0.5"}, "TRUCKROLL_ETA_DETOUR_FACTOR"),
        ({"TRUCKROLL_ETA_CITY_SPEED_KMH": "fast"}, "TRUCKROLL_ETA_CITY_SPEED_KMH"),
        ({"TRUCKROLL_PING_RETENTION_DAYS": "0"}, "TRUCKROLL_PING_RETENTION_DAYS"),
        ({"TRUCKROLL_TRACKING_RATE_LIMIT": "-5"}, "TRUCKROLL_TRACKING_RATE_LIMIT"),
    ],
)
def test_a_bad_tracking_variable_is_named(environ: dict, variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ)


def test_tracking_defaults() -> None:
    tracking = load_settings({}).tracking
    assert tracking.router == "greatcircle"
    assert (tracking.eta.detour_factor, tracking.eta.city_speed_kmh, tracking.eta.moving_speed_mps) == (1.3, 30.0, 1.0)
    assert (tracking.rate_limit_per_minute, tracking.ping_retention_days) == (60, 30)
    overridden = load_settings({"TRUCKROLL_TRACKING_RATE_LIMIT": "120", "TRUCKROLL_PING_RETENTION_DAYS": "7"}).tracking
    assert (overridden.rate_limit_per_minute, overridden.ping_retention_days) == (120, 7)
