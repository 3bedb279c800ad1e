"""Arrival estimates behind a small router interface.

The default is matching's ETA model (`matching.eta.EtaModel`, the one candidates are ranked by): the great
circle times a detour factor, at the technician's own speed while they move and at a city speed otherwise;
no dependency, and honest enough inside a city. A road router (OSRM)
replaces it by configuration; when that router fails or is slow, the estimate falls back to the great
circle rather than leaving the customer without one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NamedTuple, Protocol

import httpx

from backend.settings import TrackingSettings
from matching import EtaModel, haversine_m

log = logging.getLogger("truckroll.tracking")


class Point(NamedTuple):
    lat: float
    lon: float


class RouteEstimate(NamedTuple):
    distance_m: float
    duration_s: float


class Router(Protocol):
    async def eta(self, origin: Point, destination: Point, speed_mps: float | None) -> RouteEstimate:
        """Travel from origin to destination; `speed_mps` is the traveller's recent speed, if known."""
        ...


def great_circle_m(a: Point, b: Point) -> float:
    """Haversine distance in metres, on the same sphere as matching's."""
    return haversine_m(a.lat, a.lon, b.lat, b.lon)


class GreatCircleRouter:
    def __init__(self, model: EtaModel = EtaModel()) -> None:
        self.model = model

    async def eta(self, origin: Point, destination: Point, speed_mps: float | None) -> RouteEstimate:
        return self.estimate(origin, destination, speed_mps)

    def estimate(self, origin: Point, destination: Point, speed_mps: float | None) -> RouteEstimate:
        distance = great_circle_m(origin, destination)
        return RouteEstimate(
            distance_m=self.model.road_m(distance), duration_s=self.model.duration_s(distance, speed_mps)
        )


class OsrmRouter:
    """OSRM's route service (`/route/v1/driving/{lon},{lat};{lon},{lat}`): road distance and duration by
    its own speed profile, so the traveller's speed is used only by the fallback."""

    def __init__(self, base_url: str, client: httpx.AsyncClient, *, fallback: GreatCircleRouter | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.fallback = fallback or GreatCircleRouter()

    async def eta(self, origin: Point, destination: Point, speed_mps: float | None) -> RouteEstimate:
        url = (
            f"{self.base_url}/route/v1/driving/"
            f"{origin.lon:.6f},{origin.lat:.6f};{destination.lon:.6f},{destination.lat:.6f}"
        )
        try:
            response = await self.client.get(url, params={"overview": "false"})
            body = response.json()
            if body.get("code") != "Ok" or not body.get("routes"):
                raise ValueError(f"OSRM answered {response.status_code} {body.get('code')!r}: {body.get('message')}")
            route = body["routes"][0]
            return RouteEstimate(distance_m=float(route["distance"]), duration_s=float(route["duration"]))
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("OSRM route failed (%s); estimating along the great circle", exc)
            return self.fallback.estimate(origin, destination, speed_mps)


@asynccontextmanager
async def open_router(settings: TrackingSettings) -> AsyncIterator[Router]:
    """The configured router, with its HTTP client (if any) open for as long as the context lasts."""
    fallback = GreatCircleRouter(settings.eta)
    if settings.router != "osrm" or not settings.osrm_url:
        yield fallback
        return
    async with httpx.AsyncClient(timeout=settings.osrm_timeout_s) as client:
        yield OsrmRouter(settings.osrm_url, client, fallback=fallback)
