"""Structs shared by several domains, and how skills are written (for jobs and pool members alike)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

import msgspec

Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90, description="WGS84 latitude, degrees")]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180, description="WGS84 longitude, degrees")]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339 time with offset")]

T = TypeVar("T")


class LatLon(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    lat: Latitude
    lon: Longitude


class Position(msgspec.Struct, frozen=True):
    lat: float
    lon: float
    recorded_at: datetime


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None


def normalize_skills(skills: list[str]) -> list[str]:
    """Skills are compared trimmed and lower-cased: a job's and a member's are stored that way."""
    return sorted({s.strip().lower() for s in skills})
