from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

from backend.schemas import AwareDatetime, Latitude, Longitude, Position


class Ping(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    lat: Latitude
    lon: Longitude
    recorded_at: AwareDatetime
    accuracy_m: Annotated[float, msgspec.Meta(ge=0, le=100_000)] | None = None
    speed_mps: Annotated[float, msgspec.Meta(ge=0, le=150)] | None = None
    heading_deg: Annotated[float, msgspec.Meta(ge=0, lt=360)] | None = None


class PingBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pings: Annotated[list[Ping], msgspec.Meta(min_length=1, max_length=100)]


class PingsAccepted(msgspec.Struct):
    accepted: int


class DutyUpdate(msgspec.Struct, forbid_unknown_fields=True):
    on_duty: bool


class DeviceRegister(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=r"^[^\s/]+$")]
    platform: Literal["android", "ios"]


class DeviceOut(msgspec.Struct):
    token: str
    platform: str


class Membership(msgspec.Struct):
    org_id: uuid.UUID
    org_name: str
    tier: str
    active: bool


class Me(msgspec.Struct):
    id: uuid.UUID
    name: str
    email: str | None
    phone: str | None
    on_duty: bool
    last_location: Position | None
    memberships: list[Membership]
