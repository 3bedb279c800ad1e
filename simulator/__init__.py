"""`truckroll simulate`: a demo and end-to-end driver of the real HTTP API, and only its client (it imports
nothing of the server).

N simulated technicians are onboarded into an organisation (by its API key), go on duty, register a
device and wander around a city, pinging their position. A dispatcher posts ASAP jobs at random points
at a given rate. Each technician polls its offers, accepts or declines after a human delay, drives to
the site along a plausible path (pinging as it goes), checks in, works a little and completes the job.

Everything goes through HTTP with one `httpx.AsyncClient`: technicians use the ID tokens the caller mints
(`truckroll simulate`: Firebase-emulator tokens, development only), the dispatcher the organisation's key,
and the ETA is read from the customer's link.
Travel is compressed by `speed_up`: a technician driving at 40 km/h with speed-up 60 covers in one
wall-clock second what takes a minute; ETAs and travel times are compared in simulated seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

SKILLS = ["hvac", "electrical", "plumbing", "networking"]
TITLES = {
    "hvac": ["Boiler does not start", "Heat pump error E3", "No cooling in server room"],
    "electrical": ["Breaker keeps tripping", "Outlet sparks", "Lighting circuit dead"],
    "plumbing": ["Leaking pipe under sink", "Water heater failure", "Blocked drain"],
    "networking": ["Office Wi-Fi down", "Switch replacement", "POS terminals offline"],
}
FIRST = ["Ana", "Ben", "Chiara", "Deniz", "Emil", "Fatma", "Greta", "Hugo", "Ilse", "Jonas", "Karim", "Lena"]
LAST = ["Albrecht", "Braun", "Cakir", "Dietz", "Engel", "Fischer", "Graf", "Hahn", "Iversen", "Jansen"]
KM_PER_DEG_LAT = 111.195
FILLED_STATUSES = {"assigned", "en_route", "on_site", "completed"}


@dataclass
class Options:
    api_key: str
    id_token: Callable[[str], str]
    """A technician's ID token for their Firebase uid, valid for at least an hour (asked again after 50 min)."""
    technicians: int = 30
    jobs_per_minute: float = 6.0
    duration_s: float = 0.0
    """0: until cancelled (Ctrl-C)."""
    seed: int = 1
    city: tuple[float, float] = (52.52, 13.405)
    city_radius_km: float = 8.0
    speed_up: float = 1.0
    decision_delay_s: tuple[float, float] = (2.0, 10.0)
    decline_rate: float = 0.2
    poll_s: tuple[float, float] = (1.0, 2.0)
    ping_every_s: float = 3.0
    on_site_s: tuple[float, float] = (5.0, 15.0)
    """Wall-clock seconds on site (not compressed: it is there to watch)."""
    report_every_s: float = 5.0
    drain_s: float = 15.0
    """At the end, how long technicians may take to finish the request they are in before being cancelled."""
    report: Callable[[str], None] | None = print


@dataclass
class Summary:
    accepted: int = 0
    declined: int = 0
    conflicts: int = 0
    errors: int = 0
    technicians: int = 0
    fill_times_s: list[float] = field(default_factory=list)
    eta_errors_s: list[float] = field(default_factory=list)
    """Signed: the ETA the customer saw when the technician set off minus the (simulated) travel time."""
    job_ids: list[str] = field(default_factory=list)
    filled_ids: set[str] = field(default_factory=set)
    unfilled_ids: set[str] = field(default_factory=set)
    completed_ids: set[str] = field(default_factory=set)

    @property
    def posted(self) -> int:
        return len(self.job_ids)

    @property
    def filled(self) -> int:
        return len(self.filled_ids)

    @property
    def unfilled(self) -> int:
        return len(self.unfilled_ids)

    @property
    def completed(self) -> int:
        return len(self.completed_ids)

    @property
    def median_time_to_fill_s(self) -> float | None:
        return statistics.median(self.fill_times_s) if self.fill_times_s else None

    @property
    def median_eta_error_s(self) -> float | None:
        """Median absolute ETA error at arrival (simulated seconds)."""
        return statistics.median(abs(e) for e in self.eta_errors_s) if self.eta_errors_s else None

    def line(self, elapsed_s: float) -> str:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}s"

        return (
            f"[{elapsed_s:6.0f}s] technicians {self.technicians} | jobs posted {self.posted}, filled {self.filled}, "
            f"unfilled {self.unfilled}, completed {self.completed} | offers accepted {self.accepted}, "
            f"declined {self.declined}, lost {self.conflicts} | median time to fill {fmt(self.median_time_to_fill_s)}"
            f" | median ETA error at arrival {fmt(self.median_eta_error_s)} (n={len(self.eta_errors_s)})"
            + (f" | errors {self.errors}" if self.errors else "")
        )


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _move(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (
        lat + north_m / 1000 / KM_PER_DEG_LAT,
        lon + east_m / 1000 / (KM_PER_DEG_LAT * math.cos(math.radians(lat))),
    )


def _delta_m(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """(north, east) metres from a to b (flat approximation, fine inside a city)."""
    north = (b[0] - a[0]) * KM_PER_DEG_LAT * 1000
    east = (b[1] - a[1]) * KM_PER_DEG_LAT * 1000 * math.cos(math.radians(a[0]))
    return north, east


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(*_delta_m(a, b))


def _random_point(rng: random.Random, centre: tuple[float, float], radius_km: float) -> tuple[float, float]:
    r = radius_km * 1000 * math.sqrt(rng.random())
    theta = rng.uniform(0, 2 * math.pi)
    return _move(*centre, r * math.cos(theta), r * math.sin(theta))


class SimulationError(Exception):
    """The simulation cannot start (server unreachable, key refused, no technician ready)."""


class Simulation:
    def __init__(self, client: httpx.AsyncClient, options: Options, stop: asyncio.Event | None = None) -> None:
        self.client = client
        self.o = options
        self.summary = Summary()
        self.stop = stop or asyncio.Event()
        self.org = {"Authorization": f"Bearer {options.api_key}"}
        self.started = time.monotonic()
        self.jobs: dict[str, dict[str, Any]] = {}
        """job id -> {tracking_token, posted_at (monotonic)}."""

    # -- plumbing -------------------------------------------------------------------------------------

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless the simulation stops first; True when it is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=max(seconds, 0.0))
        return self.stop.is_set()

    async def request(self, method: str, url: str, headers: dict, **kwargs) -> httpx.Response | None:
        """One request; None on a transport error (counted), so that one hiccup does not end a technician."""
        try:
            return await self.client.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError:
            self.summary.errors += 1
            return None

    def report(self) -> None:
        if self.o.report:
            self.o.report(self.summary.line(time.monotonic() - self.started))

    def mark_filled(self, job_id: str) -> None:
        if job_id in self.summary.filled_ids:
            return
        self.summary.filled_ids.add(job_id)
        posted_at = self.jobs.get(job_id, {}).get("posted_at")
        if posted_at is not None:
            self.summary.fill_times_s.append(time.monotonic() - posted_at)

    # -- the dispatcher -------------------------------------------------------------------------------

    async def dispatcher(self) -> None:
        rate = self.o.jobs_per_minute / 60
        if rate <= 0:
            return
        rng = random.Random(self.o.seed * 7919 + 1)
        while not await self.sleep(rng.expovariate(rate)):
            await self.post_job(rng)

    async def post_job(self, rng: random.Random) -> None:
        lat, lon = _random_point(rng, self.o.city, self.o.city_radius_km)
        skill = rng.choice(SKILLS)
        start = datetime.now(UTC)
        body = {
            "title": rng.choice(TITLES[skill]),
            "skills": [skill],
            "location": {"lat": round(lat, 6), "lon": round(lon, 6)},
            "address": f"Simulated site {rng.randint(1, 999)}",
            "window": {"start": start.isoformat(), "end": (start + timedelta(hours=3)).isoformat()},
            "estimated_hours": 1.5,
            "customer": {"name": "Simulated Customer"},
            "pay": {"amount": float(rng.choice([80, 120, 150, 200])), "currency": "EUR"},
            "dispatch": {
                "auto": True,
                "waves": [
                    {"tiers": ["preferred", "approved"], "radius_km": 25, "max_offers": 5, "offer_ttl_s": 60},
                    {"tiers": ["preferred", "approved"], "radius_km": 60, "max_offers": 20, "offer_ttl_s": 90},
                ],
            },
        }
        headers = {**self.org, "Idempotency-Key": str(uuid.uuid4())}
        response = await self.request("POST", "/v1/jobs", headers, json=body)
        if response is None or response.status_code != 201:
            self.summary.errors += response is not None
            return
        job = response.json()
        self.jobs[job["id"]] = {"tracking_token": job["tracking_token"], "posted_at": time.monotonic()}
        self.summary.job_ids.append(job["id"])

    async def refresh(self, *, limit: int = 50) -> None:
        """Notice jobs that went unfilled (or were filled by someone outside the simulation)."""
        open_ids = [
            j for j in self.summary.job_ids if j not in self.summary.filled_ids and j not in self.summary.unfilled_ids
        ][:limit]
        for job_id in open_ids:
            response = await self.request("GET", f"/v1/jobs/{job_id}", self.org)
            if response is None or response.status_code != 200:
                continue
            status = response.json()["status"]
            if status == "unfilled":
                self.summary.unfilled_ids.add(job_id)
            elif status in FILLED_STATUSES:
                self.mark_filled(job_id)

    async def reporter(self) -> None:
        while not await self.sleep(self.o.report_every_s):
            await self.refresh()
            self.report()

    # -- technicians ----------------------------------------------------------------------------------

    async def requirements(self) -> dict:
        try:
            response = await self.client.get("/v1/org/requirements", headers=self.org)
        except httpx.HTTPError as exc:
            raise SimulationError(f"cannot reach the API: {exc!r}") from exc
        if response.status_code in (401, 403):
            raise SimulationError(f"the organisation API key was refused ({response.status_code})")
        if response.status_code != 200:
            return {"credentials": [], "by_skill": {}}
        return response.json()

    async def run(self) -> Summary:
        requirements = await self.requirements()
        technicians = [Technician(self, i, requirements) for i in range(self.o.technicians)]
        ready = await asyncio.gather(*(t.setup() for t in technicians))
        technicians = [t for t, ok in zip(technicians, ready, strict=True) if ok]
        self.summary.technicians = len(technicians)
        if not technicians:
            raise SimulationError("no technician could be onboarded and put on duty")
        self.started = time.monotonic()
        self.report()
        tasks = [asyncio.create_task(t.live()) for t in technicians]
        background = [asyncio.create_task(self.dispatcher()), asyncio.create_task(self.reporter())]
        try:
            if self.o.duration_s > 0:
                await self.sleep(self.o.duration_s)
            else:
                await self.stop.wait()
        finally:
            self.stop.set()
            # Let every task finish the request it is in (so that what the server did is what we counted).
            done, pending = await asyncio.wait(tasks + background, timeout=self.o.drain_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await asyncio.gather(*(t.off_duty() for t in technicians if not t.busy), return_exceptions=True)
        await self.refresh(limit=len(self.summary.job_ids))
        self.report()
        return self.summary


class Technician:
    def __init__(self, sim: Simulation, i: int, requirements: dict) -> None:
        self.sim = sim
        self.rng = random.Random(f"{sim.o.seed}-{i}")
        self.uid = f"sim-{sim.o.seed}-{i}"
        self.name = f"{FIRST[i % len(FIRST)]} {LAST[(i * 7 + i // len(FIRST)) % len(LAST)]} (sim)"
        self.skills = sorted(self.rng.sample(SKILLS, k=3))
        self.position = _random_point(self.rng, sim.o.city, sim.o.city_radius_km)
        self.waypoint = _random_point(self.rng, sim.o.city, sim.o.city_radius_km)
        self.requirements = requirements
        self.id: str | None = None
        self.busy = False
        self._token: tuple[str, float] | None = None  # (token, when to ask for a new one)
        self._last_ping = 0.0

    @property
    def auth(self) -> dict[str, str]:
        now = time.time()
        if self._token is None or self._token[1] < now:
            self._token = (self.sim.o.id_token(self.uid), now + 3000)
        return {"Authorization": f"Bearer {self._token[0]}"}

    async def setup(self) -> bool:
        sim = self.sim
        body = {
            "name": self.name,
            "firebase_uid": self.uid,
            "email": f"{self.uid}@example.com",
            "skills": self.skills,
            "home": {"lat": round(self.position[0], 6), "lon": round(self.position[1], 6)},
            "service_radius_km": 30,
            "tier": "preferred" if self.rng.random() < 0.4 else "approved",
        }
        response = await sim.request("POST", "/v1/technicians", sim.org, json=body)
        if response is None:
            return False
        if response.status_code == 201:
            self.id = response.json()["id"]
        elif response.status_code == 409:  # already in this pool (an earlier run with the same seed)
            self.id = (response.json().get("extra") or {}).get("technician_id")
            if self.id:
                await sim.request("PATCH", f"/v1/technicians/{self.id}", sim.org, json={"active": True})
        else:
            sim.summary.errors += 1
            return False
        if self.id:
            await self.credentials()
        response = await sim.request("PUT", "/v1/me/duty", self.auth, json={"on_duty": True})
        if response is None or response.status_code != 200:
            sim.summary.errors += 1
            return False
        await self.ping(speed_mps=0.0)
        await sim.request(
            "POST", "/v1/me/devices", self.auth, json={"token": f"sim-device-{self.uid}", "platform": "android"}
        )
        return True

    async def credentials(self) -> None:
        """Whatever this organisation requires of the technician's skills, recorded as valid."""
        kinds = set(self.requirements.get("credentials") or [])
        for skill in self.skills:
            kinds.update((self.requirements.get("by_skill") or {}).get(skill, []))
        issued = (datetime.now(UTC) - timedelta(days=30)).isoformat()
        for kind in sorted(kinds):
            await self.sim.request(
                "PUT",
                f"/v1/technicians/{self.id}/credentials/{kind}",
                self.sim.org,
                json={"status": "valid", "issued_at": issued, "reference": "SIMULATED"},
            )

    async def ping(self, *, speed_mps: float, heading_deg: float | None = None) -> None:
        ping: dict[str, Any] = {
            "lat": round(self.position[0], 6),
            "lon": round(self.position[1], 6),
            "accuracy_m": round(self.rng.uniform(5, 20), 1),
            "recorded_at": _now(),
            "speed_mps": round(speed_mps, 2),
        }
        if heading_deg is not None:
            ping["heading_deg"] = round(heading_deg % 360, 1)
        self._last_ping = time.monotonic()
        await self.sim.request("POST", "/v1/me/locations", self.auth, json={"pings": [ping]})

    async def off_duty(self) -> None:
        await self.sim.request("PUT", "/v1/me/duty", self.auth, json={"on_duty": False})

    def wander(self, dt: float) -> tuple[float, float]:
        """Drift towards the current waypoint at city-errand speed; returns (speed, heading)."""
        speed = self.rng.uniform(3, 8)  # m/s, simulated
        north, east = _delta_m(self.position, self.waypoint)
        remaining = math.hypot(north, east)
        step = speed * dt * self.sim.o.speed_up
        if remaining <= step:
            self.position = self.waypoint
            self.waypoint = _random_point(self.rng, self.sim.o.city, self.sim.o.city_radius_km)
        else:
            self.position = _move(*self.position, north / remaining * step, east / remaining * step)
        return speed, math.degrees(math.atan2(east, north))

    async def live(self) -> None:
        sim = self.sim
        last = time.monotonic()
        while not sim.stop.is_set():
            if await sim.sleep(self.rng.uniform(*sim.o.poll_s)):
                return
            now = time.monotonic()
            speed, heading = self.wander(now - last)
            last = now
            if now - self._last_ping >= sim.o.ping_every_s:
                await self.ping(speed_mps=speed, heading_deg=heading)
            response = await sim.request("GET", "/v1/me/offers", self.auth)
            if response is None or response.status_code != 200:
                continue
            offers = sorted(response.json()["items"], key=lambda o: o.get("distance_m") or 0)
            if not offers:
                continue
            offer = offers[0]
            if await sim.sleep(self.rng.uniform(*sim.o.decision_delay_s)):
                return
            job = await self.answer(offer)
            if job is not None:
                self.busy = True
                await self.work(job)
                self.busy = sim.stop.is_set() and job["id"] not in sim.summary.completed_ids
                last = time.monotonic()

    async def answer(self, offer: dict) -> dict | None:
        sim = self.sim
        key = {**self.auth, "Idempotency-Key": str(uuid.uuid4())}
        if self.rng.random() < sim.o.decline_rate:
            response = await sim.request("POST", f"/v1/offers/{offer['id']}/decline", key, json={"reason": "busy"})
            if response is not None and response.status_code == 200:
                sim.summary.declined += 1
            elif response is not None and response.status_code == 409:
                sim.summary.conflicts += 1
            return None
        response = await sim.request("POST", f"/v1/offers/{offer['id']}/accept", key)
        if response is None:
            return None
        if response.status_code == 409:  # taken by someone else, expired or withdrawn
            sim.summary.conflicts += 1
            return None
        if response.status_code != 200:
            sim.summary.errors += 1
            return None
        sim.summary.accepted += 1
        sim.mark_filled(offer["job"]["id"])
        return offer["job"]

    async def work(self, job: dict) -> None:
        sim = self.sim
        job_id = job["id"]
        site = (job["location"]["lat"], job["location"]["lon"])
        response = await sim.request("POST", f"/v1/jobs/{job_id}/en-route", self.auth)
        if response is None or response.status_code != 200:
            if response is not None and response.status_code == 409:
                sim.summary.conflicts += 1  # cancelled meanwhile
            return

        # The trip: a straight line bent by a detour and some GPS jitter, at 30-50 km/h.
        speed = self.rng.uniform(30, 50) / 3.6
        straight = _distance_m(self.position, site)
        length = straight * self.rng.uniform(1.1, 1.45)
        travel_sim_s = length / speed
        travel_wall_s = travel_sim_s / sim.o.speed_up
        origin = self.position
        north, east = _delta_m(origin, site)
        heading = math.degrees(math.atan2(east, north))
        bend = self.rng.choice([-1, 1]) * self.rng.uniform(0.05, 0.2) * straight
        await self.ping(speed_mps=speed, heading_deg=heading)

        eta_s = None
        token = sim.jobs.get(job_id, {}).get("tracking_token")
        if token:
            tracked = await sim.request("GET", f"/v1/track/{token}", {})
            if tracked is not None and tracked.status_code == 200:
                eta_s = tracked.json().get("eta_s")

        set_off = time.monotonic()
        while True:
            elapsed = time.monotonic() - set_off
            if elapsed >= travel_wall_s:
                break
            if await sim.sleep(min(sim.o.ping_every_s, travel_wall_s - elapsed)):
                return  # stopping mid-trip: leave the job where it is
            p = min(1.0, (time.monotonic() - set_off) / travel_wall_s)
            side = bend * math.sin(math.pi * p)
            lateral_n, lateral_e = (-east, north) if straight else (0.0, 0.0)
            norm = math.hypot(lateral_n, lateral_e) or 1.0
            self.position = _move(
                *origin,
                north * p + side * lateral_n / norm + self.rng.gauss(0, 15),
                east * p + side * lateral_e / norm + self.rng.gauss(0, 15),
            )
            await self.ping(speed_mps=speed * self.rng.uniform(0.7, 1.2), heading_deg=heading)
        actual_sim_s = (time.monotonic() - set_off) * sim.o.speed_up

        self.position = _move(*site, self.rng.gauss(0, 10), self.rng.gauss(0, 10))
        await self.ping(speed_mps=0.0)
        accuracy = round(self.rng.uniform(5, 25), 1)
        response = await sim.request(
            "POST",
            f"/v1/jobs/{job_id}/check-in",
            {**self.auth, "Idempotency-Key": str(uuid.uuid4())},
            json={"lat": round(self.position[0], 6), "lon": round(self.position[1], 6), "accuracy_m": accuracy},
        )
        if response is None or response.status_code != 200:
            sim.summary.errors += response is not None and response.status_code != 409
            return
        if eta_s is not None:
            sim.summary.eta_errors_s.append(eta_s - actual_sim_s)

        if await sim.sleep(self.rng.uniform(*sim.o.on_site_s)):
            return
        response = await sim.request(
            "POST",
            f"/v1/jobs/{job_id}/complete",
            {**self.auth, "Idempotency-Key": str(uuid.uuid4())},
            json={"notes": "Done (simulated)."},
        )
        if response is not None and response.status_code == 200:
            sim.summary.completed_ids.add(job_id)
        elif response is not None:
            sim.summary.errors += 1


async def run_simulation(client: httpx.AsyncClient, options: Options, stop: asyncio.Event | None = None) -> Summary:
    """Run until `options.duration_s` has passed or `stop` is set (with duration 0, only then); returns the
    counts at the end, after every technician has finished the request it was in."""
    return await Simulation(client, options, stop).run()
