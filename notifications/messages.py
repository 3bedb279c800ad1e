"""The pushes Truckroll sends to technicians, one typed constructor each (API.md, "Push messages").

A notice is addressed to a technician, not to a device: it travels through the job queue as JSON (a tagged
msgspec union, `type` being the push's own type) and becomes one `PushMessage` per registered device when it
is delivered. How a kind of push is delivered — its priority, how long it may wait for an unreachable phone,
what a newer push replaces — is decided here, by its type, and nowhere else.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import ClassVar

import msgspec

from notifications.base import PushMessage


class _Notice(msgspec.Struct, frozen=True, tag_field="type"):
    technician_id: str
    """The addressee: every device they registered gets the push."""
    job_id: str

    urgent: ClassVar[bool] = False
    """High priority on Android, time-sensitive on iOS: only what the technician must answer quickly."""

    def data(self) -> dict[str, str]:
        """The FCM data payload (all strings), `type` first."""
        raise NotImplementedError

    def text(self) -> tuple[str | None, str | None]:
        """(title, body) of the visible notification; (None, None) for a silent data push."""
        return None, None

    def ttl_s(self, now: datetime) -> int | None:
        """How long the push services may hold it for an unreachable phone (None: their default)."""
        return None

    def stale(self, now: datetime) -> bool:
        """Not worth sending any more (a push sent again after a crash or an outage may come too late)."""
        return False

    def collapse_key(self) -> str:
        """A newer push with the same key replaces this one on the phone."""
        return self.job_id

    def to_push(self, token: str, now: datetime) -> PushMessage:
        title, body = self.text()
        return PushMessage(
            token=token,
            data=self.data(),
            title=title,
            body=body,
            ttl_s=self.ttl_s(now),
            high_priority=self.urgent,
            time_sensitive=self.urgent,
            collapse_key=self.collapse_key(),
        )


class JobOffer(_Notice, frozen=True, tag="job_offer"):
    """A job is offered; visible, urgent, and useless once the offer has expired."""

    offer_id: str
    expires_at: datetime
    title: str
    distance_m: float

    urgent: ClassVar[bool] = True

    def data(self) -> dict[str, str]:
        return {
            "type": "job_offer",
            "offer_id": self.offer_id,
            "job_id": self.job_id,
            "expires_at": self.expires_at.isoformat(),
        }

    def text(self) -> tuple[str | None, str | None]:
        return (
            f"New job: {self.title}",
            f"{self.distance_m / 1000:.1f} km away — reply before {self.expires_at:%H:%M} UTC",
        )

    def ttl_s(self, now: datetime) -> int | None:
        # What is left of the offer's life when it is sent: a push sent again later must not outlive it.
        return max(1, math.ceil((self.expires_at - now).total_seconds()))

    def stale(self, now: datetime) -> bool:
        return self.expires_at <= now

    def collapse_key(self) -> str:
        return self.offer_id


class OfferWithdrawn(_Notice, frozen=True, tag="offer_withdrawn"):
    """An offer ended unanswered (another technician won, the job was cancelled, or it expired): silent, it
    replaces the offer's notification."""

    offer_id: str

    def data(self) -> dict[str, str]:
        return {"type": "offer_withdrawn", "offer_id": self.offer_id, "job_id": self.job_id}

    def collapse_key(self) -> str:
        return self.offer_id


class JobAssigned(_Notice, frozen=True, tag="job_assigned"):
    """A dispatcher assigned the job directly."""

    title: str
    window_start: datetime

    def data(self) -> dict[str, str]:
        return {"type": "job_assigned", "job_id": self.job_id}

    def text(self) -> tuple[str | None, str | None]:
        return f"Job assigned: {self.title}", f"On site {self.window_start:%a %d %b %H:%M} UTC"


class JobIncomplete(_Notice, frozen=True, tag="job_incomplete"):
    """The organisation sent the work back: visible, so that the technician learns what is missing."""

    title: str
    reason: str

    def data(self) -> dict[str, str]:
        return {"type": "job_incomplete", "job_id": self.job_id}

    def text(self) -> tuple[str | None, str | None]:
        return f"Sent back: {self.title}", self.reason[:200]


Notice = JobOffer | OfferWithdrawn | JobAssigned | JobIncomplete
