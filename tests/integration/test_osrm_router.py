"""OsrmRouter over real HTTP against a local fake OSRM (`/route/v1/driving/...`, OSRM's response shape),
its great-circle fallback when OSRM fails, is slow or is down, and the tracking link using it by configuration."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.settings import Settings, TrackingSettings
from backend.tracking.eta import GreatCircleRouter, OsrmRouter, Point
from tests.api.jobs_helpers import SITE, north, post_job, technician
from tests.helpers import new_org

ORIGIN = Point(52.5290, 13.4050)  # ~1 km north of the site
DESTINATION = Point(SITE["lat"], SITE["lon"])


def osrm_route(distance_m: float, duration_s: float) -> dict:
    """What OSRM's route service answers with `overview=false` (no geometry), one leg."""
    return {
        "code": "Ok",
        "routes": [
            {
                "legs": [
                    {"steps": [], "summary": "", "weight": duration_s, "duration": duration_s, "distance": distance_m}
                ],
                "weight_name": "routability",
                "weight": duration_s,
                "duration": duration_s,
                "distance": distance_m,
            }
        ],
        "waypoints": [
            {"hint": "aGludA==", "distance": 3.1, "name": "Karl-Liebknecht-Straße", "location": [13.405, 52.529]},
            {"hint": "aGludA==", "distance": 1.7, "name": "Alexanderplatz", "location": [13.405, 52.52]},
        ],
    }


class FakeOsrm:
    """OSRM's HTTP API on 127.0.0.1 (an ephemeral port); every request's path and query are recorded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.reply: tuple[int, str, bytes] = (200, "application/json", json.dumps(osrm_route(1500.0, 180.0)).encode())
        self.delay_s = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                fake.requests.append((url.path, parse_qs(url.query)))
                time.sleep(fake.delay_s)
                status, content_type, body = fake.reply
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def answer(self, status: int, body: dict | str) -> None:
        if isinstance(body, dict):
            self.reply = (status, "application/json", json.dumps(body).encode())
        else:
            self.reply = (status, "text/html", body.encode())

    def __enter__(self) -> FakeOsrm:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def osrm() -> Iterator[FakeOsrm]:
    with FakeOsrm() as server:
        yield server


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=0.5) as client:
        yield client


def great_circle(speed_mps: float | None):
    return GreatCircleRouter().estimate(ORIGIN, DESTINATION, speed_mps)


async def test_the_route_comes_from_osrm(osrm: FakeOsrm, http: httpx.AsyncClient) -> None:
    osrm.answer(200, osrm_route(1834.6, 247.3))

    estimate = await OsrmRouter(osrm.url + "/", http).eta(ORIGIN, DESTINATION, 12.0)

    assert (estimate.distance_m, estimate.duration_s) == (1834.6, 247.3)
    [(path, query)] = osrm.requests
    # OSRM wants lon,lat pairs.
    assert path == "/route/v1/driving/13.405000,52.529000;13.405000,52.520000"
    assert query == {"overview": ["false"]}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"code": "NoRoute", "message": "Impossible route between points"}),
        (400, {"code": "InvalidQuery", "message": "Query string malformed close to position 28"}),
        (200, {"code": "Ok", "routes": [], "waypoints": []}),
        (502, "<html><body>Bad Gateway</body></html>"),
    ],
)
async def test_an_osrm_error_falls_back_to_the_great_circle(
    osrm: FakeOsrm, http: httpx.AsyncClient, status: int, body: dict | str
) -> None:
    osrm.answer(status, body)

    estimate = await OsrmRouter(osrm.url, http).eta(ORIGIN, DESTINATION, 12.0)

    assert len(osrm.requests) == 1
    assert estimate == pytest.approx(great_circle(12.0))


async def test_a_slow_osrm_is_not_waited_for_beyond_the_timeout(osrm: FakeOsrm) -> None:
    osrm.delay_s = 1.5
    async with httpx.AsyncClient(timeout=0.2) as http:
        started = time.monotonic()
        estimate = await OsrmRouter(osrm.url, http).eta(ORIGIN, DESTINATION, None)
        elapsed = time.monotonic() - started

    assert elapsed < 1.0
    assert estimate == pytest.approx(great_circle(None))


async def test_osrm_down_falls_back_to_the_great_circle(http: httpx.AsyncClient) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    estimate = await OsrmRouter(f"http://127.0.0.1:{port}", http).eta(ORIGIN, DESTINATION, 0.0)

    assert estimate == pytest.approx(great_circle(0.0))


async def test_with_router_osrm_the_tracking_link_shows_osrms_eta(settings: Settings, osrm: FakeOsrm) -> None:
    osrm.answer(200, osrm_route(1400.0, 321.4))
    configured = msgspec.structs.replace(settings, tracking=TrackingSettings(router="osrm", osrm_url=osrm.url))
    async with AsyncTestClient(create_app(configured)) as client:
        org = await new_org(client)
        technician_id, auth = await technician(client, org, "ana", km=1)
        job = await post_job(client, org, auto=False)
        assigned = await client.post(f"/v1/jobs/{job['id']}/assign", json={"technician_id": technician_id}, headers=org)
        assert assigned.status_code == 200, assigned.text
        assert (await client.post(f"/v1/jobs/{job['id']}/en-route", headers=auth)).status_code == 200
        ping = {**north(1), "recorded_at": datetime.now(UTC).isoformat(), "speed_mps": 9.0}
        assert (await client.post("/v1/me/locations", json={"pings": [ping]}, headers=auth)).status_code == 202

        view = (await client.get(f"/v1/track/{job['tracking_token']}")).json()
        assert view["eta_s"] == 321

        osrm.answer(503, "<html>down for maintenance</html>")
        view = (await client.get(f"/v1/track/{job['tracking_token']}")).json()
        origin = Point(view["technician_location"]["lat"], view["technician_location"]["lon"])
        assert view["eta_s"] == round(GreatCircleRouter().estimate(origin, DESTINATION, 9.0).duration_s)
    assert len(osrm.requests) == 2
