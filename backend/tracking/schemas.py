from __future__ import annotations

from datetime import datetime

import msgspec

from backend.jobs.schemas import JobStatus, Window
from backend.schemas import Position


class TrackedTechnician(msgspec.Struct):
    first_name: str


class TrackingView(msgspec.Struct):
    """What the customer's link shows: never more of the technician than a first name and, while they
    are on the way or on site, their position."""

    status: JobStatus
    window: Window
    technician: TrackedTechnician | None
    eta_s: int | None
    eta_at: datetime | None
    technician_location: Position | None


class TrackingError(msgspec.Struct):
    status_code: int
    detail: str
