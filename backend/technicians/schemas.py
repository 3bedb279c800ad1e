from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

from backend.schemas import LatLon, Position
from matching.curation import Reliability

Tier = Literal["preferred", "approved"]
Skill = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"\S",
        description="Compared case-insensitively; stored trimmed and lower-cased.",
    ),
]
Skills = Annotated[list[Skill], msgspec.Meta(max_length=50)]
RadiusKm = Annotated[float, msgspec.Meta(gt=0, le=500, description="Service radius in km, (0, 500]")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
Email = Annotated[str, msgspec.Meta(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Phone = Annotated[str, msgspec.Meta(max_length=32, pattern=r"^\+?[0-9 ().-]{3,31}$")]
FirebaseUid = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Notes = Annotated[str, msgspec.Meta(max_length=4000)]


class TechnicianCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    firebase_uid: FirebaseUid
    skills: Skills
    home: LatLon
    service_radius_km: RadiusKm
    tier: Tier
    email: Email | None = None
    phone: Phone | None = None
    active: bool = True
    notes: Notes | None = None


class TechnicianUpdate(msgspec.Struct, forbid_unknown_fields=True):
    tier: Tier | msgspec.UnsetType = msgspec.UNSET
    skills: Skills | msgspec.UnsetType = msgspec.UNSET
    service_radius_km: RadiusKm | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    notes: Notes | None | msgspec.UnsetType = msgspec.UNSET


class TechnicianOut(msgspec.Struct):
    """A technician as the calling organisation knows them."""

    id: uuid.UUID
    name: str
    skills: list[str]
    tier: Tier
    active: bool
    service_radius_km: float
    home: LatLon
    on_duty: bool
    last_location: Position | None
    rating: float | None  # this organisation's released ratings, as a Bayesian average (matching.curation)
    reliability: Reliability  # from this organisation's recorded events (matching.curation)
    email: str | None = None
    phone: str | None = None
    notes: str | None = None
